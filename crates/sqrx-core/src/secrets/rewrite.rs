//! The substitution rules, apart from any I/O: where a placeholder may be replaced by its
//! value, and when a request that carries one must be refused instead.
//!
//! A request is checked whole before anything changes: every placeholder it carries (in any
//! header, inside Basic credentials, in the URL, in the body) must be allowed where it is,
//! or the request is refused and nothing is sent.

use base64::Engine as _;
use hyper::http::{HeaderValue, Uri, request::Parts};

use super::Secret;

/// Why a request was refused (names the secret, never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The secret whose placeholder the request carried.
    pub secret: String,
    /// Why it may not be substituted here.
    pub reason: &'static str,
}

/// Where in a request a placeholder was found.
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    headers: bool,
    url: bool,
    body: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `hay` with every `needle` replaced by `with`, or `None` when it holds none.
fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if !find(hay, needle) {
        return None;
    }
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The decoded credentials of a `Basic` authorization value.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
}

fn is_auth(name: &hyper::http::HeaderName) -> bool {
    name == hyper::header::AUTHORIZATION || name == hyper::header::PROXY_AUTHORIZATION
}

fn locate(parts: &Parts, body: Option<&[u8]>, placeholder: &str) -> Found {
    let p = placeholder.as_bytes();
    let headers = parts.headers.iter().any(|(name, v)| {
        find(v.as_bytes(), p)
            || (is_auth(name) && basic_credentials(v.as_bytes()).is_some_and(|c| find(&c, p)))
    });
    let url = parts
        .uri
        .path_and_query()
        .is_some_and(|pq| find(pq.as_str().as_bytes(), p));
    Found {
        headers,
        url,
        body: body.is_some_and(|b| find(b, p)),
    }
}

