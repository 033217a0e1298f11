//! Authentication: with a token configured (or any user API key in the tenant database),
//! every route but the health checks, the OpenAPI document and the session routes that carry
//! their own capability needs `Authorization: Bearer <token or key>` (E2B's SDKs: `X-API-KEY`).
//! The request then carries the caller's [`Identity`]: the operator for the server's token,
//! else the user of the key. Refusals of keys are audited.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::{AuditRecord, AuthFailure, Identity};

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

/// The key a request offers: `Authorization: Bearer KEY`, else E2B's `X-API-KEY`.
fn offered_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Do `headers` carry the server's own token?
pub fn has_operator_token(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = state.config().auth_token.as_deref() else {
        return false;
    };
    let header = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    bearer_matches(header, token) || crate::e2b::api_key_matches(headers, token)
}

/// Whether requests must authenticate: a token is configured or a user key exists.
pub fn required(state: &AppState) -> bool {
    state.config().auth_token.is_some() || state.tenants().is_some_and(|t| t.keys_exist())
}

/// Middleware: puts the caller's [`Identity`] in the request, or refuses it with 401
/// `{"error": ...}` (429 with `Retry-After` past the key's rate limit).
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = is_public(&req);
    if !required(&state) || has_operator_token(&state, req.headers()) {
        req.extensions_mut().insert(Identity::Operator);
        return next.run(req).await;
    }
    let Some(tenants) = state.tenants().cloned() else {
        return if public {
            next.run(req).await
        } else {
            unauthorized()
        };
    };
    let outcome = match offered_key(&req) {
        Some(key) => tenants.authenticate(key).await,
        None => Err(AuthFailure::Unknown { key_id: None }),
    };
    match outcome {
        Ok(identity) => {
            if let Identity::User(p) = &identity
                && let Err(wait) = tenants.rate_check(p)
            {
                return rate_limited(wait);
            }
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
        // The routes that authenticate themselves (E2B's, session capabilities) decide.
        Err(_) if public => next.run(req).await,
        Err(failure) => {
            let (user, key_id) = failure.who();
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
            tenants.audit(AuditRecord {
                id: String::new(),
                at: chrono::Utc::now(),
                user,
                key_id,
                action: format!("{} {route}", req.method()),
                target: None,
                result: "denied".into(),
                status: 401,
                source_ip: crate::tenants::guard::source_ip(&req),
            });
            match failure {
                AuthFailure::Unavailable => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, failure.to_string())
                        .into_response()
                }
                AuthFailure::Unknown { .. } => unauthorized(),
                other => unauthorized_because(&other.to_string()),
            }
        }
    }
}

/// The 401 answer for a request to a non-public route without the server's token or a
/// valid key, if it lacks both. (For the paths that serve outside the router; they accept
/// the operator's token only and hand anything else to the router.)
pub fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    if !required(state) || has_operator_token(state, req.headers()) {
        return None;
    }
    Some(unauthorized())
}

fn rate_limited(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit of this API key reached; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

fn unauthorized_because(reason: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
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
