//! `/v1/sandboxes`: create, list, show, destroy, history, pause and resume.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::model::{CreateSandbox, LogEntryView, SandboxView};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path, Query};
use crate::state::AppState;
use crate::tenants::Caller;
use serde::Deserialize;

/// `POST /v1/sandboxes`: create and start a sandbox.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "v1",
    request_body = CreateSandbox,
    responses((status = 201, description = "Created and running", body = SandboxView),
              (status = 400, description = "Invalid spec or body (a bad network policy: the rule and why), or upper_mb over the server's maximum", body = ErrorBody),
              (status = 404, description = "A layer does not exist", body = ErrorBody),
              (status = 409, description = "The id is taken", body = ErrorBody),
              (status = 413, description = "Body too large", body = ErrorBody),
              (status = 415, description = "Not application/json", body = ErrorBody),
              (status = 429, description = "Sandbox limit reached", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateSandbox>,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    let config = state.config();
    let spec = body.into_spec(config.upper_mb, &config.limits, &config.network.default)?;
    let sandbox = crate::tenants::create_sandbox(&state, &caller, spec).await?;
    let view = tokio::task::spawn_blocking(move || SandboxView::of(&sandbox))
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/sandboxes`: every live sandbox, by id.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "v1",
    responses((status = 200, body = Vec<SandboxView>)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<SandboxView>>, ApiError> {
    let views = state
        .blocking(move |rt| {
            Ok::<_, ApiError>(
                rt.list()
                    .iter()
                    .filter(|s| caller.may_see(s.spec().owner.as_deref()))
                    .map(SandboxView::of)
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(Json(views))
}

/// `GET /v1/sandboxes/{id}`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxView),
              (status = 400, description = "Invalid id", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let sandbox = state.sandbox(&id).await?;
    Ok(Json(SandboxView::of(&sandbox)))
}

/// `DELETE /v1/sandboxes/{id}` options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DestroyQuery {
    /// With ephemeral sandboxes: snapshot the sandbox into the bucket first (default true;
    /// `false` discards it).
    #[serde(default = "yes")]
    pub save: bool,
}

fn yes() -> bool {
    true
}

/// `DELETE /v1/sandboxes/{id}`: stop every process and release the sandbox. With ephemeral
/// sandboxes it is first snapshotted into the bucket (see docs/s3.md); if that fails the
/// sandbox is kept and the error answered (502).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"), DestroyQuery),
    responses((status = 204, description = "Destroyed"),
              (status = 404, body = ErrorBody),
              (status = 502, description = "Ephemeral: the snapshot could not be pushed; the sandbox is kept", body = ErrorBody)))]
pub async fn destroy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DestroyQuery>,
) -> Result<StatusCode, ApiError> {
    state
        .blocking(move |rt| {
            let sandbox = rt.get(&id)?;
            match q.save {
                true => sandbox.destroy(),
                false => sandbox.destroy_unsaved(),
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sandboxes/{id}/logs`: the exec history, oldest first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/logs", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = Vec<LogEntryView>),
              (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<LogEntryView>>, ApiError> {
    let logs = state
        .blocking(move |rt| rt.get(&id).map(|s| s.logs()))
        .await?;
    Ok(Json(logs.into_iter().map(LogEntryView::from).collect()))
}

/// `POST /v1/sandboxes/{id}/pause`: freeze every process (execs are refused until resume).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxView),
              (status = 404, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let view = state
        .blocking(move |rt| {
            let s = rt.get(&id)?;
            s.pause()?;
            Ok::<_, sqrx_core::SandboxError>(SandboxView::of(&s))
        })
        .await?;
    Ok(Json(view))
}

/// `POST /v1/sandboxes/{id}/resume`: thaw a paused sandbox.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxView),
              (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let view = state
        .blocking(move |rt| {
            let s = rt.get(&id)?;
            s.resume()?;
            Ok::<_, sqrx_core::SandboxError>(SandboxView::of(&s))
        })
        .await?;
    Ok(Json(view))
}
