//! `ANY /proxy/{sandbox_id}/{port}/{*path}`: an HTTP/1.1 reverse proxy into any port of any
//! sandbox, WebSocket (and other) upgrades included.
//!
//! The request goes to the service with its method, path after the prefix, query, headers
//! and body; bodies stream both ways and are never held whole. Hop-by-hop headers are dropped
//! in both directions (RFC 9110 §7.6.1); `X-Forwarded-For`, `-Host`, `-Proto` and `-Prefix`
//! are added; the server's own bearer token is never passed on. An upgrade the service
//! accepts (101) becomes a byte pipe between the client and the service.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::PathAndQuery;
use axum::http::{StatusCode, Version};
use axum::response::{IntoResponse, Redirect, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::rules;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::metrics::WsKind;
use crate::state::AppState;

/// The route's path parameters (the rest of the path is taken from the raw URI, so its
/// percent-encoding reaches the service untouched).
#[derive(Debug, Deserialize)]
pub struct ProxyTarget {
    sandbox_id: String,
    /// The segment after the id: a port, or (not all digits) the start of a path on the
    /// sandbox's default port.
    #[serde(default)]
    port: Option<String>,
}

/// Buffer per direction of an upgraded connection.
const PIPE_BUFFER: usize = 16 * 1024;

/// `Transfer-Encoding` and `Trailer` frame one hop: hyper frames each side's body itself.
const REFRAMED: [&str; 2] = ["transfer-encoding", "trailer"];

/// Does `headers` ask to switch protocols (`Connection: upgrade` plus `Upgrade`)?
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

/// The lower-cased tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// Keep the headers `passes` lets through (given the names `Connection` lists), less the
/// framing of this hop. With `upgrade`, keep `Upgrade` and say `Connection: upgrade` (the
/// one hop-by-hop exchange a proxy relays).
fn keep(headers: &mut HeaderMap, upgrade: bool, passes: impl Fn(&str, &[&str]) -> bool) {
    let listed: Vec<String> = connection_tokens(headers).collect();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            let kept = upgrade && name == "upgrade";
            !kept && (!passes(name, &listed) || rules::named(&REFRAMED, name))
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request headers as the service gets them (see [`rules::passes`] and
/// [`rules::forwarded`]), for `client`, on a server that requires credentials when
/// `auth_required`.
fn for_service(
    req: &mut Request,
    upgrade: bool,
    auth_required: bool,
    client: Option<SocketAddr>,
    port: u16,
    prefix: &str,
) {
    let host: Option<Vec<u8>> = req
        .headers()
        .get(header::HOST)
        .map(|v| v.as_bytes().to_vec())
        // HTTP/2 clients send :authority instead.
        .or_else(|| {
            req.uri()
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        });
    let earlier: Vec<Vec<u8>> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let earlier: Vec<&[u8]> = earlier.iter().map(Vec::as_slice).collect();
    let forwarded = rules::forwarded(&earlier, client.map(|c| c.ip()), host.as_deref(), prefix);
    let headers = req.headers_mut();
    keep(headers, upgrade, |name, listed| {
        rules::passes(name, listed, auth_required)
    });
    if !headers.contains_key(header::HOST) {
        let host = host.unwrap_or_else(|| rules::default_host(&port.to_string()).into_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&host) {
            headers.insert(header::HOST, v);
        }
    }
    for (name, value) in forwarded {
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
}

/// The path and query the service sees: `rest` and the query of `uri`.
fn upstream_path(rest: &str, uri: &axum::http::Uri) -> Result<PathAndQuery, ApiError> {
    let pq = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    pq.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))
}

/// The answer when the service sent no response head within `limit`.
pub fn no_response_in_time(id: &str, port: u16, limit: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "the service on port {port} in sandbox {id} sent no response within {} s",
            limit.as_secs()
        ),
    )
}

/// The port of a proxy path, 1-65535.
pub fn port_of(raw: &str) -> Result<u16, ApiError> {
    match raw.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ApiError::bad_request(format!(
            "invalid port {raw:?}: must be 1-65535"
        ))),
    }
}

/// `ANY /proxy/{sandbox_id}` and `ANY /proxy/{sandbox_id}/{port}` (a port: all digits):
/// redirect to the directory form, so relative links in the service's pages resolve under the
/// prefix. `/proxy/{sandbox_id}/{name}` (not a port) is the path `/{name}` on the sandbox's
/// default port.
pub async fn redirect(
    State(state): State<AppState>,
    Path(target): Path<ProxyTarget>,
    req: Request,
) -> Result<Response, ApiError> {
    if let Some(port) = &target.port {
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return proxy(State(state), Path(target), req).await;
        }
        port_of(port)?;
    }
    let uri = req.uri();
    let to = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    Ok(Redirect::permanent(&to).into_response())
}

