//! `GET /v1/sandboxes/{id}/exec/ws`: the WebSocket exec stream.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &Server, id: &str) -> Ws {
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/sandboxes/{id}/exec/ws", s.addr))
            .await
            .expect("connect");
    ws
}

/// Everything the server sends until it closes: (stdout, stderr, text frames).
async fn drain(ws: &mut Ws) -> (Vec<u8>, Vec<u8>, Vec<Value>) {
    let (mut out, mut err, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time");
        match next {
            Some(Ok(Message::Binary(b))) => match b.first() {
                Some(1) => out.extend_from_slice(&b[1..]),
                Some(2) => err.extend_from_slice(&b[1..]),
                other => panic!("unknown stream tag {other:?}"),
            },
            Some(Ok(Message::Text(t))) => {
                texts.push(serde_json::from_str(t.as_str()).expect("JSON frame"))
            }
            Some(Ok(Message::Close(_))) | None => return (out, err, texts),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_stream_with_stdin() {
    if !privileged("server exec_stream_with_stdin") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();
    create(&c, &s, "ws").await;

    // Interactive: each line sent comes back before the next is sent.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text(
        json!({"command": "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; exit 5"})
            .to_string()
            .into(),
    ))
    .await
    .expect("send request");
    let started = ws.next().await.expect("frame").expect("ok");
    let started: Value = serde_json::from_str(started.to_text().expect("text")).expect("json");
    assert_eq!(started["type"], "started");
    assert!(started["pid"].as_i64().is_some_and(|p| p > 0));
    let mut stderr = Vec::new();
    for (i, line) in ["one", "two"].iter().enumerate() {
        if i == 0 {
            ws.send(Message::Binary(format!("{line}\n").into_bytes().into()))
                .await
                .expect("stdin");
        } else {
            ws.send(Message::Text(
                json!({"type": "stdin", "data": format!("{line}\n")})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("stdin");
        }
        // Wait for the echo of this line on stdout.
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            match ws.next().await.expect("frame").expect("ok") {
                Message::Binary(b) if b.first() == Some(&1) => got.extend_from_slice(&b[1..]),
                Message::Binary(b) => stderr.extend_from_slice(&b[1..]),
                _ => {}
            }
        }
        assert_eq!(String::from_utf8_lossy(&got), format!("got {line}\n"));
    }
    ws.send(Message::Text(json!({"type": "eof"}).to_string().into()))
        .await
        .expect("eof");
    let (_, err, texts) = drain(&mut ws).await;
    stderr.extend_from_slice(&err);
    assert_eq!(String::from_utf8_lossy(&stderr), "err one\nerr two\n");
    let exit = texts.last().expect("exit frame");
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["exit_code"], 5);
    assert_eq!(exit["timed_out"], false);

    // stdin false: /dev/null, so cat ends at once.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text(
        json!({"command": ["cat"], "stdin": false})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let (out, _, texts) = drain(&mut ws).await;
    assert!(out.is_empty());
    assert_eq!(texts.last().map(|t| t["exit_code"].clone()), Some(json!(0)));

    // Timeouts reach the client as an exit frame.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text(
        json!({"command": "echo start; sleep 30", "timeout": 0.5})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let (out, _, texts) = drain(&mut ws).await;
    assert_eq!(out, b"start\n");
    assert_eq!(
        texts.last().map(|t| t["timed_out"].clone()),
        Some(json!(true))
    );

    // A bad first message is answered with an error frame and a close.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text("{\"command\": 5}".into()))
        .await
        .expect("send");
    let (_, _, texts) = drain(&mut ws).await;
    assert_eq!(texts[0]["type"], "error");
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Binary(b"raw".to_vec().into()))
        .await
        .expect("send");
    let (_, _, texts) = drain(&mut ws).await;
    assert_eq!(texts[0]["type"], "error");
    // A program that does not exist fails the exec.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text(
        json!({"command": ["/nope"]}).to_string().into(),
    ))
    .await
    .expect("send");
    let (_, _, texts) = drain(&mut ws).await;
    assert_eq!(texts[0]["type"], "error");

    // Closing the socket kills the exec's processes.
    let mut ws = connect(&s, "ws").await;
    ws.send(Message::Text(
        json!({"command": "sleep 1000"}).to_string().into(),
    ))
    .await
    .expect("send");
    let _started = ws.next().await;
    drop(ws);
    let mut gone = false;
    for _ in 0..100 {
        let ps = exec(&c, &s, "ws", "ps -eo args").await;
        if !ps["stdout"].as_str().unwrap_or("").contains("sleep 1000") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the exec outlived its websocket");

    // HTTP errors before the upgrade.
    assert_error(
        &get(&c, s.url("/v1/sandboxes/ghost/exec/ws")).await,
        400,
        "",
    );
    let e = tokio_tungstenite::connect_async(format!("ws://{}/v1/sandboxes/ghost/exec/ws", s.addr))
        .await;
    match e {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}
