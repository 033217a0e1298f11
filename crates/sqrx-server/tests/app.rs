//! Handler tests without a socket: the router from `sqrx_server::app`, driven with
//! `tower::ServiceExt::oneshot`. Nothing here starts a sandbox, so these run without root.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqrx_server::{AppState, ServerConfig, app};
use tower::ServiceExt;

struct Fixture {
    router: axum::Router,
    _data: tempfile::TempDir,
}

/// An app over an empty data directory, or `None` (with the reason printed) where the runtime
/// cannot open (no cgroups).
fn fixture(config: ServerConfig) -> Option<Fixture> {
    let data = tempfile::Builder::new()
        .prefix("sqrx-test-app-")
        .tempdir()
        .expect("tempdir");
    let rt = match sqrx_core::Runtime::open(sqrx_core::RuntimeConfig::new(data.path())) {
        Ok(rt) => rt,
        Err(e) if std::env::var_os("SQRX_REQUIRE_PRIVILEGED").is_none() => {
            eprintln!("skipped: cannot open a runtime here: {e}");
            return None;
        }
        Err(e) => panic!("cannot open a runtime: {e}"),
    };
    // The router in this test process: JavaScript runs in-process here (the confined workers,
    // started from sqrx-init, are tested black-box in tests/server/js.rs).
    let config = ServerConfig {
        js_isolation: sqrx_server::config::JsIsolation::InProcess,
        ..config
    };
    let state = AppState::new(rt, config).expect("state");
    Some(Fixture {
        router: app(state),
        _data: data,
    })
}

async fn call(f: &Fixture, req: Request<Body>) -> (StatusCode, Value, String) {
    let resp = f.router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if ct.starts_with("application/json") && !bytes.is_empty() {
        serde_json::from_slice(&bytes).expect("JSON body")
    } else {
        Value::Null
    };
    (status, v, String::from_utf8_lossy(&bytes).into_owned())
}