/// `ANY /proxy/{sandbox_id}/{port}/{*path}`: forward the request to the service.
#[utoipa::path(method(get, post, put, patch, delete),
    path = "/proxy/{sandbox_id}/{port}/{path}", tag = "proxy",
    params(("sandbox_id" = String, Path, description = "Sandbox id"),
           ("port" = u16, Path, description = "TCP port inside the sandbox"),
           ("path" = String, Path, description = "Path (and query) passed to the service")),
    description = "Any method (HEAD, OPTIONS and others too). The request is relayed to 127.0.0.1:PORT inside the sandbox \
        over HTTP/1.1 (bodies streamed both ways, hop-by-hop headers removed, X-Forwarded-* \
        added); WebSocket upgrades are relayed too. The answer is the service's.",
    responses((status = 200, description = "The service's response, whatever its status"),
              (status = 101, description = "The service accepted an upgrade (WebSocket)"),
              (status = 400, description = "Invalid port or path", body = ErrorBody),
              (status = 404, description = "No such sandbox", body = ErrorBody),
              (status = 409, description = "The sandbox is paused", body = ErrorBody),
              (status = 502, description = "Nothing listens on the port, or the service failed", body = ErrorBody),
              (status = 504, description = "The service sent no response head in time", body = ErrorBody)))]
pub async fn proxy(
    State(state): State<AppState>,
    Path(target): Path<ProxyTarget>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    forward(&state, target.sandbox_id, client, req).await
}

/// Relay `req` (whose path starts with `/proxy/`) to the service of sandbox `id` (the path's
/// id, decoded), for the `client` that sent it.
pub async fn forward(
    state: &AppState,
    id: String,
    client: Option<SocketAddr>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let (port, path, prefix) = {
        let raw = req.uri().path();
        let Some(target) = rules::target(raw) else {
            return Err(ApiError::not_found(format!("no proxy route for {raw}")));
        };
        let port = rules::port(state, target.port, &id)?;
        (
            port,
            upstream_path(target.rest, req.uri())?,
            target.prefix.to_string(),
        )
    };
    let upgrade = wants_upgrade(req.headers());
    // Taken before the request is handed on: resolves once our 101 reached the client.
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));

    for_service(
        &mut req,
        upgrade,
        crate::auth::required(state),
        client,
        port,
        &prefix,
    );
    *req.version_mut() = Version::HTTP_11;

    let limit = state.config().request_timeout;
    let sent = state.upstream().send(&id, port, path, req, upgrade);
    let mut response = match tokio::time::timeout(limit, sent).await {
        Ok(r) => r?,
        Err(_) => return Err(no_response_in_time(&id, port, limit)),
    };

    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_side)) = (switching, client_side) {
        let service_side = hyper::upgrade::on(&mut response);
        let metrics = state.clone();
        tokio::spawn(async move {
            let (client_io, service_io) = match tokio::join!(client_side, service_side) {
                (Ok(c), Ok(s)) => (c, s),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "proxied upgrade failed");
                    return;
                }
            };
            let _open = metrics.metrics().websocket_opened(WsKind::Proxy);
            let mut client_io = TokioIo::new(client_io);
            let mut service_io = TokioIo::new(service_io);
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut client_io,
                &mut service_io,
                PIPE_BUFFER,
                PIPE_BUFFER,
            )
            .await;
        });
    }
    keep(response.headers_mut(), switching, rules::response_passes);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
        ]);
        assert!(!wants_upgrade(&h));
        keep(&mut h, false, rules::response_passes);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(wants_upgrade(&h));
        keep(&mut h, true, rules::response_passes);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "k");
    }

    #[test]
    fn paths() {
        let p = |rest: &str, u: &str| {
            upstream_path(rest, &u.parse().expect("uri"))
                .expect("path")
                .to_string()
        };
        assert_eq!(p("/", "/proxy/a/80/"), "/");
        assert_eq!(p("/x/y%20z", "/proxy/a/80/x/y%20z?q=1&r"), "/x/y%20z?q=1&r");
        assert!(port_of("0").is_err());
        assert!(port_of("65536").is_err());
        assert_eq!(port_of("8080").ok(), Some(8080));
    }
}
