//! The proxy's own HTTP/1.1 relay, for `/proxy/{sandbox_id}/{port}/...` requests that arrive
//! on a connection the server reads itself (see [`crate::connection`]).
//!
//! The request head is parsed in place (httparse), rewritten as the service must see it
//! (hop-by-hop headers out, `X-Forwarded-*` in, the server's bearer token withheld) and sent
//! over a pooled plain connection into the sandbox; the body follows byte for byte, framed by
//! its length or scanned chunk by chunk ([`Framing`]), and the response comes back the same
//! way. No header maps, body frames or HTTP state machines on either side: a relayed request
//! costs a parse and two copies of its head, as in nginx.
//!
//! The relay takes only what it can pass on unchanged. Upgrades (WebSocket), `Expect`,
//! HTTP/1.0, requests with unusual framing and every other route are refused by [`parse`] and
//! served by hyper and the router ([`super::http`]), which apply the same rules.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::direct::target;
use super::framing::{Chunks, Framing};
use super::http::no_response_in_time;
use super::rules;
use crate::auth;
use crate::error::ApiError;
use crate::hosts::{self, AllowedHosts};
use crate::state::AppState;
use crate::tenants::access::Attempt;
use subtle::ConstantTimeEq;

/// Most headers in a head the relay takes (a request with more goes to hyper, which answers
/// for it; a response with more is a 502).
const MAX_HEADERS: usize = 100;
/// Longest response head taken from a service.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes read at a time from either side while relaying a body.
const CHUNK: usize = 64 * 1024;
/// Bytes read at a time for a response head (most responses fit whole).
pub const HEAD_READ: usize = 16 * 1024;

/// What [`parse`] made of the bytes read so far.
pub enum Parsed {
    /// No complete head yet.
    Partial,
    /// Not a request the relay takes: the connection goes to hyper.
    Other,
    /// A request to relay.
    Relay(Box<Plan>),
}

/// A request the relay takes, from its parsed head.
pub struct Plan {
    /// Length of the head in the buffer.
    head_len: usize,
    method: Method,
    id: String,
    /// The port the path names; `None`: the sandbox's default port.
    port: Option<String>,
    /// The route label for metrics.
    route: &'static str,
    /// The request's body.
    body: Framing,
    /// The client asked to close after this exchange.
    close: bool,
    /// The request carries the server's own token.
    operator: bool,
    /// The user key it offers instead, on a server with tenants.
    key: Option<String>,
    /// The client's address.
    client: IpAddr,
    /// The request's `Host`, when the server does not answer to it.
    refused_host: Option<String>,
    /// The head as the service gets it.
    upstream_head: Vec<u8>,
    /// The request target, for the request log.
    target: Option<String>,
}

/// Read a `Connection` value: the header names it lists go to `listed`; whether it says
/// `close`.
fn connection_options<'h>(value: &'h [u8], listed: &mut Vec<&'h str>) -> bool {
    let mut close = false;
    for t in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
        if t.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if let Ok(t) = std::str::from_utf8(t)
            && !t.is_empty()
        {
            listed.push(t);
        }
    }
    close
}

