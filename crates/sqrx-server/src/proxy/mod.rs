//! Reaching services inside sandboxes from outside: the HTTP/WebSocket reverse proxy
//! (`/proxy/{sandbox_id}/{port}/...`, and `/proxy/{sandbox_id}/...` for the sandbox's default
//! port) and the sessions' public WebSocket endpoint
//! (`/{session_id}/ws`). Neither needs an IP route into the sandbox: connections are made by
//! the sandbox's init and passed back (see `sqrx_core::Sandbox::connect`).
//!
//! Plain HTTP/1.1 proxy requests are relayed by [`relay`] (with [`framing`]); upgrades and
//! everything hyper serves go through [`direct`] and [`http`], over [`upstream`]'s pool.

pub mod direct;
pub mod framing;
pub mod http;
pub mod relay;
pub mod rules;
pub mod session;
pub mod upstream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};

pub use upstream::Upstream;

use crate::state::AppState;

/// The proxy routes. Bodies stream through unbuffered, so no body limit applies.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session_id}/ws", get(session::session_ws))
        .route("/proxy/{sandbox_id}", any(http::redirect))
        .route(
            "/proxy/{sandbox_id}/",
            any(http::proxy).layer(DefaultBodyLimit::disable()),
        )
        .route("/proxy/{sandbox_id}/{port}", any(http::redirect))
        .route(
            "/proxy/{sandbox_id}/{port}/",
            any(http::proxy).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/proxy/{sandbox_id}/{port}/{*path}",
            any(http::proxy).layer(DefaultBodyLimit::disable()),
        )
}
