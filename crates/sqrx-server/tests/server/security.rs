//! The server's own defences (issue 14, items 7 and 8): the `Host` allow-list on every path
//! that serves requests (router, proxy direct path, proxy relay), the `Origin` check on every
//! WebSocket upgrade, no unauthenticated non-loopback listener, default limits and maxima for
//! HTTP clients, and request logs without tokens or sandbox environment values.
//!
//! Each check is made so that it fails without the defence: the refused requests would
//! otherwise reach their handler and get its answer (404 for an unknown sandbox or session,
//! 200 for a script), and the secrets would be in the log.

use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A raw request to `s` for `path` with these extra header lines: the status and the JSON
/// body. The connection stays open both ways until the server closes it (a client that
/// half-closes may see hyper drop the connection before it answers).
async fn raw_get(
    s: &Server,
    version: &str,
    path: &str,
    headers: &[&str],
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = format!("GET {path} {version}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut sock = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    sock.write_all(head.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response to {path} {headers:?}: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    };
    (status, body)
}

/// The headers of a WebSocket upgrade, with `origin` when given.
fn upgrade_headers(host: &str, origin: Option<&str>) -> Vec<String> {
    let mut h = vec![
        format!("Host: {host}"),
        "Upgrade: websocket".to_string(),
        "Connection: Upgrade".to_string(),
        "Sec-WebSocket-Version: 13".to_string(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string(),
    ];
    if let Some(o) = origin {
        h.push(format!("Origin: {o}"));
    }
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_hosts_are_refused_on_every_path() {
    if !privileged("server foreign_hosts_are_refused_on_every_path") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &[
            "--no-bootstrap",
            "--allowed-host",
            "sandbox.example.com",
            "--allowed-host",
            "*.apps.example.com",
        ],
        &[],
    );
    let port = s.addr.rsplit(':').next().expect("port").to_string();
    // (HTTP version, path, what answers it when the Host passes)
    let paths = [
        // The router.
        ("HTTP/1.1", "/v1/health", 200),
        ("HTTP/1.1", "/v1/sandboxes/nosuch", 404),
        ("HTTP/1.1", "/nosuch-route", 404),
        // The proxy's relay (plain HTTP/1.1 on a connection the server reads itself).
        ("HTTP/1.1", "/proxy/nosuch/80/x", 404),
        // The proxy's direct path (HTTP/1.0 goes to hyper, then straight to the proxy).
        ("HTTP/1.0", "/proxy/nosuch/80/x", 404),
        // The router's proxy routes (percent-encoded ids).
        ("HTTP/1.1", "/proxy/no%2Dsuch/80/x", 404),
        // Session routes.
        (
            "HTTP/1.1",
            "/v1/status/0123456789abcdef0123456789abcdef",
            404,
        ),
    ];
    for (version, path, passes) in paths {
        for bad in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            "localhost.evil.example".to_string(),
            "127.0.0.1.nip.io".to_string(),
            "apps.example.com".to_string(),
        ] {
            let got = raw_get(&s, version, path, &[&format!("Host: {bad}")]).await;
            assert_error(&got, 403, "not allowed");
            assert!(
                got.1["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("DNS rebinding"),
                "{got:?}"
            );
        }
        for good in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            "localhost".to_string(),
            "127.8.9.10".to_string(),
            format!("[::1]:{port}"),
            "sandbox.example.com".to_string(),
            "SANDBOX.example.com:443".to_string(),
            "a.apps.example.com".to_string(),
        ] {
            let got = raw_get(&s, version, path, &[&format!("Host: {good}")]).await;
            assert_eq!(got.0, passes, "{version} {path} Host {good}: {:?}", got.1);
        }
    }
    // An ordinary client (reqwest sends Host: 127.0.0.1:PORT) is unaffected.
    let c = client();
    assert_eq!(get(&c, s.url("/v1/health")).await.0, 200);
    // The refusals are counted and logged like any other answer.
    let text = metrics_text(&c, &s).await;
    assert!(
        text.lines()
            .any(|l| l.contains("status=\"403\"") || l.contains("code=\"403\"")),
        "no 403 in the metrics:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_websockets_are_refused() {
    if !privileged("server cross_site_websockets_are_refused") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &["--no-bootstrap", "--allowed-host", "app.example.com"],
        &[],
    );
    let host = s.addr.clone();
    // Every WebSocket route; none of these exists, so a request the check lets through gets
    // the handler's 404.
    let routes = [
        ("HTTP/1.1", "/v1/sandboxes/nosuch/exec/ws"),
        ("HTTP/1.1", "/v1/sandboxes/nosuch/pty"),
        ("HTTP/1.1", "/0123456789abcdef0123456789abcdef/ws"),
        // The proxy: upgrades leave the relay for hyper and the direct path...
        ("HTTP/1.1", "/proxy/nosuch/80/socket"),
        // ...or the router's proxy routes.
        ("HTTP/1.1", "/proxy/no%2Dsuch/80/socket"),
    ];
    for (version, path) in routes {
        for bad in [
            "http://evil.example",
            "https://evil.example:443",
            "null",
            "http://localhost.evil.example",
            "http://app.example.com.evil.example",
        ] {
            let headers = upgrade_headers(&host, Some(bad));
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let got = raw_get(&s, version, path, &headers).await;
            assert_error(&got, 403, "cross-site WebSocket");
        }
        for good in [
            None,
            Some(format!("http://{host}")),
            Some("http://localhost".to_string()),
            Some("https://app.example.com".to_string()),
        ] {
            let headers = upgrade_headers(&host, good.as_deref());
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let got = raw_get(&s, version, path, &headers).await;
            assert_eq!(got.0, 404, "{path} Origin {good:?}: {:?}", got.1);
        }
    }
    // A foreign Origin on a request that is not an upgrade is not this check's business.
    let got = raw_get(
        &s,
        "HTTP/1.1",
        "/v1/health",
        &[&format!("Host: {host}"), "Origin: http://evil.example"],
    )
    .await;
    assert_eq!(got.0, 200);
}

/// Run `sqrx-server` with `args` for a few seconds: its output when it was still running
/// (then stopped with SIGTERM), or its exit code and stderr when it exited by itself.
fn start_or_exit(data: &DataDir, args: &[&str]) -> Result<String, (i32, String)> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sqrx-server"));
    for k in [
        "SQRX_AUTH_TOKEN",
        "SQUASH_AUTH_TOKEN",
        "SQRX_INSECURE_NO_AUTH",
        "SQRX_LISTEN",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("SQRX_LOG", "info")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--no-bootstrap")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the server");
    let pid = out.id();
    let waited = std::thread::spawn(move || out.wait_with_output());
    // A server that starts keeps running: give it a moment, then stop it.
    std::thread::sleep(Duration::from_secs(3));
    if !waited.is_finished() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        );
        let output = waited.join().expect("join").expect("output");
        return Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let output = waited.join().expect("join").expect("output");
    Err((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn exposed_listener_needs_a_token() {
    if !privileged("server exposed_listener_needs_a_token") {
        return;
    }
    let data = DataDir::new();
    // Every address but loopback, without a token: refused before anything is opened.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let Err((code, stderr)) = start_or_exit(&data, &["--listen", listen]) else {
            panic!("{listen} without a token was served");
        };
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains("refusing to listen") && stderr.contains("--insecure-no-auth"),
            "{stderr}"
        );
    }
    // Loopback needs nothing; any address with a token is fine.
    for args in [
        &["--listen", "127.0.0.1:0"][..],
        &["--listen", "0.0.0.0:0", "--auth-token", "t0ken"],
    ] {
        let started = start_or_exit(&data, args);
        assert!(started.is_ok(), "{args:?}: {:?}", started.err());
    }
    // The explicit opt-out starts, and says so loudly.
    let log = start_or_exit(&data, &["--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .unwrap_or_else(|e| panic!("--insecure-no-auth refused: {e:?}"));
    assert!(log.contains("INSECURE"), "{log}");
}

/// A config file with `text` for the life of the returned handle.
fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .prefix("sqrx-test-config-")
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn request_maxima_are_refused_not_clamped() {
    if !privileged("server request_maxima_are_refused_not_clamped") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--no-bootstrap"], &[]);
    let c = client();
    // Defaults: 16 GiB of upper, 512 MiB of JavaScript heap, 60 s of JavaScript, 16 MiB of
    // exec output.
    let got = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "big", "upper_mb": 16 * 1024 + 1}),
    )
    .await;
    assert_error(&got, 400, "limits.max_upper_mb");
    let js = s.url("/v1/execute");
    let got = post(&c, js.clone(), json!({"code": "1", "memory_mb": 513})).await;
    assert_error(&got, 400, "limits.max_js_memory_mb");
    let got = post(&c, js.clone(), json!({"code": "1", "memory_mb": 512})).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = post(&c, js.clone(), json!({"code": "1", "timeout_ms": 60_001})).await;
    assert_error(&got, 400, "limits.max_js_timeout_ms");
    let got = post(
        &c,
        s.url("/v1/sandboxes/nosuch/exec"),
        json!({"command": "true", "output_cap": (16 << 20) + 1}),
    )
    .await;
    assert_error(&got, 400, "limits.max_output_cap");
    let got = post(
        &c,
        s.url("/v1/sandboxes/nosuch/exec"),
        json!({"command": "true", "output_cap": 16 << 20}),
    )
    .await;
    assert_eq!(got.0, 404, "within the cap the request goes on: {}", got.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_get_default_limits_and_reads_a_maximum() {
    if !privileged("server sandboxes_get_default_limits_and_reads_a_maximum") {
        return;
    }
    let data = DataDir::new();
    let config = config_file(
        "[limits]\ndefault_cpu = 1.5\ndefault_memory_mb = 300\ndefault_pids_max = 200\n\
         max_upper_mb = 1024\nmax_output_cap = 4096\nmax_file_read_bytes = 10000\n\
         max_ws_message_bytes = 65536\n",
    );
    let config_path = config.path().to_str().expect("utf-8 path").to_string();
    let s = Server::start_with(&data, Binary::Server, &["--config", &config_path], &[]);
    let c = client();

    // A create that sets no limits gets the server's defaults.
    let made = create(&c, &s, "lim").await;
    assert_eq!(made["cpu"], 1.5, "{made}");
    assert_eq!(made["memory_mb"], 300, "{made}");
    assert_eq!(made["pids_max"], 200, "{made}");
    // Limits the request sets are kept.
    let own = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "own", "cpu": 0.5, "memory_mb": 128, "pids_max": 64, "upper_mb": 1024}),
    )
    .await;
    assert_eq!(own.0, 201, "{}", own.1);
    assert_eq!(
        (
            &own.1["cpu"],
            &own.1["memory_mb"],
            &own.1["pids_max"],
            &own.1["upper_mb"]
        ),
        (&json!(0.5), &json!(128), &json!(64), &json!(1024))
    );
    let over = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "over", "upper_mb": 1025}),
    )
    .await;
    assert_error(&over, 400, "1024 MiB");
    // A file over the read maximum is a 413 naming it; one at the maximum is read.
    let exact = exec(
        &c,
        &s,
        "lim",
        "head -c 10000 /dev/zero > /tmp/ok && head -c 10001 /dev/zero > /tmp/big",
    )
    .await;
    assert_eq!(exact["exit_code"], 0, "{exact}");
    let ok = c
        .get(s.url("/v1/sandboxes/lim/files/tmp/ok"))
        .send()
        .await
        .expect("read");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.bytes().await.expect("bytes").len(), 10000);
    let big = get(&c, s.url("/v1/sandboxes/lim/files/tmp/big")).await;
    assert_error(&big, 413, "limits.max_file_read_bytes");

    // Exec output caps over the maximum are refused, over HTTP and over the WebSocket.
    let got = post(
        &c,
        s.url("/v1/sandboxes/lim/exec"),
        json!({"command": "true", "output_cap": 4097}),
    )
    .await;
    assert_error(&got, 400, "limits.max_output_cap");
    let url = format!("ws://{}/v1/sandboxes/lim/exec/ws", s.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    ws.send(Message::Text(
        json!({"command": "true", "output_cap": 4097})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("a frame in time");
    let text = match frame {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected an error frame, got {other:?}"),
    };
    assert!(text.contains("limits.max_output_cap"), "{text}");

    // WebSocket messages past the maximum end the connection with 1009 (message too big);
    // before the limit the server took them.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let padded = json!({"command": "true", "env": {"PAD": "x".repeat(70_000)}}).to_string();
    ws.send(Message::Text(padded.into())).await.expect("send");
    let mut closed_for_size = false;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        match frame {
            Ok(Message::Close(Some(f))) => {
                closed_for_size = u16::from(f.code) == 1009;
                assert!(
                    closed_for_size,
                    "closed with {} {:?}",
                    u16::from(f.code),
                    f.reason
                );
                break;
            }
            Ok(Message::Text(t)) => {
                assert!(!t.contains("\"exit\""), "the oversized request ran: {t}")
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(closed_for_size, "no 1009 close");
    // A message within the maximum still works.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let fits = json!({"command": "true", "env": {"PAD": "x".repeat(60_000)}}).to_string();
    ws.send(Message::Text(fits.into())).await.expect("send");
    let mut exited = false;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        if let Message::Text(t) = frame
            && t.contains("\"exit\"")
        {
            exited = true;
        }
    }
    assert!(exited, "a message within the maximum did not run");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_logs_hold_no_tokens_or_env_values() {
    if !privileged("server request_logs_hold_no_tokens_or_env_values") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &[], &[("SQRX_LOG", "debug")]);
    let c = client();
    let host = format!("Host: {}", s.addr);
    // Termination tokens, session ids and token-like query parameters on every path.
    let stop_token = "STOPTOKEN0123456789abcdef01234567";
    let extend_token = "EXTENDTOKEN0123456789abcdef012345";
    let session_id = "SESSIONID0123456789abcdef0123456";
    let _ = get(&c, s.url(&format!("/v1/stop/{stop_token}"))).await;
    let _ = post(&c, s.url(&format!("/v1/extend/{extend_token}")), json!({})).await;
    let _ = get(&c, s.url(&format!("/v1/status/{session_id}"))).await;
    let _ = get(&c, s.url("/v1/health?access_token=QUERYSECRET1")).await;
    // The relay, the direct path and the router's proxy routes.
    let _ = raw_get(
        &s,
        "HTTP/1.1",
        "/proxy/nosuch/80/lab?token=QUERYSECRET2",
        &[&host],
    )
    .await;
    let _ = raw_get(
        &s,
        "HTTP/1.0",
        "/proxy/nosuch/80/lab?token=QUERYSECRET3",
        &[&host],
    )
    .await;
    let _ = raw_get(
        &s,
        "HTTP/1.1",
        "/proxy/no%2Dsuch/80/?api_key=QUERYSECRET4",
        &[&host],
    )
    .await;
    let headers = upgrade_headers(&s.addr, None);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let _ = raw_get(
        &s,
        "HTTP/1.1",
        &format!("/{session_id}/ws?token=QUERYSECRET5"),
        &headers,
    )
    .await;

    // Sandbox environment values, at create and at exec.
    let made = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "logs", "env": {"CREATE_SECRET": "ENVSECRETCREATE"}}),
    )
    .await;
    assert_eq!(made.0, 201, "{}", made.1);
    let ran = post(
        &c,
        s.url("/v1/sandboxes/logs/exec"),
        json!({"command": "echo $CREATE_SECRET $EXEC_SECRET", "env": {"EXEC_SECRET": "ENVSECRETEXEC"}}),
    )
    .await;
    assert_eq!(
        ran.1["stdout"], "ENVSECRETCREATE ENVSECRETEXEC\n",
        "{}",
        ran.1
    );
    let _ = delete(&c, s.url("/v1/sandboxes/logs")).await;

    // Give the log a moment to be written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = s.log_text();
    assert!(log.contains("/v1/stop/[redacted]"), "{log}");
    assert!(log.contains("token=[redacted]"), "{log}");
    for secret in [
        stop_token,
        extend_token,
        session_id,
        "QUERYSECRET1",
        "QUERYSECRET2",
        "QUERYSECRET3",
        "QUERYSECRET4",
        "QUERYSECRET5",
        "ENVSECRETCREATE",
        "ENVSECRETEXEC",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
