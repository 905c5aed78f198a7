#!/usr/bin/env bash
# The Spark test (issue 7): runs the demo job and a generated ~140k-record job on PySpark in
# local[2] mode and checks that the master index equals the single-machine `yiku run` output
# on the same data (same clusters, compared as partitions of records).
#   - demo: Spark trains its own model (EM on the driver) and must still agree;
#   - 100k: Spark reuses the single-machine model.json (`--model`), as a nightly run would.
# Needs Java 17 or 21 (`java -version`) and Python 3.9+; PySpark, pyarrow, pandas and maturin
# come from PyPI into target/spark-venv. Prints both wall times.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/spark-venv
work=target/spark-test
# PySpark 4.0 runs on Java 17/21 and has groupBy(...).applyInArrow.
pyspark_pin="pyspark==4.0.1"

java -version 2>&1 | head -1 || { echo "spark-test: no java on PATH"; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
echo "== pip install $pyspark_pin pandas<3 pyarrow maturin (into $venv)"
"$venv/bin/pip" install --quiet "$pyspark_pin" "pandas<3" "pyarrow>=15,<22" "maturin>=1.8,<2"

echo "== build the wheel"
YIKU_VENV="$venv" scripts/build-wheel.sh
wheel=$(ls -t target/wheels/yiku_spark-*-abi3-*.whl | head -1)
"$venv/bin/pip" install --quiet --force-reinstall --no-deps "$wheel"

echo "== build yiku"
cargo build --release --locked --bin yiku
yiku=target/release/yiku

export PYSPARK_PYTHON="$PWD/$venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$PWD/$venv/bin/python"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
rm -rf "$work"
mkdir -p "$work"

spark() {
    "$venv/bin/spark-submit" --master 'local[2]' --driver-memory 3g \
        --conf spark.sql.shuffle.partitions=4 \
        --conf spark.ui.enabled=false \
        --conf spark.log.level=WARN \
        python/yiku_spark/job.py "$@"
}

# wall seconds of a command, its output in a log
timed() {
    local log=$1
    shift
    local t0 t1
    t0=$EPOCHREALTIME
    if ! "$@" >"$log" 2>&1; then
        tail -40 "$log"
        echo "spark-test: failed: $*"
        exit 1
    fi
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

status=0
check() {
    local name=$1 job=$2 model_flag=$3
    echo "== $name: yiku run"
    local t_local t_spark
    t_local=$(timed "$work/$name-local.log" "$yiku" run "$job" --out "$work/$name-local" --quiet)
    echo "== $name: spark-submit (local[2])"
    if [ "$model_flag" = model ]; then
        t_spark=$(timed "$work/$name-spark.log" spark "$job" --out "$work/$name-spark" \
            --model "$work/$name-local/model.json")
    else
        t_spark=$(timed "$work/$name-spark.log" spark "$job" --out "$work/$name-spark")
    fi
    grep '^yiku-spark:' "$work/$name-spark.log" || true
    echo "== $name: compare the master indexes"
    "$venv/bin/python" scripts/spark_compare.py "$work/$name-local" "$work/$name-spark" || status=1
    printf '%s wall time: yiku run %.1f s, Spark local[2] %.1f s\n' "$name" "$t_local" "$t_spark" \
        >>"$work/times.txt"
}

check demo datasets/demo/job.toml train
echo "== generate the 100k job"
"$yiku" generate --persons 50000 --enterprises 5000 --seed 7 --out "$work/100k" >/dev/null
check 100k "$work/100k/job.toml" model

cat "$work/times.txt"
if [ "$status" -ne 0 ]; then
    echo "spark-test: the Spark master index differs from yiku run's"
    exit 1
fi
echo "spark-test: all passed"
