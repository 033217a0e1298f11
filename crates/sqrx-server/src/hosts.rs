//! Which `Host` (and, on WebSocket upgrades, which `Origin`) the server answers: the defence
//! against DNS rebinding and cross-site WebSocket hijacking.
//!
//! A web page on `evil.example` can point its own name at 127.0.0.1 (DNS rebinding) and then
//! talk to a server on the victim's loopback as if same-origin; every such request still
//! carries `Host: evil.example`. And a page can open a WebSocket to any address, cookies and
//! all, with no CORS check; the browser then says where the page came from in `Origin`. So
//! every request's `Host` must name this server (a loopback name, the address it listens on
//! or was reached at, or a host the operator allowed), and every WebSocket upgrade that comes
//! with a browser's `Origin` must come from a page on such a host. A request without `Host`
//! (an HTTP/1.0 client; browsers always send one) and an upgrade without `Origin` (a program,
//! not a browser) pass.
//!
//! The check is made on every path that serves requests: the router's middleware
//! ([`check_request`]), the proxy's direct path and its HTTP/1.1 relay (which calls
//! [`AllowedHosts::allows`] on the `Host` it parsed).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN, UPGRADE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The address a client connection arrived at, put in each request's extensions by the
/// server (see [`crate::connection::Routes`]): a server listening on `0.0.0.0` answers to the
/// address it was actually reached at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// One allowed host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// This name (or address), any port.
    Exact(String),
    /// This name on this port only.
    WithPort(String, u16),
    /// Any name ending in `.suffix` (from `*.suffix`), any port; not `suffix` itself.
    Subdomains(String),
}

/// The hosts the server answers to besides the loopback names: the listen address and what
/// the operator allowed (`--allowed-host`, `SQRX_ALLOWED_HOSTS`, `allowed_hosts` in the
/// config file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts {
    patterns: Vec<Pattern>,
}

/// Why an allowed-host entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not a host name, address or *.domain pattern: {reason}")]
pub struct HostPatternError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// `name` in the form hosts are compared in: lower case, without a trailing dot, IPv6
/// addresses without brackets.
fn normalize(name: &str) -> String {
    let name = name.trim().trim_end_matches('.');
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.to_ascii_lowercase()
}

/// Split a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`) into its name (normalized)
/// and port. `None` for a value no client could mean (empty, bad port, stray characters).
pub fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    if value.is_empty()
        || value
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"/?#@\\".contains(&b))
    {
        return None;
    }
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (v6, port)
    } else {
        match value.rsplit_once(':') {
            // More than one colon without brackets: a bare IPv6 address (not valid in Host,
            // but unambiguous).
            Some((n, _)) if n.contains(':') => (value, None),
            Some((n, p)) => (n, Some(p.parse().ok()?)),
            None => (value, None),
        }
    };
    let name = normalize(name);
    if name.is_empty() {
        return None;
    }
    Some((name, port))
}

/// Is `name` (normalized) a loopback name: `localhost`, an address in 127.0.0.0/8, `::1`?
fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback())
}

impl AllowedHosts {
    /// The hosts of `listen` (the listen address, `host:port`) and of `entries` (`name`,
    /// `name:port`, `[v6]`, `*.domain`). An unspecified listen address (`0.0.0.0`, `[::]`)
    /// adds nothing: such a server answers to the address each connection arrived at.
    pub fn new(listen: &str, entries: &[String]) -> Result<Self, HostPatternError> {
        let mut patterns = Vec::new();
        if let Some((name, _)) = split_host(listen)
            && !name.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
        {
            patterns.push(Pattern::Exact(name));
        }
        for entry in entries {
            let refuse = |reason| HostPatternError {
                entry: entry.clone(),
                reason,
            };
            let trimmed = entry.trim();
            if let Some(suffix) = trimmed.strip_prefix("*.") {
                let suffix = normalize(suffix);
                if suffix.is_empty() || suffix.contains('*') || split_host(&suffix).is_none() {
                    return Err(refuse("a wildcard is `*.` followed by a domain"));
                }
                patterns.push(Pattern::Subdomains(suffix));
                continue;
            }
            if trimmed.contains('*') {
                return Err(refuse("`*` is only allowed as a leading `*.`"));
            }
            match split_host(trimmed) {
                None => return Err(refuse("expected host or host:port, without scheme or path")),
                Some((name, None)) => patterns.push(Pattern::Exact(name)),
                Some((name, Some(port))) => patterns.push(Pattern::WithPort(name, port)),
            }
        }
        Ok(AllowedHosts { patterns })
    }

    /// Does the server answer to the `Host` value `host`, on a connection that arrived at
    /// `local` (when known)?
    pub fn allows(&self, host: &str, local: Option<IpAddr>) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        self.allows_name(&name, port, local)
    }

    fn allows_name(&self, name: &str, port: Option<u16>, local: Option<IpAddr>) -> bool {
        if is_loopback(name) {
            return true;
        }
        if let (Some(local), Ok(ip)) = (local, name.parse::<IpAddr>())
            && local.to_canonical() == ip.to_canonical()
        {
            return true;
        }
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(n) => n == name,
            Pattern::WithPort(n, p) => n == name && port == Some(*p),
            Pattern::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        })
    }

    /// Does the server accept a WebSocket upgrade from a page whose `Origin` is `origin`
    /// (`scheme://host[:port]`)? `null` and anything that is not such an origin are refused.
    pub fn allows_origin(&self, origin: &str, local: Option<IpAddr>) -> bool {
        let Some((_, rest)) = origin.trim().split_once("://") else {
            return false;
        };
        self.allows(rest, local)
    }
}

