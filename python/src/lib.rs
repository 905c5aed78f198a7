//! `yiku_spark._native`: yiku's stages for Python, exchanging Arrow record batches with
//! pyarrow (zero-copy through the Arrow C data interface). A thin layer over
//! [`yiku::engine`]: every function takes and returns `pyarrow.RecordBatch` / `pyarrow.Table`
//! and raises `ValueError` with yiku's message when the data or the job is wrong.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_pyarrow::{PyArrowType, Table};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use yiku::engine::{self, GroupOutput};
use yiku::score::Model;
use yiku::score::tf::TermFrequencies;

fn py_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A `pyarrow.Table` as one record batch (an empty table gives an empty batch).
fn one_batch(t: Table) -> PyResult<RecordBatch> {
    let (batches, schema) = t.into_inner();
    arrow_select::concat::concat_batches(&schema, &batches).map_err(py_err)
}

/// A parsed job file.
#[pyclass(frozen, module = "yiku_spark._native")]
struct Job {
    job: engine::Job,
}

/// A kind's model with its term frequencies, ready to score block groups.
#[pyclass(frozen, module = "yiku_spark._native")]
struct Scorer {
    kind: String,
    scorer: engine::Scorer,
}

#[pymethods]
impl Job {
    /// `Job(text, path)`: the text of a job file and where it lives.
    #[new]
    fn new(text: &str, path: &str) -> PyResult<Self> {
        Ok(Job {
            job: engine::Job::from_toml(text, Path::new(path)).map_err(py_err)?,
        })
    }

    /// Sources, kinds, rules and thresholds, as JSON text.
    fn describe(&self) -> String {
        self.job.describe().to_string()
    }

    /// One source's columns as text under canonical field names (see `yiku::engine`).
    fn prepare_source(
        &self,
        py: Python<'_>,
        source: &str,
        batch: PyArrowType<RecordBatch>,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let b = batch.0;
        py.detach(|| engine::prepare_source(&self.job, source, &b))
            .map(PyArrowType)
            .map_err(py_err)
    }

    /// Standardised columns and blocking keys of a batch of prepared records; also the
    /// standardisation counters as JSON.
    fn standardise(
        &self,
        py: Python<'_>,
        kind: &str,
        batch: PyArrowType<RecordBatch>,
    ) -> PyResult<(PyArrowType<RecordBatch>, String)> {
        let b = batch.0;
        let (out, stats) = py
            .detach(|| engine::standardise_batch(&self.job, kind, &b))
            .map_err(py_err)?;
        let stats = serde_json::to_string(&stats).map_err(py_err)?;
        Ok((PyArrowType(out), stats))
    }

    /// The pairs of one block group of rule `rule`: scored if a scorer is given, else
    /// counted by level pattern (for training).
    #[pyo3(signature = (kind, rule, table, scorer=None))]
    fn block_group(
        &self,
        py: Python<'_>,
        kind: &str,
        rule: usize,
        table: PyArrowType<Table>,
        scorer: Option<&Scorer>,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let b = one_batch(table.0)?;
        if let Some(s) = scorer
            && s.kind != kind
        {
            return Err(py_err(format!(
                "the scorer is for kind {}, the block group is {kind}",
                s.kind
            )));
        }
        let out = py
            .detach(|| engine::block_group(&self.job, kind, rule, &b, scorer.map(|s| &s.scorer)))
            .map_err(py_err)?;
        Ok(PyArrowType(match out {
            GroupOutput::Patterns(b) | GroupOutput::Pairs(b) => b,
        }))
    }

    /// Trains a kind's model from a sample of standardised records and the summed level
    /// patterns; returns the model as JSON.
    fn train(
        &self,
        py: Python<'_>,
        kind: &str,
        sample: PyArrowType<Table>,
        patterns: PyArrowType<Table>,
    ) -> PyResult<String> {
        let (s, p) = (one_batch(sample.0)?, one_batch(patterns.0)?);
        let model = py
            .detach(|| engine::train(&self.job, kind, &s, &p))
            .map_err(py_err)?;
        serde_json::to_string(&model).map_err(py_err)
    }

    /// A scorer for `kind` from a model (JSON, one entry of `model.json`'s `models`) and
    /// term frequencies: field -> table of (`value`, `count`).
    fn scorer(
        &self,
        kind: &str,
        model_json: &str,
        tfs: HashMap<String, PyArrowType<Table>>,
    ) -> PyResult<Scorer> {
        let kp = self.job.kind(kind).map_err(py_err)?;
        let model: Model = serde_json::from_str(model_json)
            .map_err(|e| py_err(format!("the model for kind {kind} is not valid: {e}")))?;
        if model.kind != kp.kind {
            return Err(py_err(format!(
                "the model is for kind {}, not {kind}",
                model.kind.as_str()
            )));
        }
        let mut freq = HashMap::new();
        for (field, t) in tfs {
            let b = one_batch(t.0)?;
            let values = b
                .column_by_name("value")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| py_err(format!("term frequencies of `{field}`: no utf8 `value`")))?;
            let counts = b
                .column_by_name("count")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| {
                    py_err(format!("term frequencies of `{field}`: no int64 `count`"))
                })?;
            if counts.null_count() > 0 {
                return Err(py_err(format!(
                    "term frequencies of `{field}`: null counts"
                )));
            }
            freq.insert(field, TermFrequencies::from_counts(values, counts.values()));
        }
        let scorer = engine::Scorer::new(kp, model, freq).map_err(py_err)?;
        Ok(Scorer {
            kind: kind.to_string(),
            scorer,
        })
    }

    /// Clusters a kind's records from its edges and returns the master index rows and the
    /// counts (JSON).
    fn cluster_master(
        &self,
        py: Python<'_>,
        kind: &str,
        records: PyArrowType<Table>,
        edges: PyArrowType<Table>,
    ) -> PyResult<(PyArrowType<RecordBatch>, String)> {
        let (r, e) = (one_batch(records.0)?, one_batch(edges.0)?);
        let (batch, counts) = py
            .detach(|| engine::cluster_master(&self.job, kind, &r, &e))
            .map_err(py_err)?;
        let counts = serde_json::to_string(&counts).map_err(py_err)?;
        Ok((PyArrowType(batch), counts))
    }
}

#[pymethods]
impl Scorer {
    /// The model's match probability threshold.
    #[getter]
    fn match_probability(&self) -> f64 {
        self.scorer.model.match_probability
    }

    /// The model's clerical review threshold.
    #[getter]
    fn review_probability(&self) -> f64 {
        self.scorer.model.review_probability
    }
}

/// Masks personal data the way yiku's reports do (`110105********002X`, `张*`).
#[pyfunction]
fn mask(value: &str) -> String {
    yiku::mask::mask(value)
}

/// yiku's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Job>()?;
    m.add_class::<Scorer>()?;
    m.add_function(wrap_pyfunction!(mask, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
