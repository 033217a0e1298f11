//! Exec results, streamed events and background processes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pyo3::exceptions::{PyStopAsyncIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use sqrx_core::sandbox::SpawnHandle;
use sqrx_core::{Command, ExecRequest};
use tokio::sync::Mutex;

use crate::bridge::wait;
use crate::error::to_py;

/// `str` → `/bin/sh -c`; a sequence of `str` → argv.
pub(crate) fn command(cmd: &Bound<'_, PyAny>) -> PyResult<Command> {
    if cmd.is_instance_of::<PyString>() {
        return Ok(Command::Shell(cmd.extract()?));
    }
    match cmd.extract::<Vec<String>>() {
        Ok(argv) => Ok(Command::Argv(argv)),
        Err(_) => Err(PyTypeError::new_err(
            "command must be a str (run with /bin/sh -c) or a list of str (argv)",
        )),
    }
}

/// `bytes` as they are, `str` as UTF-8.
pub(crate) fn bytes_arg(data: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if data.is_instance_of::<PyString>() {
        return Ok(data.extract::<String>()?.into_bytes());
    }
    Err(PyTypeError::new_err(format!("{what} must be bytes or str")))
}

/// Assemble an [`ExecRequest`] from the keyword arguments every exec method takes.
pub(crate) fn request(
    cmd: &Bound<'_, PyAny>,
    env: Option<std::collections::BTreeMap<String, String>>,
    workdir: Option<String>,
    user: Option<String>,
    stdin: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
    output_cap: Option<u64>,
) -> PyResult<ExecRequest> {
    let mut req = ExecRequest::new(command(cmd)?);
    req.env = env.unwrap_or_default();
    req.workdir = workdir;
    req.user = user;
    req.stdin = stdin.map(|s| bytes_arg(s, "stdin")).transpose()?;
    req.timeout = timeout
        .map(|t| {
            std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                crate::error::InvalidArgument::new_err(format!(
                    "invalid timeout: {t} is not a number of seconds >= 0"
                ))
            })
        })
        .transpose()?;
    req.output_cap = output_cap;
    Ok(req)
}

/// How an exec ended: exit status, captured output and what stopped it.
#[pyclass(module = "sqrx", frozen)]
pub struct ExecResult {
    inner: sqrx_core::ExecResult,
}

impl From<sqrx_core::ExecResult> for ExecResult {
    fn from(inner: sqrx_core::ExecResult) -> Self {
        ExecResult { inner }
    }
}

#[pymethods]
impl ExecResult {
    /// Exit code, or `None` when a signal killed the process.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code
    }
    /// The signal that killed the process, if one did.
    #[getter]
    fn signal(&self) -> Option<i32> {
        self.inner.signal
    }
    /// Captured stdout (at most the output cap).
    #[getter]
    fn stdout<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.stdout)
    }
    /// Captured stderr (at most the output cap).
    #[getter]
    fn stderr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.stderr)
    }
    /// stdout decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        self.inner.stdout_text()
    }
    /// stderr decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn stderr_text(&self) -> String {
        self.inner.stderr_text()
    }
    /// Output passed the cap and was cut.
    #[getter]
    fn truncated(&self) -> bool {
        self.inner.truncated
    }
    /// The timeout fired and the exec's whole process tree was killed.
    #[getter]
    fn timed_out(&self) -> bool {
        self.inner.timed_out
    }
    /// The sandbox's memory limit was hit and the kernel killed the process.
    #[getter]
    fn oom_killed(&self) -> bool {
        self.inner.oom_killed
    }
    /// When it started (UTC).
    #[getter]
    fn started(&self) -> DateTime<Utc> {
        self.inner.started
    }
    /// When it finished (UTC).
    #[getter]
    fn finished(&self) -> DateTime<Utc> {
        self.inner.finished
    }
    /// Wall time in milliseconds.
    #[getter]
    fn duration_ms(&self) -> u64 {
        self.inner.duration_ms
    }
    fn __repr__(&self) -> String {
        let opt = |v: Option<i32>| v.map_or("None".to_string(), |v| v.to_string());
        let flag = |b: bool| if b { "True" } else { "False" };
        format!(
            "ExecResult(exit_code={}, signal={}, timed_out={}, oom_killed={}, duration_ms={}, stdout={} bytes, stderr={} bytes)",
            opt(self.inner.exit_code),
            opt(self.inner.signal),
            flag(self.inner.timed_out),
            flag(self.inner.oom_killed),
            self.inner.duration_ms,
            self.inner.stdout.len(),
            self.inner.stderr.len()
        )
    }
}

/// One event of a streaming exec: `kind` is `"stdout"`, `"stderr"` or, last, `"exit"`
/// (then `result` holds the [`ExecResult`] and `data` is empty).
#[pyclass(module = "sqrx", frozen)]
pub struct ExecEvent {
    kind: &'static str,
    data: Vec<u8>,
    result: Option<Py<ExecResult>>,
}

