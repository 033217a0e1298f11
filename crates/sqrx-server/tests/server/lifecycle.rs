//! Shutdown and restart: SIGTERM lets a running exec finish; sandboxes outlive the server and
//! the next server (on the same data directory) serves them.

use std::time::Duration;

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_long_exec_then_restart() {
    if !privileged("server sigterm_during_a_long_exec_then_restart") {
        return;
    }
    let data = DataDir::new();
    let mut s = Server::start(&data);
    let c = client();
    create(&c, &s, "keep").await;
    exec(&c, &s, "keep", "echo kept > /data.txt").await;

    let url = s.url("/v1/sandboxes/keep/exec");
    let long = tokio::spawn(async move {
        post(&client(), url, json!({"command": "sleep 2; echo finished"})).await
    });
    // Let the exec start, then ask the server to stop.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.sigterm();
    let r = long.await.expect("exec task");
    assert_eq!(r.0, 200, "the in-flight exec completes: {}", r.1);
    assert_eq!(r.1["stdout"], "finished\n");
    let status = s
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", s.log_text());
    assert!(
        c.get(s.url("/v1/health")).send().await.is_err(),
        "nothing listens any more"
    );

    // A new server (the other binary, port from SQUASH_PORT) finds the sandbox running.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let s2 = Server::start_with(
        &data,
        Binary::Serve,
        &[],
        &[("SQUASH_PORT", &port.to_string())],
    );
    assert_eq!(s2.addr, format!("127.0.0.1:{port}"));
    let info = get(&c, s2.url("/v1/sandboxes/keep")).await;
    assert_eq!(info.0, 200, "{}", info.1);
    assert_eq!(info.1["status"], "running");
    assert_eq!(
        exec(&c, &s2, "keep", "cat /data.txt").await["stdout"],
        "kept\n"
    );
    let logs = get(&c, s2.url("/v1/sandboxes/keep/logs")).await;
    assert_eq!(logs.1.as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_an_idle_server() {
    if !privileged("server sigint_stops_an_idle_server") {
        return;
    }
    let data = DataDir::new();
    let mut s = Server::start_with(&data, Binary::Server, &["--no-bootstrap"], &[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = s.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    assert!(s.log_text().contains("SIGINT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_is_refused() {
    if !privileged("server a_port_in_use_is_refused") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--no-bootstrap"], &[]);
    // A second server on the same port (its HTTP threads share their port with each other,
    // never with another process).
    let other = DataDir::new();
    let log = tempfile::NamedTempFile::new().expect("log");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_sqrx-server"))
        .args(["--no-bootstrap", "--listen", &s.addr, "--data-dir"])
        .arg(other.path())
        .env_remove("SQRX_AUTH_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("run");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second server started on {}", s.addr);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let err = std::fs::read_to_string(log.path()).expect("read log");
    assert!(
        err.contains("cannot listen on") && err.contains("in use"),
        "{err}"
    );
    // The first one still answers every request.
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, s.url("/v1/health")).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !privileged("server idle_connections_are_closed") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &["--no-bootstrap", "--idle-timeout", "1"],
        &[],
    );
    // Nothing sent; after an answer from the relay (a 404 keeps the connection); after an
    // answer from hyper; half a request head: each is closed about a second later.
    for sent in [
        "",
        "GET /proxy/nobox/80/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nHo",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(&s.addr)
            .await
            .expect("connect");
        tcp.write_all(sent.as_bytes()).await.expect("write");
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{sent:?}: still open after 10 s"))
            .expect("read");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
            "{sent:?}: closed after {waited:?}"
        );
        let got = String::from_utf8_lossy(&got);
        if sent.ends_with("\r\n\r\n") {
            assert!(got.starts_with("HTTP/1.1 "), "{sent:?}: {got}");
            assert!(
                !got.contains("connection: close"),
                "{sent:?} was answered with a close: {got}"
            );
        }
    }
}