/// Parse the request head at the start of `buf`, from `client` on a connection that arrived
/// at `local`, for a server whose bearer token is `token` (with user keys when `tenanted`)
/// and that answers to `hosts`.
pub fn parse(
    buf: &[u8],
    token: Option<&str>,
    tenanted: bool,
    hosts: &AllowedHosts,
    client: SocketAddr,
    local: IpAddr,
) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(raw_target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    let path = raw_target.split_once('?').map_or(raw_target, |(p, _)| p);
    let Some(target) = target(path) else {
        return Parsed::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if method == Method::CONNECT {
        return Parsed::Other;
    }

    // What frames the body, and what the connection headers say.
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut listed: Vec<&str> = Vec::new();
    let mut host: Option<&[u8]> = None;
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut authorization: Option<&[u8]> = None;
    let mut x_api_key: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return Parsed::Other;
            };
            if length.replace(n).is_some_and(|before| before != n) {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Parsed::Other;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= connection_options(h.value, &mut listed);
        } else if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("expect") {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case("host") {
            host = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(h.value);
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-api-key") {
            x_api_key = Some(h.value);
        }
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Parsed::Other,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked(Chunks::default()),
        (None, false) => Framing::Empty,
    };
    let operator = token.is_some_and(|t| {
        auth::bearer_matches(authorization, t)
            || x_api_key.is_some_and(|k| bool::from(k.ct_eq(t.as_bytes())))
    });
    let key = (tenanted && !operator)
        .then(|| auth::offered_key(authorization, x_api_key).map(str::to_string))
        .flatten();
    // The same Host check as the router's (DNS rebinding); no upgrade reaches the relay, so
    // there is no Origin to check.
    let refused_host = host.and_then(|h| {
        let h = String::from_utf8_lossy(h);
        (!hosts.allows(&h, Some(local))).then(|| h.into_owned())
    });

    // The head as the service gets it.
    let mut up = Vec::with_capacity(head_len + 160);
    up.extend_from_slice(method.as_str().as_bytes());
    up.extend_from_slice(b" ");
    up.extend_from_slice(target.rest.as_bytes());
    if let Some((_, query)) = raw_target.split_once('?') {
        up.push(b'?');
        up.extend_from_slice(query.as_bytes());
    }
    up.extend_from_slice(b" HTTP/1.1\r\n");
    let auth_required = token.is_some() || tenanted;
    for h in req.headers.iter() {
        if rules::passes(h.name, &listed, auth_required) {
            header(&mut up, h.name.as_bytes(), h.value);
        }
    }
    if host.is_none() {
        // A made-up Host names the port; the default one is known only after a lookup.
        let Some(port) = target.port else {
            return Parsed::Other;
        };
        header(&mut up, b"host", rules::default_host(port).as_bytes());
    }
    for (name, value) in rules::forwarded(&forwarded_for, Some(client.ip()), host, target.prefix) {
        header(&mut up, name.as_bytes(), &value);
    }
    up.extend_from_slice(b"\r\n");

    Parsed::Relay(Box::new(Plan {
        head_len,
        method,
        id: target.id.to_string(),
        port: target.port.map(str::to_string),
        route: target.route(),
        body,
        close,
        operator,
        key,
        client: client.ip(),
        refused_host,
        upstream_head: up,
        target: tracing::enabled!(tracing::Level::INFO)
            .then(|| crate::logging::redact_target(raw_target)),
    }))
}

/// Append `name: value\r\n`.
fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the client connection can do after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Take the next request.
    KeepAlive,
    /// Close it (the client or the service asked to, or the exchange broke off).
    Close,
}

/// Why an exchange stopped short.
enum Failure {
    /// Nothing was sent to the client yet: answer this instead.
    Answer(Response),
    /// The client's connection is in an unknown state (a response broke off): close it.
    Broken,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Answer(e.into_response())
    }
}

/// Relay the request `plan` describes, whose head starts `buf` (the bytes read from `client`
/// so far); `buf` keeps what follows the request (a pipelined next one). `scratch` is the
/// connection's buffer for the service's side. With `stopping`, the client is told the
/// connection closes.
pub async fn relay(
    state: &AppState,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    scratch: &mut BytesMut,
    mut plan: Plan,
    stopping: bool,
) -> After {
    let started = Instant::now();
    buf.advance(plan.head_len);
    let admitted = match &plan.refused_host {
        Some(host) => Err(hosts::host_refused(host)),
        None => rules::admit(state, plan.operator, plan.key.as_deref(), &attempt(&plan)).await,
    };
    let (identity, outcome) = match admitted {
        Ok(identity) => {
            let outcome = exchange(state, client, buf, scratch, &mut plan, stopping).await;
            (Some(identity), outcome)
        }
        Err(refused) => (None, Err(Failure::Answer(refused))),
    };
    let (status, after) = match outcome {
        Ok(done) => done,
        Err(Failure::Broken) => (StatusCode::BAD_GATEWAY.as_u16(), After::Close),
        Err(Failure::Answer(response)) => {
            let status = response.status().as_u16();
            // A body the answer left unread cannot be skipped safely: close after it.
            let after = if plan.close || stopping || !plan.body.done() {
                After::Close
            } else {
                After::KeepAlive
            };
            if answer(client, response, after).await.is_err() {
                (status, After::Close)
            } else {
                (status, after)
            }
        }
    };
    let uri = plan.target.take();
    rules::finished(
        state,
        identity.as_ref(),
        &attempt(&plan),
        status,
        started.elapsed(),
        uri,
    );
    after
}

