//! `POST /v1/sandboxes/{id}/exec`: run a process and return its output when it ends.

use std::time::Instant;

use axum::Json;
use axum::extract::State;

use super::model::{ExecBody, ExecOutput};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path};
use crate::metrics::ExecOutcome;
use crate::state::AppState;

/// Run a process to completion. Non-zero exits and timeouts are results (200), not errors.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ExecBody,
    responses((status = 200, description = "The process ended", body = ExecOutput),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 404, description = "No such sandbox, or program not found", body = ErrorBody),
              (status = 409, description = "The sandbox is paused", body = ErrorBody)))]
pub async fn exec(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecBody>,
) -> Result<Json<ExecOutput>, ApiError> {
    let req = body.into_request(state.config().exec_timeout, &state.config().limits)?;
    let sandbox = state.sandbox(&id).await?;
    let started = Instant::now();
    let result = sandbox.exec(req).await;
    let outcome = match &result {
        Ok(r) => ExecOutcome::of(r),
        Err(_) => ExecOutcome::Error,
    };
    state
        .metrics()
        .exec(outcome, started.elapsed().as_secs_f64());
    Ok(Json(result?.into()))
}
