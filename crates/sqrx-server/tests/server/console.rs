//! The web console (`/ui/`) and what it relies on: public, compressed, cached static files
//! with a Content-Security-Policy; WebSockets that take the key from the `sqrx.bearer.`
//! subprotocol (a browser cannot set `Authorization`) and never log it; per-user isolation
//! of that key; the stats route behind the live CPU/memory column.

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::*;
use crate::services::Ws;

const TOKEN: &str = "console-test-token/with+odd=chars";

fn subprotocols(key: &str) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    format!("sqrx, sqrx.bearer.{enc}")
}

/// Open `path` offering `protocols` (no `Authorization`); the selected subprotocol, or the
/// HTTP status of a refusal.
async fn ws_with(
    s: &Server,
    path: &str,
    protocols: Option<&str>,
) -> Result<(Ws, Option<String>), u16> {
    let mut req = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .expect("request");
    if let Some(p) = protocols {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(p).expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((ws, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect {path}: {e}"),
    }
}

async fn screen_until(ws: &mut Ws, needle: &str) -> String {
    let mut screen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !screen.contains(needle) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no {needle:?} on the screen: {screen:?}"),
            Ok(Some(Ok(Message::Binary(b)))) => screen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("waiting for {needle:?}: {other:?}; screen {screen:?}"),
        }
    }
    screen
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m: reqwest::Method = method.parse().expect("method");
    let mut req = client().request(m, s.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_public_compressed_and_cached() {
    if !privileged("server the_console_is_public_compressed_and_cached") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Serve, &["--auth-token", TOKEN], &[]);
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let r = c.get(s.url("/ui")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/ui/");

    // No token needed for the page; it names its hashed assets; no inline script.
    let r = c.get(s.url("/ui/")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].clone();
    let html = r.text().await.expect("html");
    let js = html
        .split('"')
        .find(|p| p.starts_with("assets/app-") && p.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script in {html}"))
        .to_string();
    assert!(!html.contains("<script>"), "inline script");

    // Revalidation.
    let r = c
        .get(s.url("/ui/"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 304);

    // Assets: immutable, gzip when accepted, identity otherwise.
    let r = c
        .get(s.url(&format!("/ui/{js}")))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
    let gz = r.bytes().await.expect("body");
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let plain = c
        .get(s.url(&format!("/ui/{js}")))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(
        plain.len() > gz.len() * 2,
        "{} vs {}",
        plain.len(),
        gz.len()
    );
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
        .expect("gunzip");
    assert_eq!(unzipped, plain);

    // Client routes get the page; missing files a JSON 404.
    let r = c.get(s.url("/ui/sandboxes/x")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let missing = send(c.get(s.url("/ui/assets/app-NOPE.js"))).await;
    assert_error(&missing, 404, "no console file");

    // The API is not public because the console is.
    let r = c.get(s.url("/v1/sandboxes")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_terminal_takes_the_token_from_the_subprotocol() {
    if !privileged("server the_terminal_takes_the_token_from_the_subprotocol") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Serve, &["--auth-token", TOKEN], &[]);
    let made = call(
        &s,
        "POST",
        "/v1/sandboxes",
        TOKEN,
        Some(json!({"id": "uiws"})),
    )
    .await;
    assert_eq!(made.0, 201, "{}", made.1);

    let (mut ws, chosen) = ws_with(
        &s,
        "/v1/sandboxes/uiws/pty?cols=100&rows=30",
        Some(&subprotocols(TOKEN)),
    )
    .await
    .expect("the subprotocol token is accepted");
    assert_eq!(
        chosen.as_deref(),
        Some("sqrx"),
        "the server selects sqrx, never the key"
    );
    ws.send(Message::Binary(b"echo hi-$((40+2))\n".to_vec().into()))
        .await
        .expect("type");
    screen_until(&mut ws, "hi-42").await;
    ws.send(Message::Text(
        json!({"type":"input","data":"stty size\n"})
            .to_string()
            .into(),
    ))
    .await
    .expect("type");
    screen_until(&mut ws, "30 100").await;
    drop(ws);

    // The streamed exec takes it the same way.
    let (mut ws, chosen) = ws_with(&s, "/v1/sandboxes/uiws/exec/ws", Some(&subprotocols(TOKEN)))
        .await
        .expect("exec ws");
    assert_eq!(chosen.as_deref(), Some("sqrx"));
    ws.send(Message::Text(
        json!({"command": "echo via-exec", "stdin": false})
            .to_string()
            .into(),
    ))
    .await
    .expect("request");
    let mut out = Vec::new();
    while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("exec output in time")
    {
        match m {
            Message::Binary(b) => out.extend_from_slice(&b[1..]),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "via-exec\n");

    // A wrong key, a key without the prefix, no key: 401 before any upgrade.
    for protocols in [
        Some(subprotocols("wrong-token")),
        Some(format!("sqrx, {TOKEN}")),
        Some("sqrx".to_string()),
        None,
    ] {
        let refused = ws_with(&s, "/v1/sandboxes/uiws/pty", protocols.as_deref()).await;
        assert_eq!(refused.err(), Some(401), "{protocols:?}");
    }
    // The proxy forwards subprotocols to a service inside the sandbox: a key there is never
    // taken (nor handed on).
    let refused = ws_with(&s, "/proxy/uiws/8080/", Some(&subprotocols(TOKEN))).await;
    assert_eq!(refused.err(), Some(401));
    // Plain clients keep working with Authorization, and get no subprotocol they did not ask for.
    let mut req = format!("ws://{}/v1/sandboxes/uiws/pty", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header"),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer header");
    assert!(resp.headers().get("sec-websocket-protocol").is_none());

    // Stats for the console's live columns.
    let (st, stats) = call(&s, "GET", "/v1/sandboxes/uiws/stats", TOKEN, None).await;
    assert_eq!(st, 200, "{stats}");
    assert_eq!(stats["id"], "uiws");
    assert!(
        stats["cpu_usage_usec"].as_u64().expect("cpu") > 0,
        "{stats}"
    );
    assert!(
        stats["memory_bytes"].as_u64().expect("memory") > 0,
        "{stats}"
    );
    assert!(stats["pids"].as_u64().expect("pids") >= 1, "{stats}");
    let (st, _) = call(&s, "GET", "/v1/sandboxes/nope/stats", TOKEN, None).await;
    assert_eq!(st, 404);

    // The key is in no log line, in any form.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log_text();
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TOKEN);
    assert!(
        log.contains("/v1/sandboxes/uiws/pty"),
        "the requests are logged"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(&enc),
        "the token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_key_in_the_subprotocol_reaches_only_its_own_sandboxes() {
    if !privileged("server a_user_key_in_the_subprotocol_reaches_only_its_own_sandboxes") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Serve, &["--auth-token", TOKEN], &[]);
    let mut keys = Vec::new();
    for name in ["alice", "bob"] {
        let (st, user) = call(
            &s,
            "POST",
            "/api/admin/users",
            TOKEN,
            Some(json!({"name": name, "quota": {}})),
        )
        .await;
        assert_eq!(st, 201, "{user}");
        let id = user["id"].as_str().expect("id").to_string();
        let (st, key) = call(
            &s,
            "POST",
            &format!("/api/admin/users/{id}/apikeys"),
            TOKEN,
            Some(json!({"name": "console"})),
        )
        .await;
        assert_eq!(st, 201, "{key}");
        keys.push(key["key"].as_str().expect("key").to_string());
    }
    let (alice, bob) = (&keys[0], &keys[1]);
    let made = call(
        &s,
        "POST",
        "/v1/sandboxes",
        alice,
        Some(json!({"id": "uia"})),
    )
    .await;
    assert_eq!(made.0, 201, "{}", made.1);

    let (mut ws, chosen) = ws_with(&s, "/v1/sandboxes/uia/pty", Some(&subprotocols(alice)))
        .await
        .expect("alice reaches her sandbox");
    assert_eq!(chosen.as_deref(), Some("sqrx"));
    ws.send(Message::Binary(b"echo mine\n".to_vec().into()))
        .await
        .expect("type");
    screen_until(&mut ws, "mine").await;
    drop(ws);

    // Bob's key: the same 404 as a sandbox that does not exist, on the sockets and on stats.
    for path in [
        "/v1/sandboxes/uia/pty",
        "/v1/sandboxes/uia/exec/ws",
        "/v1/sandboxes/missing/pty",
    ] {
        let refused = ws_with(&s, path, Some(&subprotocols(bob))).await;
        assert_eq!(refused.err(), Some(404), "{path}");
    }
    let (st, _) = call(&s, "GET", "/v1/sandboxes/uia/stats", bob, None).await;
    assert_eq!(st, 404);
    let (st, _) = call(&s, "GET", "/v1/sandboxes/uia/stats", alice, None).await;
    assert_eq!(st, 200);
    // A revoked-looking or unknown key: 401.
    let refused = ws_with(
        &s,
        "/v1/sandboxes/uia/pty",
        Some(&subprotocols("sqrx_unknown_key")),
    )
    .await;
    assert_eq!(refused.err(), Some(401));
    let log = s.log_text();
    assert!(
        !log.contains(alice.as_str()) && !log.contains(bob.as_str()),
        "a key leaked into the log"
    );
}