/// The request `plan` describes, as access checks and the audit log see it.
fn attempt(plan: &Plan) -> Attempt<'_> {
    Attempt {
        method: &plan.method,
        route: plan.route,
        target: Some(&plan.id),
        source_ip: Some(plan.client.to_string()),
    }
}

/// Write `response` (one of ours: small, in memory) to the client.
async fn answer(client: &mut TcpStream, response: Response, after: After) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, CHUNK)
        .await
        .map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_LENGTH {
            header(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    if after == After::Close {
        header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    client.write_all(&out).await
}

/// The service's failure as the client sees it.
fn service_failed(plan: &Plan, port: u16, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!(
            "the service on port {port} in sandbox {} failed: {detail}",
            plan.id
        ),
    )
}

/// The exchange: the request up, the response down. The status sent and what the client
/// connection can do next.
async fn exchange(
    state: &AppState,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    scratch: &mut BytesMut,
    plan: &mut Plan,
    stopping: bool,
) -> Result<(u16, After), Failure> {
    let port = rules::port(state, plan.port.as_deref(), &plan.id)?;
    let limit = state.config().request_timeout;
    let sent = send(state, client, buf, scratch, plan, port);
    let (upstream, head_len) = match tokio::time::timeout(limit, sent).await {
        Ok(sent) => sent?,
        Err(_) => return Err(no_response_in_time(&plan.id, port, limit).into()),
    };
    respond(
        state, client, upstream, scratch, head_len, plan, port, stopping,
    )
    .await
}

/// Send the request over a pooled connection or a new one (once more on a new one if a
/// pooled connection turns out closed before it answered, when the whole request is still
/// at hand), and read the response head into `scratch`. The connection and the head's length.
async fn send(
    state: &AppState,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    scratch: &mut BytesMut,
    plan: &mut Plan,
    port: u16,
) -> Result<(TcpStream, usize), Failure> {
    let upstream = state.upstream();
    // What of the body is already read goes with the head, in one write.
    let n = plan
        .body
        .take(buf)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    plan.upstream_head.extend_from_slice(&buf[..n]);
    buf.advance(n);
    let whole = plan.body.done();
    let mut pooled = upstream.take_stream(&plan.id, port);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => upstream.connect(&plan.id, port).await?,
        };
        scratch.clear();
        let wrote = conn.write_all(&plan.upstream_head).await;
        if wrote.is_ok() && !whole {
            stream_body(client, &mut conn, buf, &mut plan.body).await?;
        }
        match read_head(&mut conn, scratch).await {
            Ok(Some(len)) => return Ok((conn, len)),
            // Closed before any answer: a pooled connection the service had let go.
            Ok(None) | Err(_) if reused && whole && scratch.is_empty() => {
                tracing::debug!(sandbox = plan.id, port, "idle connection closed; retrying");
            }
            Ok(None) => {
                let why = match wrote {
                    Err(e) => e.to_string(),
                    Ok(()) => "connection closed before a response".into(),
                };
                return Err(service_failed(plan, port, why).into());
            }
            Err(e) => return Err(service_failed(plan, port, e).into()),
        }
    }
}

