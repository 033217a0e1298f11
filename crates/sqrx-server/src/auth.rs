//! Bearer-token authentication: with a token configured, every route but the health checks,
//! the OpenAPI document and the session routes that carry their own capability needs
//! `Authorization: Bearer <token>`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Routes anyone may call: load balancers and clients probing readiness, the API
/// description, and the session routes whose path holds a 128-bit random capability (the
/// session id for its WebSocket and status, the termination token for stop and extend), as squarex's
/// public endpoint works. A browser cannot set `Authorization` on a WebSocket, and whoever
/// opened the session (`POST /v1/try`, which needs the token) hands these out.
pub const PUBLIC_PATHS: [&str; 7] = [
    "/v1/health",
    "/cgi-bin/health",
    "/openapi.json",
    "/{session_id}/ws",
    "/v1/status/{session_id}",
    "/v1/stop/{termination_token}",
    "/v1/extend/{termination_token}",
];

/// Is the request for a public route?
fn is_public(req: &Request) -> bool {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    PUBLIC_PATHS
        .iter()
        .chain(crate::e2b::SELF_AUTHENTICATED.iter())
        .any(|p| route == Some(*p) || req.uri().path() == *p)
}

/// Does `header` (an `Authorization` value) carry `token`? The comparison takes the same time
/// wherever the first differing byte is.
pub fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return false;
    };
    given.ct_eq(token.as_bytes()).into()
}

/// Middleware refusing unauthenticated requests with 401 `{"error":"unauthorized"}`.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.config().auth_token.is_none() || is_public(&req) {
        return next.run(req).await;
    }
    match refusal(&state, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// The 401 answer for a request to a non-public route without the server's token, if it
/// lacks it.
pub fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    let token = state.config().auth_token.as_deref()?;
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    // E2B's SDKs send the key as `X-API-KEY`.
    if bearer_matches(header, token) || crate::e2b::api_key_matches(req.headers(), token) {
        return None;
    }
    Some(unauthorized())
}

/// The 401 answer to a request without the server's token.
pub fn unauthorized() -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        assert!(bearer_matches(Some(b"Bearer abc"), "abc"));
        assert!(!bearer_matches(Some(b"Bearer abd"), "abc"));
        assert!(!bearer_matches(Some(b"Bearer ab"), "abc"));
        assert!(!bearer_matches(Some(b"Bearer abcd"), "abc"));
        assert!(!bearer_matches(Some(b"bearer abc"), "abc"));
        assert!(!bearer_matches(Some(b"abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }
}