fn json_req(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn bare(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn openapi_document_is_committed() {
    let Some(f) = fixture(ServerConfig::default()) else {
        return;
    };
    let (status, _, served) = call(&f, bare("GET", "/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .expect("docs/openapi.json");
    assert!(
        served == committed,
        "docs/openapi.json differs from the server's document: regenerate it with \
         `cargo run -p sqrx-server --bin sqrx -- openapi > docs/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&served).expect("JSON");
    for path in [
        "/v1/health",
        "/v1/sandboxes",
        "/v1/sandboxes/{id}/exec",
        "/v1/sandboxes/{id}/exec/ws",
        "/v1/layers/{name}",
        "/v1/execute",
        "/api/execute",
        "/cgi-bin/health",
        "/cgi-bin/api/sandboxes/{id}/exec",
        "/metrics",
        "/v1/try",
        "/v1/status/{session_id}",
        "/v1/stop/{termination_token}",
        "/{session_id}/ws",
        "/proxy/{sandbox_id}/{port}/{path}",
        "/v1/sandboxes/{id}/pty",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["paths"]["/v1/health"]["get"]["security"].is_null());
    assert!(doc["paths"]["/{session_id}/ws"]["get"]["security"].is_null());
    assert!(doc["paths"]["/v1/try"]["post"]["security"].is_array());
    assert!(doc["paths"]["/proxy/{sandbox_id}/{port}/{path}"]["put"]["security"].is_array());
    assert!(doc["paths"]["/v1/sandboxes"]["get"]["security"].is_array());
}

#[tokio::test]
async fn errors_are_json_with_the_right_status() {
    let Some(f) = fixture(ServerConfig {
        max_json_bytes: 1024,
        ..ServerConfig::default()
    }) else {
        return;
    };
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            json_req("POST", "/v1/sandboxes", "{"),
            StatusCode::BAD_REQUEST,
            "parse",
        ),
        (
            json_req("POST", "/v1/sandboxes", "{\"id\": []}"),
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            json_req("POST", "/v1/sandboxes", "{}"),
            StatusCode::BAD_REQUEST,
            "missing field",
        ),
        (
            bare("POST", "/v1/sandboxes"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            json_req(
                "POST",
                "/v1/sandboxes",
                &format!("{{\"id\":\"{}\"}}", "a".repeat(2000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            json_req("POST", "/v1/sandboxes", "{\"id\": \"a/b\"}"),
            StatusCode::BAD_REQUEST,
            "invalid sandbox id",
        ),
        (
            bare("GET", "/v1/sandboxes/missing"),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            bare("DELETE", "/v1/sandboxes/missing"),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            bare("GET", "/v1/layers/000-none"),
            StatusCode::NOT_FOUND,
            "000-none",
        ),
        (
            bare("GET", "/v1/layers/nonsense"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (bare("GET", "/nowhere"), StatusCode::NOT_FOUND, "no route"),
        (
            bare("DELETE", "/v1/health"),
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE",
        ),
        (
            bare("GET", "/v1/sandboxes/x/exec/ws"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            bare("GET", "/v1/sandboxes/x/files/a?list=1&list=2"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            bare("PUT", "/v1/layers/100-x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            json_req("POST", "/v1/execute", "{\"file\": \"x.js\"}"),
            StatusCode::NOT_FOUND,
            "x.js",
        ),
        (
            json_req("POST", "/cgi-bin/api/sandboxes", "{}"),
            StatusCode::BAD_REQUEST,
            "id required",
        ),
        (
            bare("POST", "/cgi-bin/api/sandboxes"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            bare("GET", "/cgi-bin/api/sandboxes/ghost"),
            StatusCode::NOT_FOUND,
            "not found: ghost",
        ),
        (
            bare("GET", "/cgi-bin/api/sandboxes/ghost/logs"),
            StatusCode::NOT_FOUND,
            "not found: ghost",
        ),
        (
            bare("PUT", "/cgi-bin/api/sandboxes"),
            StatusCode::BAD_REQUEST,
            "method not allowed",
        ),
    ];
    for (req, status, needle) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, body, text) = call(&f, req).await;
        assert_eq!(got, status, "{what}: {text}");
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not a JSON error: {text:?}"));
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
    }
}

#[tokio::test]
async fn health_js_metrics_and_auth() {
    let Some(f) = fixture(ServerConfig {
        auth_token: Some("t0ken".into()),
        ..ServerConfig::default()
    }) else {
        return;
    };
    let (status, body, _) = call(&f, bare("GET", "/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sandboxes"], 0);
    assert_eq!(body["layers"], 0);
    let (_, body, _) = call(&f, bare("GET", "/cgi-bin/health")).await;
    assert_eq!(body["base_ready"], false);

    let (status, body, _) = call(&f, bare("GET", "/v1/sandboxes")).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
    );
    let authed = |mut r: Request<Body>| {
        r.headers_mut().insert(
            header::AUTHORIZATION,
            "Bearer t0ken".parse().expect("header"),
        );
        r
    };
    let (status, body, _) = call(&f, authed(bare("GET", "/v1/sandboxes"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let (status, body, _) = call(
        &f,
        authed(json_req(
            "POST",
            "/api/execute",
            "{\"code\": \"[1,2,3].map(x => x * input)\", \"input\": 2}",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!([2, 4, 6]));

    let (status, _, text) = call(&f, authed(bare("GET", "/metrics"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("sqrx_js_executions_total{status=\"success\"} 1"),
        "{text}"
    );
    assert!(text.contains("status=\"401\""), "{text}");
}

#[tokio::test]
async fn sessions_and_proxy_without_a_sandbox() {
    let Some(f) = fixture(ServerConfig {
        auth_token: Some("tok".into()),
        ..ServerConfig::default()
    }) else {
        return;
    };
    let authed = |mut r: Request<Body>| {
        r.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer tok".parse().expect("header"));
        r
    };
    let unknown = "0123456789abcdef0123456789abcdef";
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        // Opening and proxying need the token ...
        (
            bare("POST", "/v1/try"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            bare("GET", "/proxy/a/80/"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            bare("GET", "/v1/sandboxes/a/pty"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        // ... the session routes carry their own capability.
        (
            bare("GET", &format!("/v1/status/{unknown}")),
            StatusCode::NOT_FOUND,
            "session not found",
        ),
        (
            bare("POST", &format!("/v1/stop/{unknown}")),
            StatusCode::NOT_FOUND,
            "session not found",
        ),
        (
            bare("DELETE", &format!("/v1/stop/{unknown}")),
            StatusCode::NOT_FOUND,
            "session not found",
        ),
        (
            bare("GET", &format!("/{unknown}/ws")),
            StatusCode::NOT_FOUND,
            "session not found",
        ),
        (
            authed(json_req("POST", "/v1/try", r#"{"ttl": 0}"#)),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            authed(json_req("POST", "/v1/try", r#"{"template": "nope"}"#)),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            authed(json_req("POST", "/v1/try", "{")),
            StatusCode::BAD_REQUEST,
            "invalid body",
        ),
        (
            authed(bare("GET", "/proxy/nobox/80/x")),
            StatusCode::NOT_FOUND,
            "nobox",
        ),
        (
            authed(bare("GET", "/proxy/nobox/0/x")),
            StatusCode::BAD_REQUEST,
            "port",
        ),
        (
            authed(bare("GET", "/v1/sandboxes/nobox/pty")),
            StatusCode::BAD_REQUEST,
            "upgrade",
        ),
    ];
    for (req, status, needle) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, body, text) = call(&f, req).await;
        assert_eq!(got, status, "{what}: {text}");
        let msg = body["error"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(msg.contains(needle), "{what}: {text} lacks {needle:?}");
    }
}

#[tokio::test]
async fn bad_network_policies_are_400_with_the_reason() {
    let Some(f) = fixture(ServerConfig::default()) else {
        return;
    };
    for (req, needle) in [
        (
            json_req(
                "POST",
                "/v1/sandboxes",
                r#"{"id": "a", "network": {"allow": ["10.0.0.1/8"]}}"#,
            ),
            "bits set beyond the prefix length",
        ),
        (
            json_req("POST", "/v1/sandboxes", r#"{"id": "a", "network": "open"}"#),
            "unknown network policy \"open\"",
        ),
        (
            json_req(
                "POST",
                "/v1/sandboxes",
                r#"{"id": "a", "network": {"allow": ["[::1]:80"]}}"#,
            ),
            "IPv6",
        ),
        (
            json_req(
                "PUT",
                "/v1/sandboxes/a/network",
                r#"{"allow": ["10.1.0.0/16"], "deny": ["x:0"]}"#,
            ),
            "port",
        ),
        (
            json_req("PUT", "/v1/sandboxes/a/network", "42"),
            "network policy",
        ),
        (
            json_req(
                "POST",
                "/cgi-bin/api/sandboxes",
                r#"{"id": "a", "allow_net": ["10.0.0.1/8"]}"#,
            ),
            "allow_net: invalid network rule",
        ),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body, _) = call(&f, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
    }
    // A good policy for a sandbox that does not exist: 404, not a parse error.
    let (status, body, _) = call(
        &f,
        json_req("PUT", "/v1/sandboxes/ghost/network", r#""all""#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let doc: Value = serde_json::from_str(&sqrx_server::openapi::document()).expect("JSON");
    assert!(doc["paths"]["/v1/sandboxes/{id}/network"]["put"].is_object());
    assert!(doc["components"]["schemas"]["NetworkPolicy"].is_object());
}
