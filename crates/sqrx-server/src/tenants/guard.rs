//! Ownership and admin checks for every route, in one table, and the audit of mutating
//! calls. Runs after authentication (which put the caller's [`Identity`] in the request).
//!
//! - Routes naming a sandbox (`{id}`, `{sandbox_id}`, `{name}`): for a user, a sandbox it does
//!   not own and one that does not exist get the same 404, answered here before the handler
//!   and its extractors run (existence never leaks, whatever the request's shape).
//! - Admin-only routes (the admin API, runtime-wide secrets, metrics): 403 for
//!   users that are not admins. Layers a user uploads are its own (see `v1::layers`).
//! - Lists and creates are scoped by their handlers (see [`super::Identity::scope`]).

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Identity;
use super::access::{Attempt, deny, may_reach};
use crate::error::ApiError;
use crate::state::AppState;

/// Routes only admins (and the operator) may call.
fn admin_only(route: &str) -> bool {
    route.starts_with("/api/admin")
        || route.starts_with("/v1/secrets")
        || route == "/metrics"
        // The bucket is the server's: pushing, pulling and listing it are the operator's.
        || route == "/v1/layers/sync"
        || route.starts_with("/v1/remote/")
        || (route.starts_with("/v1/layers/") && (route.ends_with("/push") || route.ends_with("/pull")))
}

/// The path parameter naming a sandbox on `route`, if any.
fn sandbox_param(route: &str) -> Option<&'static str> {
    if route.starts_with("/proxy/") {
        Some("sandbox_id")
    } else if route.starts_with("/api/sandboxes/") {
        Some("name")
    } else if route.starts_with("/v1/sandboxes/")
        || route.starts_with("/cgi-bin/api/sandboxes/")
        || route.starts_with("/sandboxes/")
        || route.starts_with("/v2/sandboxes/")
    {
        Some("id")
    } else {
        None
    }
}

/// E2B's control plane answers errors as `{"code", "message"}`.
fn e2b_route(route: &str) -> bool {
    route.starts_with("/sandboxes") || route.starts_with("/v2/sandboxes")
}

/// The 404 each surface answers for a sandbox that does not exist.
pub fn not_found(route: &str, id: &str) -> Response {
    let message = format!("sandbox {id} not found");
    if route.starts_with("/cgi-bin/") {
        crate::cgi::not_found(id).into_response()
    } else if e2b_route(route) {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"code": 404, "message": message})),
        )
            .into_response()
    } else {
        ApiError::not_found(message).into_response()
    }
}

/// The client's address, when the connection recorded it.
pub fn source_ip(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The middleware.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(tenants) = state.tenants().cloned() else {
        return next.run(req).await;
    };
    let identity = req
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Operator);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let method = req.method().clone();
    let ip = source_ip(&req);
    let (mut parts, body) = req.into_parts();
    let target = match sandbox_param(&route) {
        Some(name) => RawPathParams::from_request_parts(&mut parts, &state)
            .await
            .ok()
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }),
        None => None,
    };
    let req = Request::from_parts(parts, body);
    let attempt = Attempt {
        method: &method,
        route: &route,
        target: target.as_deref(),
        source_ip: ip,
    };
    if admin_only(&route) && !identity.is_admin() {
        let forbidden = ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{method} {route} needs an admin key"),
        );
        return deny(&tenants, &identity, &attempt, forbidden.into_response());
    }
    // A missing sandbox gets the same answer, from here, before any extractor could answer
    // differently (a bad body, a missing upgrade): nothing tells them apart.
    if let Some(id) = &target
        && !may_reach(&state, &identity, id)
    {
        return deny(&tenants, &identity, &attempt, not_found(&route, id));
    }
    let response = next.run(req).await;
    attempt.finished(&tenants, &identity, response.status());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sandbox_route_names_its_parameter() {
        for (route, param) in [
            ("/v1/sandboxes/{id}/exec", Some("id")),
            ("/cgi-bin/api/sandboxes/{id}/{action}", Some("id")),
            ("/sandboxes/{id}/pause", Some("id")),
            ("/v2/sandboxes/{id}/connect", Some("id")),
            ("/proxy/{sandbox_id}/{port}/{*path}", Some("sandbox_id")),
            ("/api/sandboxes/{name}/pause", Some("name")),
            ("/v1/sandboxes", None),
            ("/v1/layers", None),
        ] {
            assert_eq!(sandbox_param(route), param, "{route}");
        }
        assert!(!admin_only("/v1/layers/{name}"));
        assert!(!admin_only("/v1/try"), "a user's session is its own");
        assert!(admin_only("/api/admin/users"));
        assert!(!admin_only("/api/me"));
        assert!(admin_only("/v1/layers/{name}/push") && admin_only("/v1/layers/sync"));
        assert!(admin_only("/v1/remote/layers") && admin_only("/v1/remote/uploads"));
        // A sandbox's snapshot is its owner's to push.
        assert!(!admin_only("/v1/sandboxes/{id}/snapshots/{label}/push"));
    }
}
