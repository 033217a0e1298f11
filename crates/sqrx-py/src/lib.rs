//! The `sqrx` Python module (pyo3). It only translates: all logic lives in `sqrx-core`.

use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    sqrx,
    SqrxError,
    PyException,
    "Base class of every sqrx error."
);

fn to_py(e: sqrx_core::LayerError) -> PyErr {
    let kind = e.kind();
    SqrxError::new_err((e.to_string(), kind.as_str()))
}

/// The names of the layers in the store (default data dir unless `data_dir` is given).
#[pyfunction]
#[pyo3(signature = (data_dir=None))]
fn list_layers(py: Python<'_>, data_dir: Option<PathBuf>) -> PyResult<Vec<String>> {
    let dir = data_dir.unwrap_or_else(sqrx_core::paths::default_data_dir);
    py.detach(|| {
        let store = sqrx_core::LayerStore::open(&dir)?;
        Ok(store
            .list()?
            .into_iter()
            .map(|l| l.name.to_string())
            .collect())
    })
    .map_err(to_py)
}

/// The `sqrx` module.
#[pymodule]
fn sqrx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SqrxError", m.py().get_type::<SqrxError>())?;
    m.add_function(wrap_pyfunction!(list_layers, m)?)?;
    Ok(())
}
