//! The proxy's path on connections hyper serves (see [`crate::connection`]: upgrades such as
//! WebSockets, `Expect`, HTTP/1.0 and HTTP/2 clients, connections that also use the API): the
//! server hands `/proxy/{sandbox_id}/{port}/...` requests straight to [`forward`], past the
//! router and its middleware stack, which cost more per request than relaying it does. The
//! request is checked (Host, Origin), authenticated, counted and logged as the router's `/proxy` routes do (those
//! routes stay, for [`app`](crate::app::app) used as a plain router and for ids that need
//! percent-decoding). Plain HTTP/1.1 requests on connections the server reads itself take
//! the faster [`relay`](super::relay).
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::http::forward;
use crate::auth;
use crate::hosts::{self, LocalAddr};
use crate::state::AppState;

/// The route label of a proxied request with a path after the port.
pub const ROUTE: &str = "/proxy/{sandbox_id}/{port}/{*path}";
/// The route label of a proxied request for the service's root.
pub const ROUTE_ROOT: &str = "/proxy/{sandbox_id}/{port}/";

/// The sandbox id and port of a `/proxy/{id}/{port}/...` path, and whether a path follows the
/// port, when the direct path can take it: both segments plain (percent-encoded ones go to the
/// router, which decodes them).
pub fn target(path: &str) -> Option<(&str, &str, bool)> {
    let rest = path.strip_prefix("/proxy/")?;
    let (id, rest) = rest.split_once('/')?;
    let (port, after) = rest.split_once('/')?;
    if id.is_empty() || id.contains('%') || port.contains('%') {
        return None;
    }
    Some((id, port, !after.is_empty()))
}

/// Answer a request whose path [`target`] accepted, sent by `client`.
pub async fn serve(state: AppState, client: SocketAddr, req: Request) -> Response {
    let started = Instant::now();
    let Some((id, port, deeper)) = target(req.uri().path()) else {
        // Not reached: the server only sends requests that `target` took.
        return crate::error::ApiError::not_found("no such proxy route").into_response();
    };
    let (id, port) = (id.to_string(), port.to_string());
    let route = if deeper { ROUTE } else { ROUTE_ROOT };
    let method = req.method().clone();
    let uri = tracing::enabled!(tracing::Level::INFO).then(|| {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        crate::logging::redact_target(target)
    });
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    let refused = hosts::refusal(
        &state.config().allowed_hosts,
        req.method(),
        req.uri(),
        req.headers(),
        local,
    )
    .or_else(|| auth::refusal(&state, &req));
    let response = match refused {
        Some(refused) => refused,
        None => forward(&state, id, &port, Some(client), req)
            .await
            .into_response(),
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics()
        .http(&method, route.into(), status, elapsed.as_secs_f64());
    if let Some(uri) = uri {
        tracing::info!(%method, %uri, status, latency_ms = elapsed.as_millis() as u64, "finished processing request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target("/proxy/a/80/"), Some(("a", "80", false)));
        assert_eq!(target("/proxy/a/80/x/y"), Some(("a", "80", true)));
        assert_eq!(
            target("/proxy/a/x/"),
            Some(("a", "x", false)),
            "bad ports are forward's"
        );
        assert_eq!(target("/proxy/a/80"), None, "the redirect is the router's");
        assert_eq!(target("/proxy//80/"), None);
        assert_eq!(target("/proxy/a%2Fb/80/"), None, "decoded by the router");
        assert_eq!(target("/v1/sandboxes"), None);
        assert_eq!(target("/proxyx/a/80/"), None);
    }
}