/// Relay the rest of the request body from the client to the service.
async fn stream_body(
    client: &mut TcpStream,
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    body: &mut Framing,
) -> Result<(), Failure> {
    while !body.done() {
        buf.reserve(CHUNK);
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Failure::Broken),
            Ok(_) => {}
        }
        let n = body
            .take(buf)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if conn.write_all(&buf[..n]).await.is_err() {
            // The service stopped reading: it may have answered already; the caller reads.
            buf.advance(n);
            return Ok(());
        }
        buf.advance(n);
    }
    Ok(())
}

/// Read a response head into `scratch`: its length, or `None` if the service closed
/// before sending a whole one.
async fn read_head(conn: &mut TcpStream, scratch: &mut BytesMut) -> std::io::Result<Option<usize>> {
    loop {
        if !scratch.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Response::new(&mut headers).parse(scratch) {
                Ok(httparse::Status::Complete(n)) => return Ok(Some(n)),
                Ok(httparse::Status::Partial) if scratch.len() < MAX_RESPONSE_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(std::io::Error::other("response head too large"));
                }
                Err(e) => return Err(std::io::Error::other(format!("bad response head: {e}"))),
            }
        }
        scratch.reserve(HEAD_READ);
        if conn.read_buf(scratch).await? == 0 {
            return Ok(None);
        }
    }
}

