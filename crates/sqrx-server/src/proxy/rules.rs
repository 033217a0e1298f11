//! The rules every proxied request follows, whichever of the three paths serves it (the
//! relay, the direct path on hyper's connections, the router's `/proxy` routes): who may
//! reach which sandbox, which headers the service never sees, the `X-Forwarded-*` headers it
//! gets, and how the request is counted and logged. The paths only differ in how they carry
//! bytes; the decisions are made here.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Identity;
use crate::tenants::access::{self, Attempt};

/// The route label of a proxied request with a path after the port.
pub const ROUTE: &str = "/proxy/{sandbox_id}/{port}/{*path}";
/// The route label of a proxied request for the service's root.
pub const ROUTE_ROOT: &str = "/proxy/{sandbox_id}/{port}/";
/// The route label of a request to the sandbox's default port with a path.
pub const DEFAULT_ROUTE: &str = "/proxy/{sandbox_id}/{*path}";
/// The route label of a request for the root of the sandbox's default port.
pub const DEFAULT_ROUTE_ROOT: &str = "/proxy/{sandbox_id}/";

/// Where a `/proxy/...` path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The sandbox id as written (percent-encoded ones are the router's to decode).
    pub id: &'a str,
    /// The port as written; `None`: the sandbox's default port.
    pub port: Option<&'a str>,
    /// What the proxy removes (`/proxy/{id}/{port}` or `/proxy/{id}`), as written.
    pub prefix: &'a str,
    /// The path the service gets (from its `/`).
    pub rest: &'a str,
}

impl Target<'_> {
    /// The route label for metrics and the audit log.
    pub fn route(&self) -> &'static str {
        let root = self.rest == "/";
        match (self.port.is_some(), root) {
            (true, false) => ROUTE,
            (true, true) => ROUTE_ROOT,
            (false, false) => DEFAULT_ROUTE,
            (false, true) => DEFAULT_ROUTE_ROOT,
        }
    }
}

/// Read a proxy path: `/proxy/{id}/{port}/{path}` when the segment after the id is all digits
/// and a `/` follows it, else `/proxy/{id}/{path}` for the sandbox's default port. `None` for
/// other paths and for those the router redirects (`/proxy/{id}`, `/proxy/{id}/{port}`).
pub fn target(path: &str) -> Option<Target<'_>> {
    let after_proxy = path.strip_prefix("/proxy/")?;
    let (id, after) = after_proxy.split_once('/')?;
    if id.is_empty() {
        return None;
    }
    let id_end = "/proxy/".len() + id.len();
    match after.split_once('/') {
        Some((port, _)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            let end = id_end + 1 + port.len();
            Some(Target {
                id,
                port: Some(port),
                prefix: &path[..end],
                rest: &path[end..],
            })
        }
        None if !after.is_empty() && after.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(Target {
            id,
            port: None,
            prefix: &path[..id_end],
            rest: &path[id_end..],
        }),
    }
}

/// The port a request reaches in sandbox `id` (decoded): the one its path names (`named`, a
/// [`Target::port`]; 400 if not 1-65535), else the sandbox's default port, else the server's
/// (400 without one).
pub fn port(state: &AppState, named: Option<&str>, id: &str) -> Result<u16, ApiError> {
    if let Some(raw) = named {
        return super::http::port_of(raw);
    }
    let own = state.runtime().default_port_of(id)?;
    own.or(state.config().proxy_default_port).ok_or_else(|| {
        ApiError::bad_request(format!(
            "sandbox {id} has no default port: name one (/proxy/{id}/PORT/...), create the \
             sandbox with default_port, or start the server with --proxy-default-port"
        ))
    })
}

/// Headers that describe one connection (RFC 9110 §7.6.1), plus the pre-standard
/// `Keep-Alive` and `Proxy-Connection`: never passed on. (`Transfer-Encoding` and `Trailer`
/// also describe the hop; each path handles the body's framing itself.)
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "upgrade",
];

/// The headers the proxy sets itself: a client's own values never reach the service.
pub const FORWARDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
];

