//! Sessions over HTTP: `POST /v1/try`, the relayed WebSocket `/{session_id}/ws`, TTL expiry,
//! stop by token, status, limits and errors, and which routes need the bearer token.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;
use crate::services::*;

/// A time from the API: RFC 3339 with fractional seconds and `+00:00`, as squarex writes it.
#[track_caller]
fn time_of(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with("+00:00"), "{s} lacks the +00:00 offset");
    assert!(s.contains('.'), "{s} lacks fractional seconds");
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Open a session; returns the response body.
async fn open(c: &reqwest::Client, s: &Server, body: Option<Value>) -> Value {
    let req = c.post(s.url("/v1/try"));
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let got = send(req).await;
    assert_eq!(got.0, 201, "{}", got.1);
    got.1
}

/// The path of the session's WebSocket, from the `session` field.
#[track_caller]
fn ws_path(s: &Server, session: &Value) -> String {
    let address = session["session"].as_str().expect("session address");
    let path = address
        .strip_prefix(s.addr.as_str())
        .unwrap_or_else(|| panic!("{address} does not start with the Host {}", s.addr));
    let id = session["session_id"].as_str().expect("id");
    assert_eq!(path, format!("/{id}/ws"));
    path.to_string()
}

/// Read until the server closes; returns the close frame's code and reason.
async fn until_closed(ws: &mut Ws, limit: Duration) -> (CloseCode, String) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("not closed within {limit:?}"),
            Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code, f.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) => panic!("closed without a reason"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("websocket error before the close frame: {e}"),
            Ok(None) => panic!("connection dropped without a close frame"),
        }
    }
}

