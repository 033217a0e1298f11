//! `runJs`: QuickJS in-process, no sandbox needed.

use std::sync::OnceLock;

use napi_derive::napi;
use sqrx_core::js::{JsExecutorCache, JsLimits, JsLimitsPolicy, JsRequest};

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
    let limits = JsLimitsPolicy::default()
        .resolve(timeout_ms.map(u64::from), memory_mb.map(u64::from))
        .map_err(to_napi)?;
    let mut request = JsRequest::new(code);
    if let Some(input) = input {
        request = request.with_input(input);
    }
    // One pool of worker threads per distinct limits, shared by every `runJs` of the process
    // and built by the first (blocking, so on a blocking thread).
    static EXECUTORS: OnceLock<JsExecutorCache> = OnceLock::new();
    let out = tokio::task::spawn_blocking(move || {
        let executors = EXECUTORS.get_or_init(|| JsExecutorCache::in_process(JsLimits::default()));
        Ok::<_, sqrx_core::JsError>(executors.get(&limits)?.run_blocking(request))
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