/// Headers that frame the message: kept whatever `Connection` names, or a client could make
/// a path drop the length it frames the body by.
pub const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Is `name` (any case) in `list` (lower case)?
pub fn named(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Does the service get the request header `name` (any case)? Not the hop-by-hop ones, not
/// the forwarded ones (set by [`forwarded`]), not those the client's `Connection` header
/// lists (`listed`, framing headers excepted), and never the credentials that open this
/// server (`Authorization`, E2B's `X-API-KEY`) when it requires them: code in a sandbox must
/// not be able to call the server as its caller.
pub fn passes(name: &str, listed: &[&str], auth_required: bool) -> bool {
    !(named(&HOP_BY_HOP, name)
        || named(&FORWARDED, name)
        || (named(listed, name) && !named(&FRAMING, name))
        || (auth_required
            && (name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("x-api-key"))))
}

/// Does the client get the service's response header `name`? Not the hop-by-hop ones, nor
/// those the service's `Connection` header lists (framing headers excepted).
pub fn response_passes(name: &str, listed: &[&str]) -> bool {
    !(named(&HOP_BY_HOP, name) || (named(listed, name) && !named(&FRAMING, name)))
}

/// The `X-Forwarded-*` headers the service gets, in this order: the client's address after
/// every `X-Forwarded-For` value it sent (in order, empty ones skipped), the `Host` it asked
/// for (when it sent one), the scheme, and the prefix the proxy removed (`/proxy/{id}/{port}`
/// as the client wrote it).
pub fn forwarded(
    earlier: &[&[u8]],
    client: Option<IpAddr>,
    host: Option<&[u8]>,
    prefix: &str,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut chain: Vec<u8> = Vec::new();
    for before in earlier.iter().map(|v| v.trim_ascii()) {
        if !before.is_empty() {
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(before);
        }
    }
    if let Some(ip) = client {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(ip.to_string().as_bytes());
    }
    let mut out = Vec::with_capacity(4);
    if !chain.is_empty() {
        out.push(("x-forwarded-for", chain));
    }
    if let Some(host) = host {
        out.push(("x-forwarded-host", host.to_vec()));
    }
    out.push(("x-forwarded-proto", b"http".to_vec()));
    out.push(("x-forwarded-prefix", prefix.as_bytes().to_vec()));
    out
}

/// The `Host` the service gets when the client sent none (HTTP/1.0, or HTTP/2's
/// `:authority` missing): the service's own address.
pub fn default_host(port: &str) -> String {
    format!("127.0.0.1:{port}")
}

/// May this request reach its sandbox? `operator` says whether it carries the server's own
/// token, `key` is the user key it offers otherwise. The caller's identity (the operator on
/// an open server), or the answer refusing it: 401 for no or a bad key (audited), 429 past
/// the key's rate limit, and for another user's sandbox the same 404 as for a missing one
/// (audited), exactly as the router's middleware answers.
pub async fn admit(
    state: &AppState,
    operator: bool,
    key: Option<&str>,
    attempt: &Attempt<'_>,
) -> Result<Identity, Response> {
    if operator || !auth::required(state) {
        return Ok(Identity::Operator);
    }
    let Some(tenants) = state.tenants() else {
        return Err(auth::unauthorized());
    };
    let identity = access::identify(tenants, key)
        .await
        .map_err(|refusal| refusal.answer(tenants, attempt))?;
    if let Some(id) = attempt.target
        && !access::may_reach(state, &identity, id)
    {
        let hidden = crate::tenants::guard::not_found(attempt.route, id);
        return Err(access::deny(tenants, &identity, attempt, hidden));
    }
    Ok(identity)
}

/// Count, log and (when it changed something, on a server with tenants) audit a request the
/// relay or the direct path answered with `status` after `elapsed`. `uri` is the redacted
/// target when the request log is on.
pub fn finished(
    state: &AppState,
    identity: Option<&Identity>,
    attempt: &Attempt<'_>,
    status: u16,
    elapsed: Duration,
    uri: Option<String>,
) {
    let route = match attempt.route {
        ROUTE => Cow::Borrowed(ROUTE),
        ROUTE_ROOT => Cow::Borrowed(ROUTE_ROOT),
        DEFAULT_ROUTE => Cow::Borrowed(DEFAULT_ROUTE),
        DEFAULT_ROUTE_ROOT => Cow::Borrowed(DEFAULT_ROUTE_ROOT),
        other => Cow::Owned(other.to_string()),
    };
    state
        .metrics()
        .http(attempt.method, route, status, elapsed.as_secs_f64());
    if let (Some(tenants), Some(identity), Ok(status)) = (
        state.tenants(),
        identity,
        axum::http::StatusCode::from_u16(status),
    ) {
        attempt.finished(tenants, identity, status);
    }
    if let Some(uri) = uri {
        let method: &Method = attempt.method;
        tracing::info!(%method, %uri, status, latency_ms = elapsed.as_millis() as u64, "finished processing request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_the_service_never_gets() {
        for name in [
            "Connection",
            "upgrade",
            "TE",
            "X-Forwarded-Host",
            "x-forwarded-for",
        ] {
            assert!(!passes(name, &[], false), "{name}");
        }
        assert!(!passes("X-Private", &["x-private"], false));
        assert!(
            passes("Content-Length", &["content-length"], false),
            "framing stays"
        );
        assert!(
            passes("Authorization", &[], false),
            "an open server's client's own"
        );
        assert!(!passes("Authorization", &[], true));
        assert!(!passes("X-API-Key", &[], true));
        assert!(passes("X-Custom", &[], true));
    }

    #[test]
    fn forwarded_headers() {
        let ip: IpAddr = [10, 1, 2, 3].into();
        let text = |h: Vec<(&str, Vec<u8>)>| -> Vec<(String, String)> {
            h.into_iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(&v).into_owned()))
                .collect()
        };
        assert_eq!(
            text(forwarded(
                &[b"203.0.113.9", b" ", b"198.51.100.7 "],
                Some(ip),
                Some(b"example.com"),
                "/proxy/a/80"
            )),
            [
                ("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.2.3"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-prefix", "/proxy/a/80"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(forwarded(&[], None, None, "/p/a/1").len(), 2);
    }

    #[test]
    fn targets() {
        let t = |p| target(p).map(|t| (t.id, t.port, t.prefix, t.rest, t.route()));
        assert_eq!(
            t("/proxy/a/80/x/y"),
            Some(("a", Some("80"), "/proxy/a/80", "/x/y", ROUTE))
        );
        assert_eq!(
            t("/proxy/a/80/"),
            Some(("a", Some("80"), "/proxy/a/80", "/", ROUTE_ROOT))
        );
        assert_eq!(
            t("/proxy/a%2Db/80/"),
            Some(("a%2Db", Some("80"), "/proxy/a%2Db/80", "/", ROUTE_ROOT))
        );
        assert_eq!(
            t("/proxy/a/0/"),
            Some(("a", Some("0"), "/proxy/a/0", "/", ROUTE_ROOT)),
            "a bad port is port()'s to refuse"
        );
        // The default port: the first segment is not a number.
        assert_eq!(
            t("/proxy/a/"),
            Some(("a", None, "/proxy/a", "/", DEFAULT_ROUTE_ROOT))
        );
        assert_eq!(
            t("/proxy/a/index.html"),
            Some(("a", None, "/proxy/a", "/index.html", DEFAULT_ROUTE))
        );
        assert_eq!(
            t("/proxy/a/v2/x"),
            Some(("a", None, "/proxy/a", "/v2/x", DEFAULT_ROUTE))
        );
        assert_eq!(t("/proxy/a/80"), None, "the redirect is the router's");
        assert_eq!(t("/proxy/a"), None, "the redirect is the router's");
        assert_eq!(t("/proxy//80/"), None);
        assert_eq!(t("/v1/sandboxes"), None);
        assert_eq!(t("/proxyx/a/80/"), None);
    }
}