/// Check a request for `host` (over HTTPS or not) against `secrets` and, if every placeholder
/// it carries may be replaced where it is, replace them all. Returns the names of the secrets
/// substituted (empty: the request carried none).
pub(crate) fn rewrite(
    parts: &mut Parts,
    mut body: Option<&mut Vec<u8>>,
    host: &str,
    https: bool,
    secrets: &[(String, Secret)],
) -> Result<Vec<String>, Refusal> {
    let mut todo = Vec::new();
    for (name, secret) in secrets {
        let Some(placeholder) = secret.placeholder.as_deref() else {
            continue;
        };
        let found = locate(parts, body.as_deref().map(Vec::as_slice), placeholder);
        if !(found.headers || found.url || found.body) {
            continue;
        }
        let refuse = |reason| {
            Err(Refusal {
                secret: name.clone(),
                reason,
            })
        };
        if !secret.bound_to(host) {
            return refuse("the secret is not bound to this host");
        }
        if !https && !secret.allow_http {
            return refuse("plain HTTP: the secret goes over HTTPS only");
        }
        if found.url && !secret.allow_query {
            return refuse("in the URL: the secret is substituted in headers only");
        }
        if found.body && !secret.allow_body {
            return refuse("in the body: the secret is not substituted in bodies");
        }
        todo.push((name, placeholder, secret.value.as_bytes(), found));
    }
    for (_, placeholder, value, found) in &todo {
        let p = placeholder.as_bytes();
        if found.headers {
            for (name, v) in parts.headers.iter_mut() {
                let replaced = replace(v.as_bytes(), p, value).or_else(|| {
                    let creds = basic_credentials(v.as_bytes()).filter(|_| is_auth(name))?;
                    let creds = replace(&creds, p, value)?;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(creds);
                    Some(format!("Basic {encoded}").into_bytes())
                });
                if let Some(new) = replaced {
                    // A value with a control character is refused when the secret is made.
                    *v = HeaderValue::from_bytes(&new).map_err(|_| Refusal {
                        secret: String::new(),
                        reason: "the value cannot go in a header",
                    })?;
                }
            }
        }
        if found.url
            && let Some(pq) = parts.uri.path_and_query()
            && let Some(new) = replace(pq.as_str().as_bytes(), p, value)
        {
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(new.try_into().map_err(|_| Refusal {
                secret: String::new(),
                reason: "the value cannot go in a URL",
            })?);
            parts.uri = Uri::from_parts(uri).map_err(|_| Refusal {
                secret: String::new(),
                reason: "the value cannot go in a URL",
            })?;
        }
        if found.body
            && let Some(b) = body.as_deref_mut()
            && let Some(new) = replace(b, p, value)
        {
            *b = new;
        }
    }
    if let Some(b) = body.as_deref()
        && parts.headers.contains_key(hyper::header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    Ok(todo.into_iter().map(|(n, ..)| n.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<(String, Secret)> {
        vec![
            (
                "API_KEY".into(),
                Secret {
                    placeholder: Some("sqrx-secret-aaaa".into()),
                    ..Secret::new("REAL-KEY", ["api.example.com"])
                },
            ),
            (
                "OPEN".into(),
                Secret {
                    placeholder: Some("sqrx-secret-bbbb".into()),
                    allow_http: true,
                    allow_query: true,
                    allow_body: true,
                    ..Secret::new("REAL-OPEN", ["*.example.org"])
                },
            ),
        ]
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn any_header_and_basic_credentials_are_substituted_for_a_bound_host() {
        let basic = base64::engine::general_purpose::STANDARD.encode("user:sqrx-secret-aaaa");
        let mut p = parts(
            "/v1/x",
            &[
                ("x-api-key", "sqrx-secret-aaaa"),
                ("authorization", &format!("Basic {basic}")),
                ("accept", "*/*"),
            ],
        );
        let done = rewrite(&mut p, None, "api.example.com", true, &secrets()).expect("allowed");
        assert_eq!(done, vec!["API_KEY".to_string()]);
        assert_eq!(p.headers["x-api-key"], "REAL-KEY");
        let creds = basic_credentials(p.headers["authorization"].as_bytes()).expect("basic");
        assert_eq!(creds, b"user:REAL-KEY");
        assert_eq!(p.headers["accept"], "*/*");
    }

    #[test]
    fn a_placeholder_anywhere_else_refuses_the_whole_request() {
        let all = secrets();
        /// What, the request, its body, over HTTPS, to which host.
        type Case = (&'static str, Parts, Option<Vec<u8>>, bool, &'static str);
        let cases: Vec<Case> = vec![
            (
                "other host",
                parts("/", &[("authorization", "Bearer sqrx-secret-aaaa")]),
                None,
                true,
                "api.evil.com",
            ),
            (
                "plain http",
                parts("/", &[("x-key", "sqrx-secret-aaaa")]),
                None,
                false,
                "api.example.com",
            ),
            (
                "url",
                parts("/?key=sqrx-secret-aaaa", &[]),
                None,
                true,
                "api.example.com",
            ),
            (
                "body",
                parts("/", &[]),
                Some(b"{\"k\": \"sqrx-secret-aaaa\"}".to_vec()),
                true,
                "api.example.com",
            ),
            (
                "one allowed, one not",
                parts(
                    "/",
                    &[("x-a", "sqrx-secret-aaaa"), ("x-b", "sqrx-secret-bbbb")],
                ),
                None,
                true,
                "api.example.com",
            ),
        ];
        for (what, mut p, mut body, https, host) in cases {
            let before = p.headers.clone();
            let r = rewrite(&mut p, body.as_mut(), host, https, &all);
            assert!(r.is_err(), "{what}: {r:?}");
            assert_eq!(p.headers, before, "{what}: nothing changes");
        }
    }

    #[test]
    fn secrets_that_allow_it_are_substituted_in_url_and_body_over_http() {
        let mut p = parts("/q?token=sqrx-secret-bbbb", &[("content-length", "25")]);
        let mut body = b"{\"t\": \"sqrx-secret-bbbb\"}".to_vec();
        let done =
            rewrite(&mut p, Some(&mut body), "a.example.org", false, &secrets()).expect("allowed");
        assert_eq!(done, vec!["OPEN".to_string()]);
        assert_eq!(p.uri.to_string(), "/q?token=REAL-OPEN");
        assert_eq!(body, b"{\"t\": \"REAL-OPEN\"}");
        assert_eq!(p.headers["content-length"], body.len().to_string().as_str());
    }

    #[test]
    fn requests_without_placeholders_pass_unchanged() {
        let mut p = parts("/a?b=c", &[("x", "y")]);
        let done = rewrite(&mut p, None, "anything.net", false, &secrets()).expect("passes");
        assert!(done.is_empty());
    }
}
