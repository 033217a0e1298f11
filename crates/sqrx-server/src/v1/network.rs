//! `PUT /v1/sandboxes/{id}/network`: change a running sandbox's network policy live.

use axum::Json;
use axum::extract::State;
use sqrx_core::network::NetworkPolicy;

use super::model::{NetworkPolicyJson, SandboxView};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path};
use crate::state::AppState;

/// `PUT /v1/sandboxes/{id}/network`: replace the sandbox's network policy. It takes effect
/// for the next packet: connections the new policy refuses are cut. A sandbox without a link
/// gets one; one set to `none` keeps its link with every packet dropped.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/network", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = NetworkPolicyJson,
    responses((status = 200, description = "The sandbox with its new policy", body = SandboxView),
              (status = 400, description = "Invalid policy (the rule and why) or id", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn set_network(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(policy): JsonBody<NetworkPolicy>,
) -> Result<Json<SandboxView>, ApiError> {
    let view = state
        .blocking(move |rt| {
            let mut sandbox = rt.get(&id)?;
            sandbox.set_network(policy)?;
            Ok::<_, sqrx_core::SandboxError>(SandboxView::of(&sandbox))
        })
        .await?;
    Ok(Json(view))
}
