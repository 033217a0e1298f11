//! Secrets over `/v1`: a sandbox's (list, set or rotate, remove) and the runtime's (list,
//! read `<data>/secrets.json` again). Values are write-only: no answer ever holds one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::model::{SecretBody, SecretView};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path};
use crate::state::AppState;

/// `GET /v1/sandboxes/{id}/secrets`: the sandbox's secrets (the runtime's and its own).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/secrets", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, description = "Names, placeholders and hosts; never values", body = Vec<SecretView>),
              (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let sandbox = state.sandbox(&id).await?;
    Ok(Json(
        sandbox
            .secrets()
            .into_iter()
            .map(SecretView::from)
            .collect(),
    ))
}

/// `PUT /v1/sandboxes/{id}/secrets/{name}`: add a secret to the sandbox, or give one a new
/// value or hosts (rotation; the next request uses it). A sandbox created without secrets
/// starts sending its HTTP and HTTPS through the egress proxy.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/secrets/{name}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("name" = String, Path, description = "The secret's name (its environment variable)")),
    request_body = SecretBody,
    responses((status = 200, description = "The sandbox's secrets now", body = Vec<SecretView>),
              (status = 400, description = "An invalid secret (names the secret, never its value), or a sandbox without a network", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state
        .blocking(move |rt| {
            let mut sandbox = rt.get(&id)?;
            sandbox.set_secret(&name, body.into())?;
            Ok::<_, sqrx_core::SandboxError>(sandbox.secrets())
        })
        .await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}

/// `DELETE /v1/sandboxes/{id}/secrets/{name}`: remove one of the sandbox's own secrets.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/secrets/{name}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("name" = String, Path, description = "The secret's name")),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such sandbox, or no secret of its own by that name", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let what = format!("sandbox {id} has no secret of its own named {name}");
    let removed = state
        .blocking(move |rt| rt.get(&id)?.remove_secret(&name))
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(what))
    }
}

/// `GET /v1/secrets`: the runtime's secrets (from `<data>/secrets.json`).
#[utoipa::path(get, path = "/v1/secrets", tag = "v1",
    responses((status = 200, description = "Names, placeholders and hosts; never values", body = Vec<SecretView>)))]
pub async fn runtime_list(
    State(state): State<AppState>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state
        .blocking(|rt| Ok::<_, sqrx_core::SandboxError>(rt.secrets()))
        .await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}

/// `POST /v1/secrets/reload`: read `<data>/secrets.json` again, as `SIGHUP` does.
#[utoipa::path(post, path = "/v1/secrets/reload", tag = "v1",
    responses((status = 200, description = "The runtime's secrets now", body = Vec<SecretView>),
              (status = 400, description = "A bad file (names the file and the secret; nothing changed)", body = ErrorBody)))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state
        .blocking(|rt| {
            rt.reload_secrets()?;
            Ok::<_, sqrx_core::SandboxError>(rt.secrets())
        })
        .await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}