/// The status code of a response head that parsed (it starts `HTTP/1.x NNN`).
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Relay the response whose head (`head_len` bytes) starts `scratch`, body and all.
#[allow(
    clippy::too_many_arguments,
    reason = "the two connections, the scratch buffer and the facts of the request that the response needs; a struct would be built only for this call"
)]
async fn respond(
    state: &AppState,
    client: &mut TcpStream,
    mut conn: TcpStream,
    scratch: &mut BytesMut,
    mut head_len: usize,
    plan: &Plan,
    port: u16,
    stopping: bool,
) -> Result<(u16, After), Failure> {
    // Interim responses (100 Continue, 103 Early Hints) pass as they are.
    loop {
        let status = status_of(&scratch[..head_len]);
        if !(100..200).contains(&status) || status == 101 {
            break;
        }
        client
            .write_all(&scratch[..head_len])
            .await
            .map_err(|_| Failure::Broken)?;
        scratch.advance(head_len);
        head_len = match read_head(&mut conn, scratch).await {
            Ok(Some(n)) => n,
            Ok(None) => return Err(Failure::Broken),
            Err(_) => return Err(Failure::Broken),
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    if !matches!(
        resp.parse(&scratch[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return Err(service_failed(plan, port, "bad response head").into());
    }
    let status = resp.code.unwrap_or(0);
    if status == 101 {
        return Err(service_failed(plan, port, "switched protocols unasked").into());
    }
    let mut keep_upstream = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut coding: Option<&[u8]> = None;
    let mut listed: Vec<&str> = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| service_failed(plan, port, "invalid content-length"))?;
            if length.replace(n).is_some_and(|before| before != n) {
                return Err(service_failed(plan, port, "conflicting content-lengths").into());
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coding = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("connection")
            && connection_options(h.value, &mut listed)
        {
            keep_upstream = false;
        }
    }
    let mut framing = if plan.method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (coding, length) {
            (Some(c), _) if c.trim_ascii().eq_ignore_ascii_case(b"chunked") => {
                Framing::Chunked(Chunks::default())
            }
            (Some(_), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        keep_upstream = false;
    }
    let after = if plan.close || stopping || framing == Framing::UntilClose || !plan.body.done() {
        After::Close
    } else {
        After::KeepAlive
    };

    let mut out = Vec::with_capacity(head_len + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if !rules::response_passes(h.name, &listed)
            // A transfer coding frames the body: a length beside it would mislead whoever
            // reads the response next (RFC 9112 §6.3).
            || (coding.is_some() && h.name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        header(&mut out, h.name.as_bytes(), h.value);
    }
    if after == After::Close {
        header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    scratch.advance(head_len);
    let n = framing.take(scratch).map_err(|_| Failure::Broken)?;
    out.extend_from_slice(&scratch[..n]);
    scratch.advance(n);
    client.write_all(&out).await.map_err(|_| Failure::Broken)?;

    while !framing.done() {
        scratch.clear();
        scratch.reserve(CHUNK);
        match conn.read_buf(scratch).await {
            Ok(0) if framing == Framing::UntilClose => break,
            Ok(0) | Err(_) => return Err(Failure::Broken),
            Ok(_) => {}
        }
        let n = framing.take(scratch).map_err(|_| Failure::Broken)?;
        client
            .write_all(&scratch[..n])
            .await
            .map_err(|_| Failure::Broken)?;
        scratch.advance(n);
    }
    // Bytes past the response's end: the service is confused; do not reuse it.
    if keep_upstream && scratch.is_empty() && plan.body.done() {
        state.upstream().keep_stream(&plan.id, port, conn);
    }
    Ok((status, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::rules::{DEFAULT_ROUTE, ROUTE, ROUTE_ROOT};

    const CLIENT: ([u8; 4], u16) = ([10, 1, 2, 3], 5555);

    const LOCAL: [u8; 4] = [127, 0, 0, 1];

    fn plan(head: &str, token: Option<&str>) -> Plan {
        match parse(
            head.as_bytes(),
            token,
            false,
            &AllowedHosts::default(),
            CLIENT.into(),
            LOCAL.into(),
        ) {
            Parsed::Relay(plan) => *plan,
            Parsed::Partial => panic!("partial: {head:?}"),
            Parsed::Other => panic!("not taken: {head:?}"),
        }
    }

    fn taken(head: &str) -> bool {
        matches!(
            parse(
                head.as_bytes(),
                None,
                false,
                &AllowedHosts::default(),
                CLIENT.into(),
                LOCAL.into()
            ),
            Parsed::Relay(_)
        )
    }

    fn upstream(plan: &Plan) -> String {
        String::from_utf8(plan.upstream_head.clone()).expect("utf-8 head")
    }

    #[test]
    fn heads_are_rewritten_for_the_service() {
        let p = plan(
            "POST /proxy/web/8001/a/b%20c/?x=1 HTTP/1.1\r\nHost: example.com:81\r\n\
             Connection: keep-alive, X-Private, Content-Length\r\nKeep-Alive: timeout=5\r\n\
             X-Private: secret\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
             Authorization: Bearer tok\r\nX-Forwarded-For: 203.0.113.9\r\n\
             X-Forwarded-Host: evil\r\nContent-Length: 5\r\nX-Custom: kept\r\n\r\nhello",
            Some("tok"),
        );
        assert!(p.operator && p.key.is_none() && !p.close);
        assert_eq!(p.refused_host.as_deref(), Some("example.com:81"));
        assert_eq!(p.body, Framing::Length(5));
        assert_eq!(p.route, ROUTE);
        assert_eq!((p.id.as_str(), p.port.as_deref()), ("web", Some("8001")));
        assert_eq!(
            upstream(&p),
            "POST /a/b%20c/?x=1 HTTP/1.1\r\nHost: example.com:81\r\nContent-Length: 5\r\n\
             X-Custom: kept\r\nx-forwarded-for: 203.0.113.9, 10.1.2.3\r\n\
             x-forwarded-host: example.com:81\r\nx-forwarded-proto: http\r\n\
             x-forwarded-prefix: /proxy/web/8001\r\n\r\n"
        );
    }

    #[test]
    fn tokens_and_framing() {
        let p = plan(
            "GET /proxy/a/80/ HTTP/1.1\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
            Some("tok"),
        );
        assert!(!p.operator && p.key.is_none() && p.close);
        assert_eq!(p.refused_host, None, "no Host");
        assert_eq!(p.route, ROUTE_ROOT);
        let p = plan(
            "GET /proxy/a/80/ HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
            None,
        );
        assert_eq!(p.refused_host, None, "a loopback name");
        assert_eq!(p.body, Framing::Empty);
        // Without a token configured, the client's Authorization is the service's business.
        let p = plan(
            "GET /proxy/a/80/x HTTP/1.1\r\nAuthorization: Basic eA==\r\n\r\n",
            None,
        );
        assert!(
            !p.operator && p.key.is_none(),
            "an open server: admit decides"
        );
        assert!(upstream(&p).contains("Authorization: Basic eA==\r\n"));
        assert!(
            upstream(&p).contains("host: 127.0.0.1:80\r\n"),
            "no Host: one is made"
        );
        let p = plan(
            "PUT /proxy/a/80/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
        );
        assert_eq!(p.body, Framing::Chunked(Chunks::default()));
        assert!(upstream(&p).contains("Transfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn the_default_port() {
        let p = plan(
            "GET /proxy/web/app/x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            None,
        );
        assert_eq!((p.id.as_str(), p.port.as_deref()), ("web", None));
        assert_eq!(p.route, DEFAULT_ROUTE);
        let up = upstream(&p);
        assert!(up.starts_with("GET /app/x?y=1 HTTP/1.1\r\n"), "{up}");
        assert!(up.contains("x-forwarded-prefix: /proxy/web\r\n"), "{up}");
        assert!(
            !taken("GET /proxy/web/app HTTP/1.1\r\n\r\n"),
            "no Host to name the default port by: hyper's"
        );
    }

    #[test]
    fn user_keys_are_taken_and_withheld() {
        let head = "GET /proxy/a/80/ HTTP/1.1\r\nAuthorization: Bearer sqrx_k\r\n\
                    X-API-Key: e2b_k\r\nX-Kept: 1\r\n\r\n";
        let Parsed::Relay(p) = parse(
            head.as_bytes(),
            None,
            true,
            &AllowedHosts::default(),
            CLIENT.into(),
            LOCAL.into(),
        ) else {
            panic!("not taken");
        };
        assert!(!p.operator);
        assert_eq!(p.key.as_deref(), Some("sqrx_k"));
        let up = upstream(&p);
        assert!(!up.to_ascii_lowercase().contains("authorization"), "{up}");
        assert!(!up.to_ascii_lowercase().contains("x-api-key"), "{up}");
        assert!(up.contains("X-Kept: 1\r\n"));
        // The operator's token through E2B's header.
        let head = "GET /proxy/a/80/ HTTP/1.1\r\nX-API-Key: tok\r\n\r\n";
        let p = plan(head, Some("tok"));
        assert!(p.operator && p.key.is_none());
    }

    #[test]
    fn what_the_relay_leaves_to_hyper() {
        assert!(matches!(
            parse(
                b"GET /proxy/a/80/ HTTP/1.1\r\nHost: x\r\n",
                None,
                false,
                &AllowedHosts::default(),
                CLIENT.into(),
                LOCAL.into()
            ),
            Parsed::Partial
        ));
        for head in [
            "GET /v1/health HTTP/1.1\r\n\r\n",
            "GET /proxy/a/80 HTTP/1.1\r\n\r\n",
            "GET /proxy/a%2Fb/80/ HTTP/1.1\r\n\r\n",
            "GET /proxy/a/80/ HTTP/1.0\r\n\r\n",
            "GET http://x/proxy/a/80/ HTTP/1.1\r\n\r\n",
            "CONNECT /proxy/a/80/ HTTP/1.1\r\n\r\n",
            "GET /proxy/a/80/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST /proxy/a/80/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST /proxy/a/80/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /proxy/a/80/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /proxy/a/80/ HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST /proxy/a/80/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /proxy/a/80/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(!taken(head), "taken: {head:?}");
        }
        assert!(taken(
            "POST /proxy/a/80/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
        ));
    }

    #[test]
    fn status_codes_of_heads() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n\r\n"), 204);
        assert_eq!(status_of(b"HTTP/1.0 103 \r\n\r\n"), 103);
    }
}
