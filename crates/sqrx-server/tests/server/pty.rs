//! `GET /v1/sandboxes/{id}/pty`: a shell on a terminal over a WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;
use crate::services::*;

/// Read terminal output into `screen` until it contains `needle`.
async fn wait_for(ws: &mut Ws, screen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !screen.contains(needle) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no {needle:?} on the screen: {screen:?}"),
            Ok(Some(Ok(Message::Binary(b)))) => screen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("waiting for {needle:?}: {other:?}; screen {screen:?}"),
        }
    }
}

async fn typed(ws: &mut Ws, text: &str) {
    ws.send(Message::Binary(text.as_bytes().to_vec().into()))
        .await
        .expect("type");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_on_a_terminal() {
    if !privileged("server a_shell_on_a_terminal") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();
    create(&c, &s, "tty").await;

    let mut ws = ws_connect(&s, "/v1/sandboxes/tty/pty?cols=80&rows=24").await;
    let mut screen = String::new();
    typed(&mut ws, "echo $((6*7))\n").await;
    wait_for(&mut ws, &mut screen, "42").await;
    typed(&mut ws, "stty size; readlink /proc/self/fd/0\n").await;
    wait_for(&mut ws, &mut screen, "24 80").await;
    wait_for(&mut ws, &mut screen, "/dev/pts/").await;
    ws.send(Message::Text(
        json!({"type": "resize", "cols": 132, "rows": 43})
            .to_string()
            .into(),
    ))
    .await
    .expect("resize");
    ws.send(Message::Text(
        json!({"type": "input", "data": "stty size\n"})
            .to_string()
            .into(),
    ))
    .await
    .expect("type");
    wait_for(&mut ws, &mut screen, "43 132").await;
    typed(&mut ws, "exit 3\n").await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(f)))) => break f,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(closed.code, CloseCode::Normal);
    assert_eq!(closed.reason.as_str(), "exited with code 3");

    // Leaving kills the shell and its foreground job (the terminal's controlling process
    // goes, so the kernel hangs up the foreground process group).
    let mut ws = ws_connect(&s, "/v1/sandboxes/tty/pty").await;
    let mut screen = String::new();
    typed(&mut ws, "echo started; sleep 1000\n").await;
    wait_for(&mut ws, &mut screen, "started\r\n").await;
    drop(ws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = exec(
            &c,
            &s,
            "tty",
            "cat /proc/[0-9]*/comm | grep -x sleep || true",
        )
        .await;
        if r["stdout"] == "" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the terminal's processes outlived it: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Errors come over HTTP, before the upgrade.
    let missing =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/sandboxes/nope/pty", s.addr)).await;
    match missing {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("{other:?}"),
    }
    assert_error(&get(&c, s.url("/v1/sandboxes/tty/pty")).await, 400, "");
    let zero =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/sandboxes/tty/pty?cols=0", s.addr))
            .await;
    match zero {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("{other:?}"),
    }
}
