//! Structured logs with `tracing`: text or one JSON object per line, on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. The filter comes from `SQRX_LOG` (e.g. `debug`,
/// `sqrx_server=debug,tower_http=info`), else `default`.
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_env("SQRX_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// What replaces a secret in a log line.
pub const REDACTED: &str = "[redacted]";

/// Query parameters whose values are never logged: a name containing any of these (in any
/// case) is taken for a credential (`token`, `access_token`, `api_key`, `X-Amz-Signature`,
/// `session`, an OAuth `code`, ...).
const SECRET_PARAMS: [&str; 10] = [
    "token",
    "key",
    "secret",
    "passw",
    "auth",
    "sig",
    "credential",
    "session",
    "code",
    "ticket",
];

/// Route prefixes whose next path segment is a session's termination token (a capability that
/// ends or extends the session): never logged.
const TOKEN_ROUTES: [&str; 2] = ["/v1/stop/", "/v1/extend/"];

/// How much of a session id the log keeps (the id is the capability to reach the session's
/// service: the log shows enough of it to follow one session, not enough to use it).
const SESSION_ID_SHOWN: usize = 8;

/// `target` (a request's path and query) as the request log may show it: termination tokens
/// redacted, session ids cut short, and the values of credential-like query parameters
/// redacted. Everything else is kept as sent.
pub fn redact_target(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out = String::with_capacity(target.len());
    if let Some(prefix) = TOKEN_ROUTES.iter().find(|p| path.starts_with(*p)) {
        out.push_str(prefix);
        out.push_str(REDACTED);
    } else if let Some(id) = session_id(path) {
        // `/{session_id}/ws` and `/v1/status/{session_id}`.
        let shown: String = id.chars().take(SESSION_ID_SHOWN).collect();
        out.push_str(&path.replacen(id, &format!("{shown}..."), 1));
    } else {
        out.push_str(path);
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

/// The session id in a `/{session_id}/ws` or `/v1/status/{session_id}` path, if it is one
/// long enough to cut.
fn session_id(path: &str) -> Option<&str> {
    let id = if let Some(id) = path.strip_prefix("/v1/status/") {
        id
    } else {
        let rest = path.strip_prefix('/')?;
        let (id, tail) = rest.split_once('/')?;
        if tail != "ws" || id == "v1" {
            return None;
        }
        id
    };
    (!id.is_empty() && !id.contains('/') && id.chars().count() > SESSION_ID_SHOWN).then_some(id)
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// The span of each request in the request log: method, redacted target ([`redact_target`]),
/// version. Headers are never recorded (they hold the bearer token and cookies).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> tracing::Span {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        tracing::info_span!(
            "request",
            method = %req.method(),
            uri = %redact_target(target),
            version = ?req.version(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_redacted() {
        for (given, logged) in [
            ("/v1/sandboxes?list", "/v1/sandboxes?list"),
            ("/v1/stop/abcdef0123456789", "/v1/stop/[redacted]"),
            (
                "/v1/extend/abcdef0123456789?x=1",
                "/v1/extend/[redacted]?x=1",
            ),
            ("/v1/status/0123456789abcdef", "/v1/status/01234567..."),
            ("/0123456789abcdef/ws?a=b", "/01234567.../ws?a=b"),
            ("/v1/ws", "/v1/ws"),
            (
                "/proxy/box/8888/lab?token=s3cret&x=1&API_KEY=k&sig",
                "/proxy/box/8888/lab?token=[redacted]&x=1&API_KEY=[redacted]&sig",
            ),
            (
                "/a?access_token=t&Password=p",
                "/a?access_token=[redacted]&Password=[redacted]",
            ),
        ] {
            assert_eq!(redact_target(given), logged, "{given}");
        }
    }
}
