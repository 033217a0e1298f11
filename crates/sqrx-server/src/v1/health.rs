//! `GET /v1/health`.

use axum::Json;
use axum::extract::State;

use super::model::Health;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Liveness and a census; needs no token.
#[utoipa::path(get, path = "/v1/health", tag = "v1",
    responses((status = 200, description = "The server is up", body = Health),
              (status = 500, description = "Internal fault", body = ErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let (sandboxes, layers) = state
        .blocking(|rt| {
            let layers = rt.layers().list()?.len();
            Ok::<_, sqrx_core::LayerError>((rt.list().len(), layers))
        })
        .await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        sandboxes,
        layers,
    }))
}
