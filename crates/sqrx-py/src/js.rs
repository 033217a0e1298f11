//! `sqrx.run_js`: QuickJS in-process, no sandbox needed.

use std::sync::OnceLock;

use pyo3::prelude::*;
use sqrx_core::js::{JsError, JsExecutorCache, JsLimits, JsLimitsPolicy, JsRequest};

use crate::bridge::off_thread;
use crate::error::to_py;

/// The outcome of one script: `status` is `"success"`, `"error"`, `"timeout"` or
/// `"out_of_memory"`; `result` the script's value (JSON-converted) on success; `error` a dict
/// with `name`, `message` and `stack` when something was thrown; `log` the console calls
/// (`{"type", "timestamp", "data"}`); `execution_time_ms` the wall time.
#[pyclass(module = "sqrx", frozen)]
pub struct JsResult {
    /// `"success"`, `"error"`, `"timeout"` or `"out_of_memory"`.
    #[pyo3(get)]
    status: &'static str,
    /// The script's value on success (`None` otherwise).
    #[pyo3(get)]
    result: Py<PyAny>,
    /// What was thrown: `{"name", "message", "stack"}`, or `None`.
    #[pyo3(get)]
    error: Py<PyAny>,
    /// The console calls, in order: `{"type", "timestamp", "data"}`.
    #[pyo3(get)]
    log: Py<PyAny>,
    /// Wall time of the execution in milliseconds.
    #[pyo3(get)]
    execution_time_ms: f64,
}

#[pymethods]
impl JsResult {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "JsResult(status={:?}, result={}, execution_time_ms={:.3})",
            self.status,
            self.result.bind(py).repr()?,
            self.execution_time_ms
        ))
    }
}

fn from_json<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("cannot encode: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

fn js_result(py: Python<'_>, out: sqrx_core::Execution) -> PyResult<JsResult> {
    Ok(JsResult {
        status: out.status.as_str(),
        result: from_json(py, &out.result)?,
        error: from_json(py, &out.error)?,
        log: from_json(py, &out.log)?,
        execution_time_ms: out.execution_time_ms,
    })
}

/// Build the request and its limits for one `run_js` call.
fn prepare(
    py: Python<'_>,
    code: String,
    input: Option<&Bound<'_, PyAny>>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
) -> PyResult<(JsLimits, JsRequest)> {
    let mut request = JsRequest::new(code);
    if let Some(input) = input {
        let text: String = py
            .import("json")?
            .call_method1("dumps", (input,))?
            .extract()?;
        let value = serde_json::from_str(&text).map_err(|e| {
            crate::error::InvalidArgument::new_err(format!("input is not JSON: {e}"))
        })?;
        request = request.with_input(value);
    }
    let limits = JsLimitsPolicy::default()
        .resolve(timeout_ms, memory_mb)
        .map_err(to_py)?;
    Ok((limits, request))
}

/// Run `request` on this process's executor for `limits`: one pool of worker threads per
/// distinct limits, shared by every `run_js` call of the process and built by the first
/// (blocking: call it with the GIL released).
fn run(limits: &JsLimits, request: JsRequest) -> Result<sqrx_core::Execution, JsError> {
    static EXECUTORS: OnceLock<JsExecutorCache> = OnceLock::new();
    let executors = EXECUTORS.get_or_init(|| JsExecutorCache::in_process(JsLimits::default()));
    Ok(executors.get(limits)?.run_blocking(request))
}

/// Run JavaScript `code` with QuickJS, in this process, under a time and a memory limit
/// (`None`: the core's defaults, 5000 ms and 64 MiB). `input` (any JSON-serializable value) is
/// the script's global `input`; the value of its last expression (awaited if a promise) is
/// the result. A script that throws, times out or runs out of memory is a result with that
/// `status`, not an exception.
#[pyfunction]
#[pyo3(signature = (code, input=None, timeout_ms=None, memory_mb=None))]
pub fn run_js(
    py: Python<'_>,
    code: String,
    input: Option<&Bound<'_, PyAny>>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
) -> PyResult<JsResult> {
    let (limits, request) = prepare(py, code, input, timeout_ms, memory_mb)?;
    let out = py.detach(|| run(&limits, request)).map_err(to_py)?;
    js_result(py, out)
}

/// `run_js` for asyncio: returns an awaitable of the `JsResult`.
#[pyfunction]
#[pyo3(signature = (code, input=None, timeout_ms=None, memory_mb=None))]
pub fn run_js_async<'py>(
    py: Python<'py>,
    code: String,
    input: Option<&Bound<'py, PyAny>>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
) -> PyResult<Bound<'py, PyAny>> {
    let (limits, request) = prepare(py, code, input, timeout_ms, memory_mb)?;
    crate::bridge::runtime()?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let out = off_thread(move || run(&limits, request))
            .await?
            .map_err(to_py)?;
        Python::attach(|py| js_result(py, out))
    })
}