impl ExecEvent {
    fn new(py: Python<'_>, event: sqrx_core::ExecEvent) -> PyResult<Self> {
        Ok(match event {
            sqrx_core::ExecEvent::Stdout(data) => ExecEvent {
                kind: "stdout",
                data,
                result: None,
            },
            sqrx_core::ExecEvent::Stderr(data) => ExecEvent {
                kind: "stderr",
                data,
                result: None,
            },
            sqrx_core::ExecEvent::Exit(result) => ExecEvent {
                kind: "exit",
                data: Vec::new(),
                result: Some(Py::new(py, ExecResult::from(result))?),
            },
        })
    }
}

#[pymethods]
impl ExecEvent {
    /// `"stdout"`, `"stderr"` or `"exit"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }
    /// The bytes written (empty for `"exit"`).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }
    /// `data` decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
    /// The exec's result, on the `"exit"` event.
    #[getter]
    fn result(&self, py: Python<'_>) -> Option<Py<ExecResult>> {
        self.result.as_ref().map(|r| r.clone_ref(py))
    }
    fn __repr__(&self) -> String {
        format!(
            "ExecEvent(kind={:?}, data={} bytes)",
            self.kind,
            self.data.len()
        )
    }
}

type SharedStream = Arc<Mutex<Option<sqrx_core::sandbox::ExecStream>>>;

async fn next_event(
    stream: SharedStream,
) -> Result<Option<sqrx_core::ExecEvent>, sqrx_core::SandboxError> {
    let mut guard = stream.lock().await;
    let Some(s) = guard.as_mut() else {
        return Ok(None);
    };
    match s.next().await {
        Some(Ok(event)) => {
            if matches!(event, sqrx_core::ExecEvent::Exit(_)) {
                // Nothing follows the exit; release the connection now.
                *guard = None;
            }
            Ok(Some(event))
        }
        Some(Err(e)) => {
            *guard = None;
            Err(e)
        }
        None => {
            *guard = None;
            Ok(None)
        }
    }
}

/// The events of a running exec, in order, ending with the `"exit"` event. Iterate it with
/// `for` (blocking, GIL released) or `async for`. Closing it (or dropping it) before the exit
/// kills the exec's process group.
#[pyclass(module = "sqrx", frozen)]
pub struct ExecStream {
    stream: SharedStream,
    pid: i32,
}

impl ExecStream {
    pub(crate) fn new(stream: sqrx_core::sandbox::ExecStream) -> Self {
        ExecStream {
            pid: stream.pid,
            stream: Arc::new(Mutex::new(Some(stream))),
        }
    }
}

#[pymethods]
impl ExecStream {
    /// The process's pid inside the sandbox.
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<ExecEvent>> {
        match wait(py, next_event(self.stream.clone()))? {
            Ok(Some(event)) => Ok(Some(ExecEvent::new(py, event)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(to_py(e)),
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match next_event(stream).await {
                Ok(Some(event)) => Python::attach(|py| ExecEvent::new(py, event)),
                Ok(None) => Err(PyStopAsyncIteration::new_err(())),
                Err(e) => Err(to_py(e)),
            }
        })
    }

    /// Stop the exec (its process group is killed) and release the connection; further
    /// iteration ends at once.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let stream = self.stream.clone();
        wait(py, async move {
            stream.lock().await.take();
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// A background process started with `Sandbox.spawn`.
#[pyclass(module = "sqrx", frozen)]
pub struct Process {
    handle: SpawnHandle,
}

impl Process {
    pub(crate) fn new(handle: SpawnHandle) -> Self {
        Process { handle }
    }
}

#[pymethods]
impl Process {
    /// Its pid inside the sandbox.
    #[getter]
    fn pid(&self) -> i32 {
        self.handle.pid
    }

    /// Wait for the process to exit; returns `(exit_code, signal)`. With `timeout` (seconds),
    /// raises `Timeout` if it still runs by then (it keeps running and can be waited for again).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(Option<i32>, Option<i32>)> {
        let handle = self.handle.clone();
        let timeout = match timeout {
            Some(t) if t.is_finite() && t >= 0.0 => Some(std::time::Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(to_py(sqrx_core::SandboxError::Invalid {
                    field: "timeout",
                    reason: format!("{t} is not a number of seconds"),
                }));
            }
            None => None,
        };
        wait(py, async move {
            match timeout {
                Some(t) => handle.wait_timeout(t).await,
                None => handle.wait().await,
            }
        })?
        .map_err(to_py)
    }

    /// Send `signal` (default SIGTERM) to the process and its process group.
    #[pyo3(signature = (signal=15))]
    fn kill(&self, py: Python<'_>, signal: i32) -> PyResult<()> {
        let handle = self.handle.clone();
        wait(py, async move { handle.kill(signal).await })?.map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Process(pid={})", self.handle.pid)
    }
}
