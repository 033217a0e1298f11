//! E2B-compatible API: the official `e2b` SDKs (Python and JavaScript) work against `sqrx
//! serve` with `E2B_API_URL` and `E2B_SANDBOX_URL` pointing at it and `E2B_API_KEY` set to the
//! server's token (see docs/e2b.md).
//!
//! - The control plane ([`control`]): E2B's REST under `/sandboxes` and `/v2/sandboxes`,
//!   authenticated with `X-API-KEY`; errors are `{"code": <status>, "message": ...}`.
//! - The sandbox side (envd, [`process`]): Connect RPC (JSON) under `/process.Process/*` and
//!   `/filesystem.Filesystem/*`, plus `GET /health`; the sandbox is named by the
//!   `E2b-Sandbox-Id` header (or a `Host` of `{port}-{sandboxID}.{domain}`), and each request
//!   carries the sandbox's access token (`X-Access-Token`) handed out at create and connect.

pub mod connect;
pub mod control;
pub mod filesystem;
pub mod process;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::state::AppState;

/// The envd version reported: the SDKs enable the features of envd up to this one.
pub const ENVD_VERSION: &str = "0.5.7";

/// The envd port the SDKs address (`E2b-Sandbox-Port`).
pub const ENVD_PORT: u16 = 49983;

/// Every E2B route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/sandboxes", post(control::create).get(control::list))
        .route("/sandboxes", post(control::create_v1).get(control::list))
        .route(
            "/sandboxes/{id}",
            get(control::get_info).delete(control::kill),
        )
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/pause", post(control::pause))
        .route("/sandboxes/{id}/resume", post(control::connect))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/health", get(process::health))
        .route("/process.Process/{method}", post(process::rpc))
        .route("/filesystem.Filesystem/{method}", post(filesystem::rpc))
        .route(
            "/files",
            get(filesystem::download)
                .post(filesystem::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// The routes that authenticate themselves: the control plane (`X-API-KEY`, answering 401 in
/// E2B's error shape) and the sandbox side (the sandbox's access token).
pub const SELF_AUTHENTICATED: [&str; 12] = [
    "/v2/sandboxes",
    "/sandboxes",
    "/sandboxes/{id}",
    "/sandboxes/{id}/timeout",
    "/sandboxes/{id}/pause",
    "/sandboxes/{id}/resume",
    "/sandboxes/{id}/connect",
    "/v2/sandboxes/{id}/connect",
    "/health",
    "/process.Process/{method}",
    "/filesystem.Filesystem/{method}",
    "/files",
];

/// Does `X-API-KEY` carry `token`? (Constant-time.)
pub fn api_key_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get("x-api-key")
        .is_some_and(|v| v.as_bytes().ct_eq(token.as_bytes()).into())
}

/// The access token of a sandbox's envd side: derived from the server's token (or, without
/// one, a key of the data directory), the sandbox id and its creation time, so it survives
/// server restarts and dies with the sandbox.
pub fn access_token(state: &AppState, id: &str, created: chrono::DateTime<chrono::Utc>) -> String {
    let key = state
        .config()
        .auth_token
        .clone()
        .unwrap_or_else(|| data_key(state.runtime().data_dir()));
    let mut h = sha2::Sha256::new();
    h.update(b"sqrx-e2b-envd\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    h.update(b"\0");
    h.update(created.to_rfc3339().as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A random key kept in the data directory (0600), made on first use.
fn data_key(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("e2b.key");
    if let Ok(k) = std::fs::read_to_string(&path)
        && k.trim().len() >= 32
    {
        return k.trim().to_string();
    }
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    let key = hex::encode(b);
    let _ = std::fs::write(&path, &key);
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    key
}

/// A request for `{port}-{sandboxID}.{domain}` (what the SDKs' `get_host(port)` names) with a
/// port other than envd's goes to that port of the sandbox through sqrx's proxy: the URI it
/// should be routed as (`/proxy/{id}/{port}/...`), if it is one.
pub fn host_route(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<axum::http::Uri> {
    let host = headers.get("host").and_then(|v| v.to_str().ok())?;
    let first = host.split('.').next()?;
    // A bare name without a domain is no sandbox host.
    if !host.contains('.') {
        return None;
    }
    let (port, id) = first.split_once('-')?;
    let port: u16 = port.parse().ok()?;
    if port == ENVD_PORT || sqrx_core::sandbox::validate_id(id).is_err() {
        return None;
    }
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("/proxy/{id}/{port}{pq}").parse().ok()
}

/// The sandbox a sandbox-side request is for: `E2b-Sandbox-Id`, else a `Host` of
/// `{port}-{sandboxID}.{domain}`.
pub fn sandbox_id(headers: &HeaderMap) -> Option<String> {
    if let Some(id) = headers.get("e2b-sandbox-id").and_then(|v| v.to_str().ok()) {
        return Some(id.trim().to_string());
    }
    let host = headers.get("host").and_then(|v| v.to_str().ok())?;
    let first = host.split('.').next()?;
    let (port, id) = first.split_once('-')?;
    port.parse::<u16>().ok()?;
    Some(id.to_string())
}

/// The user a sandbox-side call acts as: `explicit` (the `/files` `username` parameter), else
/// the name of `Authorization: Basic base64("name:")` (what the SDKs send for `user=`), else
/// `user` on sandboxes of E2B's base image ([`sqrx_core::layer::E2B_LAYER`]), else `root`.
pub fn request_user(
    headers: &HeaderMap,
    explicit: Option<&str>,
    sb: &sqrx_core::Sandbox,
) -> String {
    use base64::Engine;
    if let Some(u) = explicit.filter(|u| !u.is_empty()) {
        return u.to_string();
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split(':').next().unwrap_or_default().to_string())
        .filter(|u| !u.is_empty());
    if let Some(u) = basic {
        return u;
    }
    let e2b_image = sb
        .spec()
        .layers
        .iter()
        .any(|l| l == sqrx_core::layer::E2B_LAYER);
    if e2b_image {
        sqrx_core::layer::E2B_USER.0.to_string()
    } else {
        "root".to_string()
    }
}
