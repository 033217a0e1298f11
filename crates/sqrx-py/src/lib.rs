//! The `sqrx._sqrx` Python extension (pyo3), re-exported by the `sqrx` package. It only
//! translates: arguments in, core errors to exceptions, blocking calls with the GIL released;
//! all logic lives in `sqrx-core`.

mod bridge;
mod error;
mod exec;
mod files;
mod js;
mod network;
mod runtime;
mod sandbox;
mod secrets;

use std::path::PathBuf;

use pyo3::prelude::*;

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
    .map_err(|e: sqrx_core::LayerError| error::to_py(e))
}

/// The `sqrx._sqrx` module.
#[pymodule]
fn _sqrx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SqrxError", py.get_type::<error::SqrxError>())?;
    py.get_type::<error::SqrxError>()
        .setattr("kind", sqrx_core::ErrorKind::Internal.as_str())?;
    for (kind, class) in error::classes(py) {
        class.setattr("kind", kind.as_str())?;
        m.add(kind.as_str(), class)?;
    }
    m.add_class::<runtime::Runtime>()?;
    m.add_class::<sandbox::Sandbox>()?;
    m.add_class::<sandbox::SandboxInfo>()?;
    m.add_class::<sandbox::ExecLogEntry>()?;
    m.add_class::<sandbox::SnapshotInfo>()?;
    m.add_class::<exec::ExecResult>()?;
    m.add_class::<exec::ExecEvent>()?;
    m.add_class::<exec::ExecStream>()?;
    m.add_class::<exec::Process>()?;
    m.add_class::<files::Files>()?;
    m.add_class::<files::FileInfo>()?;
    m.add_class::<js::JsResult>()?;
    m.add_function(wrap_pyfunction!(js::run_js, m)?)?;
    m.add_function(wrap_pyfunction!(js::run_js_async, m)?)?;
    m.add_function(wrap_pyfunction!(list_layers, m)?)?;
    Ok(())
}
