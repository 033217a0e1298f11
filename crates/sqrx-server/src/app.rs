//! [`app`]: every surface in one router, with the cross-cutting layers (trace, panics, body
//! limit, metrics, Host/Origin check, authentication, timeouts) applied once.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, cgi, hosts, js_api, logging, metrics, openapi, proxy, v1};

/// The whole HTTP surface over `state`: `/v1`, `/cgi-bin`, `/api/execute`, the sessions'
/// `/{session_id}/ws`, `/proxy`, `/openapi.json`, `/metrics`, the console at `/ui/`. Testable without a socket (`tower::ServiceExt::oneshot`).
pub fn app(state: AppState) -> Router {
    let json_limit = state.config().max_json_bytes;
    Router::new()
        .merge(v1::router(&state))
        .merge(js_api::router())
        .merge(cgi::router())
        .merge(crate::e2b::router())
        .merge(crate::tenants::routes::router())
        .merge(crate::ui::router())
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics_endpoint))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // Innermost first: the timeout wraps only the handler; auth runs before it; metrics
        // see every answer, 401s included.
        .layer(from_fn_with_state(state.clone(), request_timeout))
        .layer(from_fn_with_state(
            state.clone(),
            crate::tenants::guard::check,
        ))
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        // A foreign Host (DNS rebinding) or WebSocket Origin is refused before anything.
        .layer(from_fn_with_state(state.clone(), hosts::check_request))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a handler panicked").into_response()
            },
        ))
        .layer(request_log())
        .merge(proxied(&state))
        .with_state(state)
}

/// One log line per request: method, path (tokens redacted: see
/// [`logging::redact_target`]), status, latency.
fn request_log() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    logging::RequestSpan,
    tower_http::trace::DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(logging::RequestSpan)
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Millis),
        )
}

/// The reverse proxy and the sessions' WebSockets, with a lighter stack than the API: their
/// requests and bodies are the services' (no request timeout, no body limit, and a handler
/// that only relays has no panic to catch), but they are authenticated, counted and logged
/// like every other request.
fn proxied(state: &AppState) -> Router<AppState> {
    proxy::router()
        .layer(from_fn_with_state(
            state.clone(),
            crate::tenants::guard::check,
        ))
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        .layer(from_fn_with_state(state.clone(), hosts::check_request))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(request_log())
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Routes whose duration the client chooses (execs, uploads, scripts, terminals): no request
/// timeout. (The proxy's routes have none either: see [`proxied`].)
fn unbounded(method: &Method, route: &str) -> bool {
    matches!(
        route,
        "/v1/sandboxes/{id}/exec"
            | "/v1/sandboxes/{id}/exec/ws"
            | "/v1/sandboxes/{id}/pty"
            | "/v1/sandboxes/{id}/archive"
            | "/v1/execute"
            | "/api/execute"
            | "/v1/sandboxes/{id}/snapshot"
            | "/v1/sandboxes/{id}/restore"
            | "/v1/sandboxes/{id}/activate"
            | "/v1/sandboxes/{id}/clone"
            | "/cgi-bin/api/sandboxes/{id}/{action}"
    ) || (method == Method::PUT
        && matches!(
            route,
            "/v1/layers/{name}" | "/v1/sandboxes/{id}/files/{*path}"
        ))
}

async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let skip = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| unbounded(req.method(), m.as_str()));
    if skip {
        return next.run(req).await;
    }
    let limit: Duration = state.config().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// `GET /metrics`.
async fn metrics_endpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let census = state
        .blocking(|rt| {
            let statuses: Vec<&'static str> = rt.list().iter().map(|s| s.info().status).collect();
            let layers = rt.layers().list().map(|l| l.len()).unwrap_or(0);
            let egress = sqrx_core::secrets::audit_totals(rt.data_dir());
            Ok::<_, ApiError>((statuses, layers, egress))
        })
        .await?;
    state.metrics().census(census.0.iter().copied(), census.1);
    state.metrics().egress(census.2);
    state.metrics().sessions_active(state.sessions().active());
    let text = state
        .metrics()
        .render()
        .map_err(|e| ApiError::internal(format!("cannot render metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}
