//! Authentication: with a token configured (or any user API key in the tenant database),
//! every route but the health checks, the OpenAPI document and the session routes that carry
//! their own capability needs `Authorization: Bearer <token or key>` (E2B's SDKs: `X-API-KEY`).
//! The request then carries the caller's [`Identity`]: the operator for the server's token,
//! else the user of the key. Refusals of keys are audited.
//!
//! A browser cannot set headers on a WebSocket, and a token in the URL would land in access
//! logs and browser history. So the API's own WebSockets (`/v1/...`: the terminal, streamed
//! exec) also take the key from a `Sec-WebSocket-Protocol` entry `sqrx.bearer.<base64url of
//! the key, no padding>`, offered next to the `sqrx` subprotocol that the server selects (the
//! Kubernetes `base64url.bearer.authorization.k8s.io.` pattern). Never on the proxy's and
//! sessions' sockets: those forward the offered subprotocols to a service inside a sandbox.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Identity;
use crate::tenants::access::{self, Refusal};

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

/// Is the request for a public route? (The console's static files under `/ui` are public
/// too: they hold no secret, and every API call the page makes is authenticated.)
fn is_public(req: &Request) -> bool {
    if crate::ui::is_ui_path(req.uri().path()) {
        return true;
    }
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

/// The key offered by an `Authorization: Bearer KEY` value, else by E2B's `X-API-KEY`.
pub fn offered_key<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Option<&'a str> {
    authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| x_api_key.and_then(|v| std::str::from_utf8(v).ok()))
        .map(str::trim)
}

/// The subprotocol a browser's WebSocket to the API offers (and the server selects).
pub const WS_PROTOCOL: &str = "sqrx";

/// The prefix of the subprotocol entry that carries a key: `sqrx.bearer.<base64url(key)>`.
pub const WS_BEARER_PREFIX: &str = "sqrx.bearer.";

/// The key carried by a `Sec-WebSocket-Protocol` value (comma-separated entries): the first
/// `sqrx.bearer.` entry, base64url-decoded (padding optional). `None` if there is none or it
/// does not decode to UTF-8.
pub fn subprotocol_key(value: Option<&[u8]>) -> Option<String> {
    use base64::Engine as _;
    let value = std::str::from_utf8(value?).ok()?;
    let encoded = value
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(WS_BEARER_PREFIX))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// May `route` take its key from the WebSocket subprotocol? The API's own sockets only: the
/// proxy and the sessions relay the offered subprotocols to a service inside a sandbox, which
/// must never see a key.
fn takes_subprotocol_key(route: &str) -> bool {
    route.starts_with("/v1/")
}

/// The route of `req` (its pattern when matched, else its path).
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path(), MatchedPath::as_str)
}

/// The key a request offers: `Authorization`, `X-API-KEY`, else (on the API's WebSockets)
/// the `sqrx.bearer.` subprotocol.
fn request_key(req: &Request) -> Option<String> {
    let headers = req.headers();
    offered_key(
        headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        headers.get("x-api-key").map(|v| v.as_bytes()),
    )
    .map(str::to_string)
    .or_else(|| {
        takes_subprotocol_key(route_of(req))
            .then(|| subprotocol_key(headers.get(SEC_WEBSOCKET_PROTOCOL).map(|v| v.as_bytes())))
            .flatten()
    })
}

/// Does the request carry the server's own token in a `sqrx.bearer.` subprotocol (on a route
/// that takes one)? Compared in constant time.
fn subprotocol_has_token(req: &Request, token: &str) -> bool {
    if !takes_subprotocol_key(route_of(req)) {
        return false;
    }
    subprotocol_key(
        req.headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.as_bytes()),
    )
    .is_some_and(|key| bool::from(key.as_bytes().ct_eq(token.as_bytes())))
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
    let operator = has_operator_token(&state, req.headers())
        || state
            .config()
            .auth_token
            .as_deref()
            .is_some_and(|t| subprotocol_has_token(&req, t));
    if !required(&state) || operator {
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
    let key = request_key(&req);
    match access::identify(&tenants, key.as_deref()).await {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
        // The routes that authenticate themselves (E2B's, session capabilities) decide.
        Err(Refusal::Key(_)) if public => next.run(req).await,
        Err(refusal) => {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
            let attempt = access::Attempt {
                method: req.method(),
                route: &route,
                target: None,
                source_ip: crate::tenants::guard::source_ip(&req),
            };
            refusal.answer(&tenants, &attempt)
        }
    }
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
    fn subprotocol_keys() {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("tok/en+?");
        let value = format!("sqrx, sqrx.bearer.{enc}");
        assert_eq!(
            subprotocol_key(Some(value.as_bytes())).as_deref(),
            Some("tok/en+?")
        );
        let padded = format!("sqrx.bearer.{enc}=");
        assert_eq!(
            subprotocol_key(Some(padded.as_bytes())).as_deref(),
            Some("tok/en+?")
        );
        assert_eq!(subprotocol_key(Some(b"sqrx")), None);
        assert_eq!(subprotocol_key(Some(b"sqrx.bearer.!!!")), None);
        assert_eq!(subprotocol_key(None), None);
        assert!(takes_subprotocol_key("/v1/sandboxes/{id}/pty"));
        assert!(!takes_subprotocol_key("/proxy/{sandbox_id}/{port}/{*path}"));
        assert!(!takes_subprotocol_key("/{session_id}/ws"));
    }

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
