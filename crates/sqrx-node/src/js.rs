//! `runJs`: QuickJS in-process, no sandbox needed.

use std::time::Duration;

use napi_derive::napi;
use sqrx_core::js::{JsExecutor, JsLimits, JsRequest};

use crate::error::{join, to_napi};

/// Limits and input of one `runJs` call (every field optional).
#[napi(object)]
pub struct RunJsOptions {
    /// The script's global `input` (any JSON value).
    pub input: Option<serde_json::Value>,
    /// Wall-clock limit in milliseconds (default 5000).
    pub timeout_ms: Option<u32>,
    /// Heap limit in MiB (default 64).
    pub memory_mb: Option<u32>,
}

/// The outcome of one script.
#[napi(object)]
pub struct JsResult {
    /// `"success"`, `"error"`, `"timeout"` or `"out_of_memory"`.
    pub status: String,
    /// The script's value on success (`null` otherwise).
    pub result: serde_json::Value,
    /// What was thrown, `{ name, message, stack }`, or `false`.
    pub error: serde_json::Value,
    /// The console calls, in order: `{ type, timestamp, data }`.
    pub log: serde_json::Value,
    /// Wall time of the execution in milliseconds.
    pub execution_time: f64,
}

/// Run JavaScript `code` with QuickJS in this process (on a worker thread), under a time and a
/// memory limit. A script that throws, times out or runs out of memory resolves with that
/// `status`; only a bad limit rejects.
#[napi]
pub async fn run_js(code: String, options: Option<RunJsOptions>) -> napi::Result<JsResult> {
    let (input, timeout_ms, memory_mb) = match options {
        Some(o) => (o.input, o.timeout_ms, o.memory_mb),
        None => (None, None, None),
    };
    let defaults = JsLimits::default();
    let limits = JsLimits {
        timeout: timeout_ms.map_or(defaults.timeout, |ms| Duration::from_millis(ms.into())),
        memory_bytes: memory_mb.map_or(defaults.memory_bytes, |mb| (mb as usize) << 20),
        ..defaults
    };
    let mut request = JsRequest::new(code);
    if let Some(input) = input {
        request = request.with_input(input);
    }
    let out = tokio::task::spawn_blocking(move || {
        let js = JsExecutor::builder().limits(limits).workers(1).build()?;
        Ok::<_, sqrx_core::JsError>(js.run_blocking(request))
    })
    .await
    .map_err(join)?
    .map_err(to_napi)?;
    // The Execution's own JSON is the wire shape (`error` is `false` when nothing was thrown).
    let mut json = serde_json::to_value(&out).map_err(|e| {
        napi::Error::from_reason(format!("Internal: cannot encode the result: {e}"))
    })?;
    Ok(JsResult {
        status: out.status.as_str().to_string(),
        result: json["result"].take(),
        error: json["error"].take(),
        log: json["log"].take(),
        execution_time: out.execution_time_ms,
    })
}
