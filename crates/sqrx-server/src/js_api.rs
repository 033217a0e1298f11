//! `POST /v1/execute` and the original JS sandbox route `POST /api/execute`: run JavaScript
//! with QuickJS, in confined worker processes by default (`--js-isolation`), and return the
//! Execution JSON.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqrx_core::js::{JsError, JsLimitField, JsLimitsPolicy, JsRequest};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Json as JsonBody;
use crate::state::AppState;

/// The example scripts shipped inside the binary, runnable by name with `{"file": ...}`.
pub const EXAMPLES: [(&str, &str); 3] = [
    ("log.js", include_str!("../../../examples/js/log.js")),
    ("pi.js", include_str!("../../../examples/js/pi.js")),
    ("simple.js", include_str!("../../../examples/js/simple.js")),
];

/// The bundled script `name` (`pi.js`, or `pi`).
pub fn example(name: &str) -> Option<&'static str> {
    EXAMPLES
        .iter()
        .find(|(n, _)| *n == name || n.strip_suffix(".js") == Some(name))
        .map(|(_, code)| *code)
}

/// A script to run.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// The script (its last expression's value is the result). Give this or `file`.
    #[serde(default)]
    pub code: Option<String>,
    /// A bundled example to run instead: `log.js`, `pi.js` or `simple.js`.
    #[serde(default)]
    pub file: Option<String>,
    /// JSON made available to the script as the global `input`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Option<serde_json::Value>,
    /// Time limit in milliseconds (default 5000; at most the server's
    /// `limits.max_js_timeout_ms`, 60000 unless set, and its exec timeout).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Heap limit in MiB (default 64; at least 2, at most the server's
    /// `limits.max_js_memory_mb`, 512 unless set).
    #[serde(default)]
    pub memory_mb: Option<u64>,
}

/// The outcome of a script (the JS sandbox's Execution shape).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Execution)]
pub struct ExecutionDoc {
    /// `success`, `error`, `timeout` or `out_of_memory`.
    pub status: String,
    /// The script's value on success, `null` otherwise.
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
    /// `false`, or `{"name", "message", "stack"}` of what was thrown.
    #[schema(value_type = Object)]
    pub error: serde_json::Value,
    /// Console output: `[{"type": "log"|"info"|"warn"|"error"|"debug", "timestamp", "data": [...]}]`.
    #[schema(value_type = Vec<Object>)]
    pub log: Vec<serde_json::Value>,
    /// Wall time, ms.
    #[serde(rename = "executionTime")]
    pub execution_time: f64,
}

/// Run a script. Script failures (throws, timeouts, out of memory) are results (200) with
/// their `status`; only a malformed request is an error.
#[utoipa::path(post, path = "/v1/execute", tag = "js",
    request_body = ExecuteBody,
    responses((status = 200, description = "The script ran (see its status)", body = ExecutionDoc),
              (status = 400, description = "Invalid request or limits", body = ErrorBody),
              (status = 404, description = "No bundled script by that name", body = ErrorBody)))]
pub async fn execute(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ExecuteBody>,
) -> Result<Json<sqrx_core::Execution>, ApiError> {
    let code = match (body.code, body.file) {
        (Some(code), None) => code,
        (None, Some(file)) => example(&file)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no bundled script {file:?} (there are {})",
                    EXAMPLES.map(|(n, _)| n).join(", ")
                ))
            })?
            .to_string(),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give code or file, not both")),
        (None, None) => return Err(ApiError::bad_request("code or file is required")),
    };
    let limits = policy(&state)
        .resolve(body.timeout_ms, body.memory_mb)
        .map_err(name_the_setting)?;
    let pool_state = state.clone();
    // Building an executor for new limits starts threads or processes: off the async threads.
    let executor =
        match tokio::task::spawn_blocking(move || pool_state.js().executor(&limits)).await {
            Ok(r) => r?,
            Err(e) => return Err(ApiError::internal(format!("executor task failed: {e}"))),
        };
    let out = executor
        .run(JsRequest {
            code,
            input: body.input,
        })
        .await;
    state
        .metrics()
        .js(out.status.as_str(), out.execution_time_ms / 1000.0);
    Ok(Json(out))
}

/// The server's policy: its default limits, and the maxima of `[limits]` (the time limit also at
/// most the exec timeout). A request past one is refused, never clamped.
fn policy(state: &AppState) -> JsLimitsPolicy {
    let config = state.config();
    let exec_timeout_ms = u64::try_from(config.exec_timeout.as_millis()).unwrap_or(u64::MAX);
    JsLimitsPolicy {
        defaults: state.js().default_limits().clone(),
        max_timeout_ms: exec_timeout_ms.min(config.limits.max_js_timeout_ms),
        max_memory_mb: config.limits.max_js_memory_mb,
    }
}

/// A 400 that names the `[limits]` setting holding the maximum a request went past.
fn name_the_setting(e: JsError) -> ApiError {
    let JsError::LimitOutOfRange { field, .. } = &e else {
        return e.into();
    };
    let setting = match field {
        JsLimitField::TimeoutMs => "limits.max_js_timeout_ms",
        JsLimitField::MemoryMb => "limits.max_js_memory_mb",
    };
    ApiError::bad_request(format!("{e} ({setting})"))
}

/// The original JS sandbox's route; the same as `POST /v1/execute`.
#[utoipa::path(post, path = "/api/execute", tag = "js",
    request_body = ExecuteBody,
    responses((status = 200, description = "The script ran (see its status)", body = ExecutionDoc),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn execute_compat(
    state: State<AppState>,
    body: JsonBody<ExecuteBody>,
) -> Result<Json<sqrx_core::Execution>, ApiError> {
    execute(state, body).await
}

/// The JavaScript routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/execute", axum::routing::post(execute))
        .route("/api/execute", axum::routing::post(execute_compat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_examples() {
        assert!(example("pi.js").is_some());
        assert!(example("pi").is_some());
        assert!(example("log.js").is_some_and(|c| c.contains("console.log")));
        assert!(example("nope.js").is_none());
        assert!(example("../pi.js").is_none());
    }
}
