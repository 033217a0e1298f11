//! The native API under `/v1`.

pub mod archive;
pub mod exec;
pub mod exec_ws;
pub mod files;
pub mod health;
pub mod layers;
pub mod model;
pub mod network;
pub mod pty;
pub mod remote;
pub mod sandboxes;
pub mod secrets;
pub mod sessions;
pub mod snapshots;
pub mod stats;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::state::AppState;

/// The `/v1` routes. Uploads take their own body limit (`max_upload_bytes`); everything else
/// the app-wide JSON limit.
pub fn router(state: &AppState) -> Router<AppState> {
    let upload_limit = usize::try_from(state.config().max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/health", get(health::health))
        .route("/v1/layers", get(layers::list))
        .route(
            "/v1/layers/{name}",
            get(layers::get)
                .put(layers::upload)
                .delete(layers::remove)
                // The upload streams its body and counts it against the limit itself.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/layers/{name}/push", post(remote::push))
        .route("/v1/layers/{name}/pull", post(remote::pull))
        .route("/v1/layers/sync", post(remote::sync))
        .route("/v1/remote/layers", get(remote::list))
        .route("/v1/remote/uploads", get(remote::uploads))
        .route(
            "/v1/sandboxes",
            get(sandboxes::list).post(sandboxes::create),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::destroy),
        )
        .route("/v1/sandboxes/{id}/network", put(network::set_network))
        .route("/v1/sandboxes/{id}/secrets", get(secrets::list))
        .route(
            "/v1/sandboxes/{id}/secrets/{name}",
            put(secrets::put).delete(secrets::remove),
        )
        .route("/v1/secrets", get(secrets::runtime_list))
        .route("/v1/secrets/reload", post(secrets::reload))
        .route("/v1/sandboxes/{id}/exec", post(exec::exec))
        .route("/v1/sandboxes/{id}/exec/ws", get(exec_ws::exec_ws))
        .route("/v1/sandboxes/{id}/pty", get(pty::pty))
        .route("/v1/try", post(sessions::try_session))
        .route("/v1/status/{session_id}", get(sessions::status))
        .route(
            "/v1/stop/{termination_token}",
            post(sessions::stop).delete(sessions::stop_delete),
        )
        .route("/v1/extend/{termination_token}", post(sessions::extend))
        .route("/v1/sandboxes/{id}/logs", get(sandboxes::logs))
        .route("/v1/sandboxes/{id}/stats", get(stats::stats))
        .route("/v1/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/v1/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/v1/sandboxes/{id}/snapshot", post(snapshots::snapshot))
        .route("/v1/sandboxes/{id}/snapshots", get(snapshots::list))
        .route(
            "/v1/sandboxes/{id}/snapshots/{label}/push",
            post(snapshots::push),
        )
        .route("/v1/sandboxes/{id}/restore", post(snapshots::restore))
        .route("/v1/sandboxes/{id}/activate", post(snapshots::activate))
        .route("/v1/sandboxes/{id}/clone", post(snapshots::clone))
        .route(
            "/v1/sandboxes/{id}/archive",
            get(archive::download)
                .put(archive::upload)
                // The upload streams its body and counts it against the limit itself.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/sandboxes/{id}/files", get(files::get_root))
        .route(
            "/v1/sandboxes/{id}/files/{*path}",
            get(files::get)
                .put(files::put)
                .delete(files::remove)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
}
