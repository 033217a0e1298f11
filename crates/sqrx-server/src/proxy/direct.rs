//! The proxy's path on connections hyper serves (see [`crate::connection`]: upgrades such as
//! WebSockets, `Expect`, HTTP/1.0 and HTTP/2 clients, connections that also use the API): the
//! server hands `/proxy/{sandbox_id}/{port}/...` requests straight to [`forward`], past the
//! router and its middleware stack, which cost more per request than relaying it does. The
//! request is checked (Host, Origin), authenticated, counted and logged by the same
//! [`rules`](super::rules) as the router's `/proxy` routes (those routes stay, for [`app`](crate::app::app) used as a plain router and for ids that need
//! percent-decoding). Plain HTTP/1.1 requests on connections the server reads itself take
//! the faster [`relay`](super::relay).
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use axum::http::header::AUTHORIZATION;

use super::http::forward;
use super::rules;
use crate::auth;
use crate::hosts::{self, LocalAddr};
use crate::state::AppState;
use crate::tenants::access::Attempt;

pub use super::rules::{ROUTE, ROUTE_ROOT};

/// Where a `/proxy/...` path leads, when the direct path can take it: the id plain
/// (percent-encoded ones go to the router, which decodes them). See [`rules::target`].
pub fn target(path: &str) -> Option<rules::Target<'_>> {
    rules::target(path).filter(|t| !t.id.contains('%'))
}

/// Answer a request whose path [`target`] accepted, sent by `client`.
pub async fn serve(state: AppState, client: SocketAddr, req: Request) -> Response {
    let started = Instant::now();
    let Some((id, route)) = target(req.uri().path()).map(|t| (t.id.to_string(), t.route())) else {
        // Not reached: the server only sends requests that `target` took.
        return crate::error::ApiError::not_found("no such proxy route").into_response();
    };
    let method = req.method().clone();
    let attempt = Attempt {
        method: &method,
        route,
        target: Some(&id),
        source_ip: Some(client.ip().to_string()),
    };
    let uri = tracing::enabled!(tracing::Level::INFO).then(|| {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        crate::logging::redact_target(target)
    });
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    let host_refused = hosts::refusal(
        &state.config().allowed_hosts,
        req.method(),
        req.uri(),
        req.headers(),
        local,
    );
    let admitted = match host_refused {
        Some(refused) => Err(refused),
        None => {
            let headers = req.headers();
            let key = auth::offered_key(
                headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
                headers.get("x-api-key").map(|v| v.as_bytes()),
            );
            let operator = auth::has_operator_token(&state, headers);
            rules::admit(&state, operator, key, &attempt).await
        }
    };
    let (identity, response) = match admitted {
        Ok(identity) => {
            let response = forward(&state, id.clone(), Some(client), req)
                .await
                .into_response();
            (Some(identity), response)
        }
        Err(refused) => (None, refused),
    };
    let status = response.status().as_u16();
    rules::finished(
        &state,
        identity.as_ref(),
        &attempt,
        status,
        started.elapsed(),
        uri,
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(target("/proxy/a/80/x").is_some());
        assert!(target("/proxy/a/x").is_some(), "the default port");
        assert!(
            target("/proxy/a%2Fb/80/").is_none(),
            "decoded by the router"
        );
        assert!(
            target("/proxy/a/80").is_none(),
            "the redirect is the router's"
        );
    }
}