/// Sandboxes the server lists.
async fn sandboxes(c: &reqwest::Client, s: &Server) -> Vec<String> {
    let got = get(c, s.url("/v1/sandboxes")).await;
    got.1
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Wait (5 s at most) until the server lists no sandbox.
async fn until_no_sandboxes(c: &reqwest::Client, s: &Server) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !sandboxes(c, s).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the sandbox stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_a_thousand_messages_through_a_session() {
    if !privileged("server echo_a_thousand_messages_through_a_session") {
        return;
    }
    let data = DataDir::new();
    python_layer(&data);
    let config = ConfigFile::new(&python_template("echo", WS_ECHO_PY, 9000, 300));
    let s = Server::start_with(&data, Binary::Server, &["--config", config.path()], &[]);
    let c = client();

    // The built-in template: frames from the info service inside the sandbox.
    let info = open(&c, &s, None).await;
    let mut ws = ws_connect(&s, &ws_path(&s, &info)).await;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("frame");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    let id = info["session_id"].as_str().expect("id");
    assert_eq!(first["hostname"], format!("session-{id}"));
    assert_eq!(first["layers"], json!(["000-base"]));
    assert!(
        first["uptime_s"].is_u64() && first["limits"].is_object(),
        "{first}"
    );
    let created = time_of(&info["created_at"]);
    let started = time_of(&info["started_at"]);
    let till = time_of(&info["valid_till"]);
    assert!(created <= started && started < till);
    assert_eq!((till - created).num_seconds(), 600, "the default ttl");
    let _ = ws.close(None).await;

    // The echo template: 1,000 messages, text and binary, up to 1 MiB, back in order.
    let echo = open(&c, &s, Some(json!({"template": "echo", "ttl": 120}))).await;
    let ws = ws_connect(&s, &ws_path(&s, &echo)).await;
    let (mut tx, mut rx) = ws.split();
    let message = |i: usize| -> Message {
        let len = match i % 100 {
            0 => 1 << 20,
            1 => 65_536,
            2 => 65_535,
            3 => 126,
            4 => 125,
            5 => 0,
            _ => (i * 7919) % 20_000,
        };
        let body: Vec<u8> = (0..len).map(|k| b'a' + ((i + k) % 26) as u8).collect();
        if i.is_multiple_of(2) {
            Message::Binary(body.into())
        } else {
            Message::Text(String::from_utf8(body).expect("ascii").into())
        }
    };
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            tx.send(message(i)).await.expect("send");
        }
        tx
    });
    for i in 0..1000 {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.next())
            .await
            .unwrap_or_else(|_| panic!("echo {i} did not come back"))
            .expect("open")
            .expect("frame");
        let want = message(i);
        assert!(
            got == want,
            "message {i}: got {} bytes ({}), want {} bytes ({})",
            got.len(),
            if got.is_text() { "text" } else { "binary" },
            want.len(),
            if want.is_text() { "text" } else { "binary" },
        );
    }
    // Ping and pong pass both ways: the service answers our ping.
    let mut tx = sender.await.expect("sender");
    tx.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => {}
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("pong in time");
    assert_eq!(&pong[..], b"are you there");
    // A close from the client reaches the service, whose close comes back.
    tx.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        },
    )))
    .await
    .expect("close");
    let mut ws = tx.reunite(rx).expect("reunite");
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;

    for session in [&info, &echo] {
        let token = session["termination_token"].as_str().expect("token");
        let got = post(&c, s.url(&format!("/v1/stop/{token}")), json!({})).await;
        assert_eq!(got.0, 200, "{}", got.1);
    }
    assert!(sandboxes(&c, &s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_expires_at_its_ttl() {
    if !privileged("server a_session_expires_at_its_ttl") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();

    let session = open(&c, &s, Some(json!({"ttl": 3}))).await;
    let id = session["session_id"].as_str().expect("id").to_string();
    let till = time_of(&session["valid_till"]);
    assert_eq!(
        (till - time_of(&session["created_at"])).num_milliseconds(),
        3000
    );
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(status.0, 200);
    assert_eq!(
        status.1,
        json!({"session_id": id, "status": "running", "valid_till": session["valid_till"]})
    );
    let mut ws = ws_connect(&s, &ws_path(&s, &session)).await;
    assert_eq!(
        metric(&c, &s, "sqrx_websockets_open{kind=\"session\"}").await,
        1.0
    );

    let (code, reason) = until_closed(&mut ws, Duration::from_secs(10)).await;
    let late = chrono::Utc::now().fixed_offset() - till;
    assert_eq!(code, CloseCode::Normal);
    assert_eq!(reason, "session expired");
    assert!(
        late < chrono::Duration::milliseconds(1000),
        "closed {late} after valid_till"
    );
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(status.1["status"], "expired");

    // The sandbox is gone, and nothing is left behind.
    until_no_sandboxes(&c, &s).await;
    let gone = get(&c, s.url(&format!("/v1/sandboxes/session-{id}"))).await;
    assert_error(&gone, 404, "not found");
    assert_eq!(metric(&c, &s, "sqrx_sessions_active").await, 0.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open_ws = metric(&c, &s, "sqrx_websockets_open{kind=\"session\"}").await;
        let mounts = mounts_under(&data);
        if open_ws == 0.0 && mounts.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {open_ws} relays, mounts {mounts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An ended session's endpoint answers 404 over HTTP.
    let again = tokio_tungstenite::connect_async(format!("ws://{}/{id}/ws", s.addr)).await;
    match again {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("an expired session accepted a WebSocket: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_by_token_limits_errors_and_auth() {
    if !privileged("server stop_by_token_limits_errors_and_auth") {
        return;
    }
    let data = DataDir::new();
    let config = ConfigFile::new("[sessions]\nmax_sessions = 1\nmax_ttl = 900\n");
    let token = "sessions-token";
    let s = Server::start_with(
        &data,
        Binary::Serve,
        &[
            "--config",
            config.path(),
            "--public-host",
            "sandbox.example:443",
        ],
        &[("SQRX_AUTH_TOKEN", token)],
    );
    let c = client();

    // Opening needs the token; the session's own routes carry their capability instead.
    let refused = send(c.post(s.url("/v1/try"))).await;
    assert_error(&refused, 401, "unauthorized");
    let got = send(c.post(s.url("/v1/try")).bearer_auth(token)).await;
    assert_eq!(got.0, 201, "{}", got.1);
    let session = got.1;
    let id = session["session_id"].as_str().expect("id").to_string();
    let stop_token = session["termination_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(session["session"], format!("sandbox.example:443/{id}/ws"));
    assert_eq!(stop_token.len(), 32);
    assert_ne!(stop_token, id);

    // Limits and invalid requests.
    let limit = send(c.post(s.url("/v1/try")).bearer_auth(token)).await;
    assert_error(&limit, 429, "limit");
    for (body, status, needle) in [
        (json!({"template": "nope"}), 404, "nope"),
        (json!({"ttl": 0}), 400, "ttl"),
        (json!({"ttl": -5}), 400, "ttl"),
        (json!({"ttl": 901}), 400, "ttl"),
        (json!({"ttl": "long"}), 400, "invalid"),
        (json!({"tll": 3}), 400, "unknown field"),
    ] {
        let got = send(c.post(s.url("/v1/try")).bearer_auth(token).json(&body)).await;
        assert_error(&got, status, needle);
    }
    let got = send(
        c.post(s.url("/v1/try"))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_error(&got, 415, "application/json");

    let mut ws = ws_connect(&s, &format!("/{id}/ws")).await;
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("frame in time");
    assert!(matches!(frame, Some(Ok(Message::Text(_)))), "{frame:?}");

    // A wrong token: 404, and the session runs on.
    let wrong = "0".repeat(32);
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let got = send(c.request(method, s.url(&format!("/v1/stop/{wrong}")))).await;
        assert_error(&got, 404, "not found");
    }
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(status.1["status"], "running");
    assert_error(
        &get(&c, s.url("/v1/status/ffffffffffffffffffffffffffffffff")).await,
        404,
        "not found",
    );
    let frame = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("still streaming after a wrong token");
    assert!(matches!(frame, Some(Ok(Message::Text(_)))), "{frame:?}");
    let listed = send(c.get(s.url("/v1/sandboxes")).bearer_auth(token)).await;
    assert_eq!(listed.1.as_array().map(Vec::len), Some(1));

    // Extend by token (no bearer needed): valid_till moves by the seconds asked, never past
    // max_ttl from creation; bad bodies and unknown tokens change nothing.
    let till = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["valid_till"].as_str().expect("valid_till"))
            .expect("rfc3339")
    };
    let before = till(&get(&c, s.url(&format!("/v1/status/{id}"))).await.1);
    let extended = post(
        &c,
        s.url(&format!("/v1/extend/{stop_token}")),
        json!({"seconds": 60}),
    )
    .await;
    assert_eq!(extended.0, 200, "{}", extended.1);
    assert_eq!(extended.1["status"], "running");
    assert_eq!((till(&extended.1) - before).num_seconds(), 60);
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(till(&status.1), till(&extended.1));
    let created =
        chrono::DateTime::parse_from_rfc3339(session["created_at"].as_str().expect("created_at"))
            .expect("rfc3339");
    let capped = post(
        &c,
        s.url(&format!("/v1/extend/{stop_token}")),
        json!({"seconds": 86400}),
    )
    .await;
    assert_eq!(capped.0, 200, "{}", capped.1);
    assert_eq!(
        (till(&capped.1) - created).num_seconds(),
        900,
        "capped at max_ttl"
    );
    for (path, body, status, needle) in [
        (
            format!("/v1/extend/{wrong}"),
            json!({"seconds": 5}),
            404,
            "not found",
        ),
        (
            format!("/v1/extend/{stop_token}"),
            json!({"seconds": 0}),
            400,
            "seconds",
        ),
        (
            format!("/v1/extend/{stop_token}"),
            json!({"seconds": "x"}),
            400,
            "invalid",
        ),
        (
            format!("/v1/extend/{stop_token}"),
            json!({"secs": 5}),
            400,
            "unknown field",
        ),
    ] {
        assert_error(&post(&c, s.url(&path), body).await, status, needle);
    }
    assert_eq!(
        till(&get(&c, s.url(&format!("/v1/status/{id}"))).await.1),
        till(&capped.1)
    );

    // Stop: the client is told, the sandbox goes; stopping again is fine.
    let stopped = send(c.delete(s.url(&format!("/v1/stop/{stop_token}")))).await;
    assert_eq!(stopped.0, 200, "{}", stopped.1);
    assert_eq!(stopped.1["status"], "stopped");
    let (code, reason) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Normal, "session stopped")
    );
    assert_error(
        &post(
            &c,
            s.url(&format!("/v1/extend/{stop_token}")),
            json!({"seconds": 5}),
        )
        .await,
        400,
        "ended",
    );
    let again = send(c.post(s.url(&format!("/v1/stop/{stop_token}")))).await;
    assert_eq!(again.0, 200);
    assert_eq!(again.1["status"], "stopped");
    let listed = send(c.get(s.url("/v1/sandboxes")).bearer_auth(token)).await;
    assert_eq!(listed.1, json!([]));
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(status.1["status"], "stopped");

    // The slot is free again; the Host header names the session when no public host is set
    // (checked in the other tests).
    let got = send(c.post(s.url("/v1/try")).bearer_auth(token)).await;
    assert_eq!(got.0, 201, "{}", got.1);
    let t = got.1["termination_token"].as_str().expect("token");
    assert_eq!(send(c.post(s.url(&format!("/v1/stop/{t}")))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_outlive_a_server_restart() {
    if !privileged("server sessions_outlive_a_server_restart") {
        return;
    }
    let data = DataDir::new();
    let mut s = Server::start(&data);
    let c = client();
    let kept = open(&c, &s, Some(json!({"ttl": 120}))).await;
    let id = kept["session_id"].as_str().expect("id").to_string();
    let token = kept["termination_token"]
        .as_str()
        .expect("token")
        .to_string();
    let extended = post(
        &c,
        s.url(&format!("/v1/extend/{token}")),
        json!({"seconds": 30}),
    )
    .await;
    assert_eq!(extended.0, 200, "{}", extended.1);
    let stopped = open(&c, &s, None).await;
    let stopped_id = stopped["session_id"].as_str().expect("id").to_string();
    let stop = send(c.post(s.url(&format!(
        "/v1/stop/{}",
        stopped["termination_token"].as_str().expect("token")
    ))))
    .await;
    assert_eq!(stop.0, 200, "{}", stop.1);

    s.sigterm();
    let status = s
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", s.log_text());

    // The next server on the data directory knows both sessions as they were.
    let s = Server::start(&data);
    let status = get(&c, s.url(&format!("/v1/status/{id}"))).await;
    assert_eq!(
        status.1,
        json!({"session_id": id, "status": "running", "valid_till": extended.1["valid_till"]}),
    );
    let status = get(&c, s.url(&format!("/v1/status/{stopped_id}"))).await;
    assert_eq!(status.1["status"], "stopped");
    assert_eq!(metric(&c, &s, "sqrx_sessions_active").await, 1.0);
    // Its WebSocket serves again, and its token still ends it.
    let mut ws = ws_connect(&s, &format!("/{id}/ws")).await;
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("frame");
    let info: Value = serde_json::from_str(frame.to_text().expect("text")).expect("json");
    assert_eq!(info["hostname"], format!("session-{id}"));
    let stop = send(c.delete(s.url(&format!("/v1/stop/{token}")))).await;
    assert_eq!(stop.0, 200, "{}", stop.1);
    let (code, reason) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Normal, "session stopped")
    );
    until_no_sandboxes(&c, &s).await;
}