/// Is the request an upgrade to another protocol (an HTTP/1.1 `Upgrade`, or an HTTP/2
/// extended CONNECT, as WebSockets use)?
pub fn is_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) || method == Method::CONNECT
}

/// The 403 answer for a request whose `Host` or `Origin` the server refuses, or `None` when it
/// passes. `local` is the address the connection arrived at, when known.
pub fn refusal(
    hosts: &AllowedHosts,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local: Option<IpAddr>,
) -> Option<Response> {
    // HTTP/2 carries the host in the URI (`:authority`); HTTP/1.1 in `Host`.
    let host = match headers.get(HOST) {
        Some(v) => Some(v.to_str().unwrap_or("\u{0}")),
        None => uri.authority().map(|a| a.as_str()),
    };
    if let Some(host) = host
        && !hosts.allows(host, local)
    {
        return Some(host_refused(host));
    }
    if is_upgrade(method, headers)
        && let Some(origin) = headers.get(ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("\u{0}");
        if !hosts.allows_origin(origin, local) {
            return Some(forbidden(format!(
                "WebSocket upgrade from origin {origin:?} refused (cross-site WebSocket \
                 protection); allowed origins are on loopback names, the listen address and \
                 --allowed-host"
            )));
        }
    }
    None
}

/// The 403 answer to a request whose `Host` is `host`, not an allowed one.
pub fn host_refused(host: &str) -> Response {
    forbidden(format!(
        "host {host:?} is not allowed (DNS rebinding protection); the server answers to \
         loopback names, its listen address and --allowed-host"
    ))
}

/// A 403 JSON answer.
fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Middleware refusing requests with a foreign `Host`, and WebSocket upgrades with a foreign
/// `Origin`, with 403 `{"error": ...}`.
pub async fn check_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    match refusal(
        &state.config().allowed_hosts,
        req.method(),
        req.uri(),
        req.headers(),
        local,
    ) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        AllowedHosts::new(listen, &entries).expect("patterns")
    }

    #[test]
    fn loopback_names_always_pass() {
        let h = hosts("127.0.0.1:8080", &[]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.45.3.2:9999",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(h.allows(ok, None), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "",
            "local host",
            "localhost:notaport",
            "user@localhost",
            "[::1",
        ] {
            assert!(!h.allows(bad, None), "{bad}");
        }
    }

    #[test]
    fn listen_address_local_address_and_patterns() {
        let h = hosts(
            "10.1.2.3:8080",
            &[
                "sandbox.example.com",
                "*.apps.example.com",
                "pinned.example:9000",
            ],
        );
        assert!(h.allows("10.1.2.3:8080", None));
        assert!(h.allows("Sandbox.Example.Com", None));
        assert!(h.allows("sandbox.example.com:443", None));
        assert!(h.allows("a.apps.example.com", None));
        assert!(h.allows("x.y.apps.example.com:8080", None));
        assert!(!h.allows("apps.example.com", None), "only subdomains");
        assert!(!h.allows("evilapps.example.com", None));
        assert!(h.allows("pinned.example:9000", None));
        assert!(!h.allows("pinned.example:9001", None));
        assert!(!h.allows("pinned.example", None));
        // 0.0.0.0 adds nothing, but the address a connection arrived at passes.
        let any = hosts("0.0.0.0:8080", &[]);
        assert!(!any.allows("0.0.0.0:8080", None));
        assert!(!any.allows("192.168.1.5:8080", None));
        let local: IpAddr = "192.168.1.5".parse().expect("ip");
        assert!(any.allows("192.168.1.5:8080", Some(local)));
        assert!(!any.allows("192.168.1.6:8080", Some(local)));
        assert!(!any.allows("evil.example", Some(local)));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["*", "*.", "a.*.b", "http://x", "x/y", "*x.com", ""] {
            assert!(
                AllowedHosts::new("127.0.0.1:1", &[bad.to_string()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn origins() {
        let h = hosts("127.0.0.1:8080", &["app.example.com"]);
        assert!(h.allows_origin("http://localhost:8080", None));
        assert!(h.allows_origin("https://app.example.com", None));
        assert!(!h.allows_origin("https://evil.example", None));
        assert!(!h.allows_origin("null", None));
        assert!(!h.allows_origin("", None));
    }

    #[test]
    fn requests() {
        let h = hosts("127.0.0.1:8080", &[]);
        let get = Method::GET;
        let uri: Uri = "/v1/health".parse().expect("uri");
        let mut headers = HeaderMap::new();
        assert!(refusal(&h, &get, &uri, &headers, None).is_none(), "no Host");
        headers.insert(HOST, "evil.example".parse().expect("value"));
        let r = refusal(&h, &get, &uri, &headers, None).expect("refused");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        headers.insert(HOST, "localhost:8080".parse().expect("value"));
        headers.insert(ORIGIN, "http://evil.example".parse().expect("value"));
        assert!(
            refusal(&h, &get, &uri, &headers, None).is_none(),
            "Origin only matters on upgrades"
        );
        headers.insert(UPGRADE, "websocket".parse().expect("value"));
        assert!(refusal(&h, &get, &uri, &headers, None).is_some());
        headers.insert(ORIGIN, "http://localhost:8080".parse().expect("value"));
        assert!(refusal(&h, &get, &uri, &headers, None).is_none());
        headers.remove(ORIGIN);
        assert!(
            refusal(&h, &get, &uri, &headers, None).is_none(),
            "no Origin"
        );
        // HTTP/2: the authority is in the URI.
        let h2: Uri = "http://evil.example/v1/health".parse().expect("uri");
        assert!(refusal(&h, &get, &h2, &HeaderMap::new(), None).is_some());
    }
}
