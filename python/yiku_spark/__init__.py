"""yiku on Apache Spark: the same job file as `yiku run`, the same master index.

`yiku_spark._native` is yiku's Rust code (PyO3); `yiku_spark.job` is the Spark driver
program (`spark-submit python/yiku_spark/job.py JOB.toml --out DIR`).
"""

from yiku_spark._native import Job, Scorer, mask, version

__all__ = ["Job", "Scorer", "mask", "version"]
