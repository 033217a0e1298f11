//! `Sandbox.files`: the sandbox's filesystem seen from the host.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::to_py;
use crate::sandbox::Handle;

/// One entry of a sandbox's filesystem.
#[pyclass(module = "sqrx", frozen)]
pub struct FileInfo {
    inner: sqrx_core::sandbox::FileInfo,
}

#[pymethods]
impl FileInfo {
    /// The entry's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// Its absolute path inside the sandbox.
    #[getter]
    fn path(&self) -> &str {
        &self.inner.path
    }
    /// `"file"`, `"dir"`, `"symlink"`, `"char"`, `"block"`, `"fifo"` or `"socket"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind
    }
    /// Size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }
    /// Permission bits (`0o7777`).
    #[getter]
    fn mode(&self) -> u32 {
        self.inner.mode
    }
    /// Modification time (UTC).
    #[getter]
    fn mtime(&self) -> DateTime<Utc> {
        self.inner.mtime
    }
    /// The owner's uid inside the sandbox.
    #[getter]
    fn uid(&self) -> u32 {
        self.inner.uid
    }
    /// The group's gid inside the sandbox.
    #[getter]
    fn gid(&self) -> u32 {
        self.inner.gid
    }
    fn __repr__(&self) -> String {
        format!(
            "FileInfo(path={:?}, kind={:?}, size={}, mode={:#o})",
            self.inner.path, self.inner.kind, self.inner.size, self.inner.mode
        )
    }
}

/// The files of one sandbox (`sb.files`). Paths are absolute paths inside the sandbox;
/// symlinks and `..` are resolved inside it, never on the host.
#[pyclass(module = "sqrx", frozen)]
pub struct Files {
    sandbox: Arc<Handle>,
}

impl Files {
    pub(crate) fn new(sandbox: Arc<Handle>) -> Self {
        Files { sandbox }
    }
}

#[pymethods]
impl Files {
    /// The whole content of the file at `path`.
    fn read<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyBytes>> {
        let sb = self.sandbox.get()?;
        let data = py.detach(|| sb.read_file(path)).map_err(to_py)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Write `data` to `path` with permission bits `mode`, creating missing parent
    /// directories; `str` is written as UTF-8.
    #[pyo3(signature = (path, data, mode=0o644))]
    fn write(
        &self,
        py: Python<'_>,
        path: &str,
        data: &Bound<'_, PyAny>,
        mode: u32,
    ) -> PyResult<()> {
        let sb = self.sandbox.get()?;
        let data = crate::exec::bytes_arg(data, "data")?;
        py.detach(|| sb.write_file(path, &data, mode))
            .map_err(to_py)
    }

    /// The entries of the directory at `path`, sorted by name.
    fn list(&self, py: Python<'_>, path: &str) -> PyResult<Vec<FileInfo>> {
        let sb = self.sandbox.get()?;
        let entries = py.detach(|| sb.list(path)).map_err(to_py)?;
        Ok(entries
            .into_iter()
            .map(|inner| FileInfo { inner })
            .collect())
    }

    /// Facts about the entry at `path` (a symlink itself, not its target).
    fn stat(&self, py: Python<'_>, path: &str) -> PyResult<FileInfo> {
        let sb = self.sandbox.get()?;
        let inner = py.detach(|| sb.stat(path)).map_err(to_py)?;
        Ok(FileInfo { inner })
    }

    /// Create the directory `path` and its parents.
    fn mkdir(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        let sb = self.sandbox.get()?;
        py.detach(|| sb.mkdir(path)).map_err(to_py)
    }

    /// Remove a file, a symlink or (with `recursive=True`) a directory tree.
    #[pyo3(signature = (path, recursive=false))]
    fn remove(&self, py: Python<'_>, path: &str, recursive: bool) -> PyResult<()> {
        let sb = self.sandbox.get()?;
        py.detach(|| sb.remove(path, recursive)).map_err(to_py)
    }
}
