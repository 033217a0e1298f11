//! Bearer-token authentication.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

async fn check(s: &Server, token: &str) {
    let c = client();
    // Public routes.
    for path in ["/v1/health", "/cgi-bin/health", "/openapi.json"] {
        let r = c.get(s.url(path)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // Everything else needs the token.
    for (method, path) in [
        ("GET", "/v1/sandboxes"),
        ("GET", "/v1/layers"),
        ("POST", "/v1/sandboxes"),
        ("POST", "/v1/execute"),
        ("POST", "/api/execute"),
        ("GET", "/cgi-bin/api/sandboxes"),
        ("GET", "/cgi-bin/api/modules"),
        ("GET", "/metrics"),
        ("GET", "/v1/sandboxes/x/exec/ws"),
        ("PUT", "/v1/sandboxes/x/network"),
    ] {
        let m: reqwest::Method = method.parse().expect("method");
        let missing = send(c.request(m.clone(), s.url(path))).await;
        assert_eq!(
            missing,
            (401, json!({"error": "unauthorized"})),
            "{method} {path}"
        );
        let wrong = send(
            c.request(m.clone(), s.url(path))
                .bearer_auth(format!("{token}x")),
        )
        .await;
        assert_eq!(wrong.0, 401, "{method} {path}");
        let short = send(
            c.request(m.clone(), s.url(path))
                .bearer_auth(&token[..token.len() - 1]),
        )
        .await;
        assert_eq!(short.0, 401, "{method} {path}");
        let basic = send(
            c.request(m, s.url(path))
                .header("authorization", format!("Basic {token}")),
        )
        .await;
        assert_eq!(basic.0, 401, "{method} {path}");
    }
    let ok = send(c.get(s.url("/v1/sandboxes")).bearer_auth(token)).await;
    assert_eq!(ok, (200, json!([])));
    let ok = send(c.get(s.url("/cgi-bin/api/sandboxes")).bearer_auth(token)).await;
    assert_eq!(ok, (200, json!([])));
    let js = send(
        c.post(s.url("/api/execute"))
            .bearer_auth(token)
            .json(&json!({"code": "2*21"})),
    )
    .await;
    assert_eq!(js.1["result"], 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_env_and_flag() {
    if !privileged("server tokens_from_env_and_flag") {
        return;
    }
    let data = DataDir::new();
    {
        let s = Server::start_with(
            &data,
            Binary::Server,
            &[],
            &[("SQUASH_AUTH_TOKEN", "squash-secret")],
        );
        check(&s, "squash-secret").await;
    }
    {
        let s = Server::start_with(
            &data,
            Binary::Serve,
            &[],
            &[("SQRX_AUTH_TOKEN", "sqrx-secret")],
        );
        check(&s, "sqrx-secret").await;
    }
    {
        let s = Server::start_with(
            &data,
            Binary::Server,
            &["--auth-token", "flag-secret"],
            &[("SQRX_AUTH_TOKEN", "ignored")],
        );
        check(&s, "flag-secret").await;
    }
}
