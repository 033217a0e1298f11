//! `/proxy/{sandbox_id}/{port}/...`: HTTP and WebSocket into services inside sandboxes.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqrx_testkit::privileged;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::services::*;

/// The header `name` as the service saw it (the first one), from the describing server.
fn seen<'a>(described: &'a Value, name: &str) -> Option<&'a str> {
    described["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_through_the_proxy() {
    if !privileged("server http_through_the_proxy") {
        return;
    }
    let data = DataDir::new();
    python_layer(&data);
    let token = "proxy-token";
    let s = Server::start_with(&data, Binary::Server, &[], &[("SQRX_AUTH_TOKEN", token)]);
    let c = client();
    let created = send(
        c.post(s.url("/v1/sandboxes"))
            .bearer_auth(token)
            .json(&json!({"id": "web", "layers": ["000-base", PY_LAYER]})),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);

    // The proxy is subject to the server's auth.
    let refused = send(c.get(s.url("/proxy/web/8000/"))).await;
    assert_error(&refused, 401, "unauthorized");
    let authed = || {
        reqwest::Client::builder()
            .no_proxy()
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {token}").parse().expect("header"),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .expect("client")
    };
    let c = authed();

    // A 50 MB file served by python3 -m http.server, byte-exact through the proxy.
    let big: Vec<u8> = {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..50_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    let want = hex::encode(Sha256::digest(&big));
    let put = send(
        c.put(s.url("/v1/sandboxes/web/files/srv/big.bin"))
            .body(big),
    )
    .await;
    assert!(put.0 == 200 || put.0 == 201 || put.0 == 204, "{put:?}");
    let started = post(
        &c,
        s.url("/v1/sandboxes/web/exec"),
        json!({"command": "python3 -m http.server 8000 --bind 127.0.0.1 --directory /srv >/tmp/http.log 2>&1 &"}),
    )
    .await;
    assert_eq!(started.0, 200, "{}", started.1);
    wait_for_port(&c, &s, "web", 8000).await;
    let t = Instant::now();
    let resp = c
        .get(s.url("/proxy/web/8000/big.bin"))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("50000000")
    );
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        len += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(len, 50_000_000);
    assert_eq!(hex::encode(hasher.finalize()), want, "the download differs");
    eprintln!("50 MB through the proxy in {:?}", t.elapsed());
    let listing = c
        .get(s.url("/proxy/web/8000/?C=N"))
        .send()
        .await
        .expect("listing");
    assert_eq!(listing.status(), 200);
    assert!(listing.text().await.expect("text").contains("big.bin"));

    // Requests as the service sees them: method, raw path and query, body streamed, hop-by-hop
    // headers gone, X-Forwarded-* added, our bearer token withheld.
    start_python(&c, &s, "web", HTTP_ECHO_PY, 8001).await;
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let upload_sha = hex::encode(Sha256::digest(&upload));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        upload.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let resp = c
        .post(s.url("/proxy/web/8001/a/b%20c/?x=1&y=%2F"))
        .header("x-custom", "kept")
        .header("te", "trailers")
        .header("x-forwarded-for", "203.0.113.9")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert!(headers.get("keep-alive").is_none() && headers.get("x-hop").is_none());
    let described: Value = resp.json().await.expect("json");
    assert_eq!(described["method"], "POST");
    assert_eq!(described["path"], "/a/b%20c/?x=1&y=%2F");
    assert_eq!(described["body_len"], 3_000_000);
    assert_eq!(described["body_sha256"], upload_sha);
    assert_eq!(seen(&described, "x-custom"), Some("kept"));
    assert_eq!(seen(&described, "te"), None);
    assert_eq!(seen(&described, "authorization"), None, "the token leaked");
    assert_eq!(
        seen(&described, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen(&described, "x-forwarded-host"), Some(s.addr.as_str()));
    assert_eq!(seen(&described, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen(&described, "x-forwarded-prefix"),
        Some("/proxy/web/8001")
    );
    assert_eq!(seen(&described, "host"), Some(s.addr.as_str()));
    // Keep-alive upstream: requests in a row reuse the connection into the sandbox.
    let mut peers = std::collections::BTreeSet::new();
    for i in 0..50 {
        let got = get(&c, s.url(&format!("/proxy/web/8001/n/{i}"))).await;
        assert_eq!(got.0, 200);
        assert_eq!(got.1["path"], format!("/n/{i}"));
        peers.insert(got.1["peer_port"].as_u64().expect("peer port"));
    }
    assert!(
        peers.len() <= 2,
        "50 requests took {} connections",
        peers.len()
    );
    // A percent-encoded sandbox id takes the router's way (which decodes it) to the same place.
    let got = get(&c, s.url("/proxy/w%65b/8001/enc")).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["path"], "/enc");
    // Proxied requests are counted under their route, both ways.
    let metrics = metrics_text(&c, &s).await;
    let counted = |line_start: &str| metric_in(&metrics, line_start);
    let deep = counted(
        "sqrx_http_requests_total{method=\"GET\",route=\"/proxy/{sandbox_id}/{port}/{*path}\",status=\"200\"}",
    );
    assert!(deep >= 52.0, "proxied GETs counted: {deep}\n{metrics}");
    let refused = counted(
        "sqrx_http_requests_total{method=\"GET\",route=\"/proxy/{sandbox_id}/{port}/\",status=\"401\"}",
    );
    assert_eq!(refused, 1.0, "the refused request counted: {metrics}");
    // No trailing slash: a redirect to the directory form.
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .get(s.url("/proxy/web/8001?q=1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/proxy/web/8001/?q=1");
    relayed_framings(&s, &c, token).await;

    // Errors.
    assert_error(&get(&c, s.url("/proxy/web/9/")).await, 502, "port 9");
    assert_error(&get(&c, s.url("/proxy/nobox/8000/")).await, 404, "nobox");
    assert_error(&get(&c, s.url("/proxy/web/0/")).await, 400, "port");
    assert_error(&get(&c, s.url("/proxy/web/http/")).await, 400, "port");
    // A paused sandbox refuses new connections (a pooled one would wait for the resume, as a
    // frozen server does).
    let paused = post(&c, s.url("/v1/sandboxes/web/pause"), json!({})).await;
    assert_eq!(paused.0, 200, "{}", paused.1);
    assert_error(&get(&c, s.url("/proxy/web/8002/x")).await, 409, "paused");
    let resumed = post(&c, s.url("/v1/sandboxes/web/resume"), json!({})).await;
    assert_eq!(resumed.0, 200, "{}", resumed.1);
    let deleted = send(c.delete(s.url("/v1/sandboxes/web"))).await;
    assert_eq!(deleted.0, 204);
    assert_error(&get(&c, s.url("/proxy/web/8001/")).await, 404, "web");
}

/// Write `requests` on one connection to the server and read until it closes (the last
/// request should say `Connection: close`): the whole transcript.
async fn transcript(s: &Server, requests: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    tcp.write_all(requests).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}

/// What follows the first `needle` in `text` (which must hold it).
fn past<'a>(text: &'a str, needle: &str, whole: &str) -> &'a str {
    match text.find(needle) {
        Some(at) => &text[at + needle.len()..],
        None => panic!("{needle:?} missing from what is left of:\n{whole}"),
    }
}

/// The response framings a reverse proxy must get right, on keep-alive and pipelined
/// connections, as raw bytes on the wire: chunked with trailers, HEAD, 204, interim 103,
/// a length a client tried to have dropped, a 401 that keeps the connection, a connection
/// that turns to API requests, a length beside a chunked coding, a refusal while the body
/// is still coming, a body ended by the service's close, `Expect`, and a pooled connection
/// the service closed.
async fn relayed_framings(s: &Server, c: &reqwest::Client, token: &str) {
    let auth = format!("Authorization: Bearer {token}\r\n");
    let requests = format!(
        "GET /proxy/web/8001/kind/chunked HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         HEAD /proxy/web/8001/head HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /proxy/web/8001/kind/empty HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /proxy/web/8001/kind/hints HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /proxy/web/8001/refused HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /proxy/web/8001/five HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: content-length\r\n\
         Content-Length: 5\r\n\r\nhello\
         GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n\
         GET /proxy/web/8001/last HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    );
    let whole = transcript(s, requests.as_bytes()).await;
    let rest = past(&whole, "HTTP/1.1 200 OK\r\n", &whole);
    let rest = past(rest, "Transfer-Encoding: chunked\r\n", &whole);
    let rest = past(rest, "Trailer: X-Sum", &whole);
    let rest = past(rest, "\r\n\r\n", &whole);
    let (body, rest) = rest.split_at(
        rest.find("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("no response after the chunked one:\n{whole}")),
    );
    assert_eq!(
        body, "6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\nX-Sum: 3\r\n\r\n",
        "{whole}"
    );
    // HEAD: the length of what a GET would get, and no body.
    let rest = past(rest, "HTTP/1.1 200 OK\r\n", &whole);
    let (head, rest) = rest.split_once("\r\n\r\n").expect("end of the HEAD head");
    assert!(head.contains("Content-Length: 42"), "{whole}");
    assert!(rest.starts_with("HTTP/1.1 204 No Content\r\n"), "{whole}");
    let rest = past(rest, "\r\n\r\n", &whole);
    assert!(rest.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{whole}");
    let rest = past(rest, "Link: </style.css>; rel=preload\r\n", &whole);
    let rest = past(rest, "HTTP/1.1 200 OK\r\n", &whole);
    let rest = past(rest, "\r\n\r\nhints", &whole);
    assert!(rest.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{whole}");
    let rest = past(rest, "\"unauthorized\"}", &whole);
    let rest = past(rest, "\"path\": \"/five\"", &whole);
    let rest = past(rest, "\"body_len\": 5,", &whole);
    // The API answers on the same connection, then the proxy again (the router's way).
    let rest = past(rest, "HTTP/1.1 200 OK\r\n", &whole);
    let rest = past(rest, "\"ok\"", &whole);
    let rest = past(rest, "HTTP/1.1 200 OK\r\n", &whole);
    past(rest, "\"path\": \"/last\"", &whole);

    // A length beside a transfer coding is dropped (whoever reads next would trust it).
    let whole = transcript(
        s,
        format!(
            "GET /proxy/web/8001/kind/both HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let (head, body) = whole.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Transfer-Encoding: chunked"), "{whole}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{whole}"
    );
    assert!(body.ends_with("0\r\nX-Sum: 3\r\n\r\n"), "{whole}");

    // Refused with a body on its way: the answer arrives whole, the connection is not reset
    // under the client's writes (the server reads the rest before closing).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(&s.addr)
            .await
            .expect("connect");
        let (mut rx, mut tx) = tcp.into_split();
        let writer = tokio::spawn(async move {
            let head = "POST /proxy/web/8001/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n";
            tx.write_all(head.as_bytes()).await?;
            for _ in 0..100 {
                tx.write_all(&[b'x'; 10_000]).await?;
            }
            tx.shutdown().await
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), rx.read_to_end(&mut got))
            .await
            .expect("the server kept the connection open")
            .expect("the connection was reset");
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{got}");
        assert!(
            got.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{got}"
        );
        writer
            .await
            .expect("writer")
            .expect("the body could not be written");
    }

    // A body that ends with the service's connection: the client's closes after it.
    let whole = transcript(
        s,
        format!("GET /proxy/web/8001/kind/close HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n")
            .as_bytes(),
    )
    .await;
    let head = whole.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{whole}"
    );
    assert!(whole.ends_with("\r\n\r\nuntil the end"), "{whole}");

    // Expect: 100-continue is served by hyper, which asks for the body.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(&s.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /proxy/web/8001/expect HTTP/1.1\r\nHost: localhost\r\n{auth}Expect: 100-continue\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut interim = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut interim))
            .await
            .expect("no 100 Continue")
            .expect("read");
        assert!(
            interim[..n].starts_with(b"HTTP/1.1 100 Continue\r\n"),
            "{}",
            String::from_utf8_lossy(&interim[..n])
        );
        tcp.write_all(b"abc").await.expect("body");
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.expect("read");
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.contains("\"body_len\": 3,"), "{rest}");
    }

    // The service closes a connection it said it would keep: the next requests still work.
    for path in ["kind/bye", "a", "kind/bye", "b", "c"] {
        let resp = c
            .get(s.url(&format!("/proxy/web/8001/{path}")))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            body == "bye" || body.contains(&format!("\"/{path}\"")),
            "{path}: {body}"
        );
    }
}

/// Echo one message on every connection and check it comes back.
async fn round(conns: &mut [Ws], round: usize) {
    for (i, ws) in conns.iter_mut().enumerate() {
        ws.send(Message::Text(format!("{round}:{i}").into()))
            .await
            .unwrap_or_else(|e| panic!("connection {i} is gone in round {round}: {e}"));
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap_or_else(|_| panic!("connection {i} is silent in round {round}"));
        match got {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("{round}:{i}")),
            other => panic!("connection {i} in round {round}: {other:?}"),
        }
    }
}

/// 500 WebSockets through the proxy to one sandbox's echo service stay connected and
/// responsive. Lasts `SQRX_WS_SOAK_SECS` (default 10; `benches/proxy/run.sh` runs it for 60)
/// and prints the server's memory.
#[tokio::test(flavor = "multi_thread")]
async fn websockets_through_the_proxy() {
    if !privileged("server websockets_through_the_proxy") {
        return;
    }
    let secs: u64 = std::env::var("SQRX_WS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let count: usize = std::env::var("SQRX_WS_SOAK_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let data = DataDir::new();
    python_layer(&data);
    let s = Server::start(&data);
    let c = client();
    python_sandbox(&c, &s, "echo").await;
    start_python(&c, &s, "echo", WS_ECHO_PY, 9000).await;
    let idle_rss = rss_kib(s.pid());

    // Binary and large messages, a ping, through the plain byte pipe.
    let mut one = ws_connect(&s, "/proxy/echo/9000/").await;
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    one.send(Message::Binary(big.clone().into()))
        .await
        .expect("send");
    match one.next().await {
        Some(Ok(Message::Binary(b))) => assert!(b[..] == big[..], "1 MiB came back different"),
        other => panic!("{other:?}"),
    }
    one.send(Message::Ping(b"p".to_vec().into()))
        .await
        .expect("ping");
    assert!(matches!(one.next().await, Some(Ok(Message::Pong(p))) if &p[..] == b"p"));
    // Not a WebSocket service: the service's own answer comes back.
    let plain = c
        .get(s.url("/proxy/echo/9000/"))
        .send()
        .await
        .expect("plain GET");
    assert_eq!(plain.status(), 400);
    assert_eq!(plain.text().await.expect("body"), "websocket only\n");
    drop(one);

    let mut conns = Vec::with_capacity(count);
    let t = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let opened = futures_util::future::join_all(
            chunk.iter().map(|_| ws_connect(&s, "/proxy/echo/9000/")),
        )
        .await;
        conns.extend(opened);
    }
    eprintln!("{count} WebSockets open in {:?}", t.elapsed());
    round(&mut conns, 0).await;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 1;
    let mut peak = rss_kib(s.pid());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2).min(deadline - Instant::now())).await;
        round(&mut conns, n).await;
        peak = peak.max(rss_kib(s.pid()));
        n += 1;
    }
    let open = metric(&c, &s, "sqrx_websockets_open{kind=\"proxy\"}").await;
    assert_eq!(
        open as usize, count,
        "relayed connections the server counts"
    );
    eprintln!(
        "RESULT websockets={count} secs={secs} rounds={n} server_rss_idle_kib={idle_rss} \
         server_rss_peak_kib={peak}"
    );
    for ws in &mut conns {
        let _ = ws.close(None).await;
    }
}

/// Send one raw request on a new connection and read one response to it: (status, body).
async fn raw_exchange(s: &Server, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut got: Vec<u8> = Vec::new();
    let read = async {
        loop {
            let mut buf = [0u8; 16 * 1024];
            let n = tcp.read(&mut buf).await.expect("read");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(usize::MAX);
                if body.len() >= length || n == 0 {
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return (status, body.to_string());
                }
            }
            assert!(n > 0, "closed before a response: {text:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no response in time")
}

/// One request over HTTP/2 with prior knowledge (h2c): (status, body).
async fn h2c_exchange(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let tcp = tokio::net::TcpStream::connect(&s.addr)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::get(format!("http://{}{path}", s.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new()).expect("request"))
        .await
        .expect("h2 request");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Headers as sorted (lower-case name, value) pairs.
type Head = Vec<(String, String)>;

/// The headers a service saw.
fn head_seen(body: &str) -> Head {
    let described: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut headers: Vec<(String, String)> = described["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h[0].as_str().expect("name").to_string(),
                h[1].as_str().expect("value").to_string(),
            )
        })
        .collect();
    headers.sort();
    headers
}

/// The same requests through every path the proxy has (the relay for plain HTTP/1.1, hyper's
/// direct path for HTTP/1.0, upgrades and h2c, the router for a percent-encoded id), with the
/// operator's token and with a user's key: the service sees exactly the same head each time.
/// Its hop-by-hop headers, the client's own `X-Forwarded-*` and the credentials that open the
/// server never reach it; every `X-Forwarded-For` it sent is kept, in order.
#[tokio::test(flavor = "multi_thread")]
async fn every_proxy_path_follows_the_same_rules() {
    if !privileged("server every_proxy_path_follows_the_same_rules") {
        return;
    }
    let data = DataDir::new();
    python_layer(&data);
    let token = "rules-token";
    // Paths without a port reach 8001, the describing service's.
    let s = Server::start_with(
        &data,
        Binary::Serve,
        &["--auth-token", token, "--proxy-default-port", "8001"],
        &[],
    );
    let c = client();
    let operator = |r: reqwest::RequestBuilder| r.bearer_auth(token);
    // A user with a key, and a sandbox of its own running the describing service.
    let (st, user) = send(
        operator(c.post(s.url("/api/admin/users"))).json(&json!({"name": "rita", "quota": {}})),
    )
    .await;
    assert_eq!(st, 201, "{user}");
    let uid = user["id"].as_str().expect("id");
    let (st, key) = send(
        operator(c.post(s.url(&format!("/api/admin/users/{uid}/apikeys"))))
            .json(&json!({"name": "rules"})),
    )
    .await;
    assert_eq!(st, 201, "{key}");
    let key = key["key"].as_str().expect("key").to_string();
    let user_client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {key}").parse().expect("header"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("client");
    python_sandbox(&user_client, &s, "web").await;
    start_python(&user_client, &s, "web", HTTP_ECHO_PY, 8001).await;

    let host = s.addr.as_str();
    let common = "Accept: */*\r\nX-Custom: kept\r\nX-Forwarded-For: 203.0.113.9\r\n\
                  X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Host: evil.example\r\n\
                  X-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /evil\r\nX-Private: 1\r\n\
                  Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n";
    let expected = |prefix: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = [
            ("accept", "*/*"),
            ("host", host),
            ("x-custom", "kept"),
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7, 127.0.0.1"),
            ("x-forwarded-host", host),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-prefix", prefix),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        h.sort();
        h
    };
    let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
    // Every row runs; the rows that differ are listed together at the end.
    let mut differ: Vec<String> = Vec::new();
    let mut check = |row: String, status: u16, body: &str, want: &[(String, String)]| {
        if status != 200 {
            differ.push(format!("{row}: status {status}: {body}"));
            return;
        }
        let described: Value = serde_json::from_str(body).expect("json");
        let seen = head_seen(body);
        if described["path"] != "/p?q=1" || seen != want {
            differ.push(format!(
                "{row}: path {}, headers {seen:?}, expected {want:?}",
                described["path"]
            ));
        }
    };
    for (who, credential) in [
        ("operator", format!("Authorization: Bearer {token}\r\n")),
        ("user", format!("Authorization: Bearer {key}\r\n")),
        ("user (E2B header)", format!("X-API-KEY: {key}\r\n")),
    ] {
        let rows: Vec<(&str, String, Head)> = vec![
            (
                "HTTP/1.1 (relay)",
                format!(
                    "GET /proxy/web/8001/p?q=1 HTTP/1.1\r\nHost: {host}\r\n{credential}{common}\
                     Connection: close, X-Private\r\n\r\n"
                ),
                expected("/proxy/web/8001", &[]),
            ),
            (
                "HTTP/1.0 (direct)",
                format!(
                    "GET /proxy/web/8001/p?q=1 HTTP/1.0\r\nHost: {host}\r\n{credential}{common}\
                     Connection: X-Private\r\n\r\n"
                ),
                expected("/proxy/web/8001", &[]),
            ),
            (
                "upgrade (direct)",
                format!(
                    "GET /proxy/web/8001/p?q=1 HTTP/1.1\r\nHost: {host}\r\n{credential}{common}\
                     Connection: Upgrade, X-Private\r\nUpgrade: websocket\r\n\r\n"
                ),
                expected("/proxy/web/8001", &upgrade),
            ),
            (
                "percent-encoded id (router)",
                format!(
                    "GET /proxy/w%65b/8001/p?q=1 HTTP/1.1\r\nHost: {host}\r\n{credential}{common}\
                     Connection: close, X-Private\r\n\r\n"
                ),
                expected("/proxy/w%65b/8001", &[]),
            ),
            (
                "default port (relay)",
                format!(
                    "GET /proxy/web/p?q=1 HTTP/1.1\r\nHost: {host}\r\n{credential}{common}\
                     Connection: close, X-Private\r\n\r\n"
                ),
                expected("/proxy/web", &[]),
            ),
            (
                "default port, HTTP/1.0 (direct)",
                format!(
                    "GET /proxy/web/p?q=1 HTTP/1.0\r\nHost: {host}\r\n{credential}{common}\
                     Connection: X-Private\r\n\r\n"
                ),
                expected("/proxy/web", &[]),
            ),
            (
                "default port, percent-encoded id (router)",
                format!(
                    "GET /proxy/w%65b/p?q=1 HTTP/1.1\r\nHost: {host}\r\n{credential}{common}\
                     Connection: close, X-Private\r\n\r\n"
                ),
                expected("/proxy/w%65b", &[]),
            ),
        ];
        for (path, request, want) in rows {
            let (status, body) = raw_exchange(&s, &request).await;
            check(format!("{who}, {path}"), status, &body, &want);
        }
        // HTTP/2 has no connection-specific headers: the rest, with :authority for Host.
        let (name, value) = credential
            .trim_end()
            .split_once(": ")
            .expect("credential header");
        let (status, body) = h2c_exchange(
            &s,
            "/proxy/web/8001/p?q=1",
            &[
                (name, value),
                ("accept", "*/*"),
                ("x-custom", "kept"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-prefix", "/evil"),
                ("proxy-authorization", "Basic eA=="),
            ],
        )
        .await;
        check(
            format!("{who}, h2c (direct)"),
            status,
            &body,
            &expected("/proxy/web/8001", &[]),
        );
    }
    assert!(
        differ.is_empty(),
        "{} rows differ:\n{}",
        differ.len(),
        differ.join("\n")
    );

    // A sandbox's own default port wins over the server's (nothing listens on 9 in "ops").
    let (st, made) = send(
        operator(c.post(s.url("/v1/sandboxes"))).json(&json!({"id": "ops", "default_port": 9})),
    )
    .await;
    assert_eq!(
        (st, made["default_port"].clone()),
        (201, json!(9)),
        "{made}"
    );
    assert_error(
        &send(operator(c.get(s.url("/proxy/ops/x")))).await,
        502,
        "port 9",
    );
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = operator(no_redirects.get(s.url("/proxy/ops/9")))
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status(), 308, "a number after the id is a port");
    assert_eq!(r.headers()["location"], "/proxy/ops/9/");
    let r = operator(no_redirects.get(s.url("/proxy/ops")))
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.headers()["location"], "/proxy/ops/", "{}", r.status());
    let (st, bad) = send(
        operator(c.post(s.url("/v1/sandboxes"))).json(&json!({"id": "bad", "default_port": 0})),
    )
    .await;
    assert_eq!(st, 400, "{bad}");

    // A bad key, and the operator's sandbox for the user: the same answers on every path as
    // the router gives (401; 404 as for a missing sandbox).
    for (version, connection) in [("1.1", "close"), ("1.0", "close")] {
        let bad = format!(
            "GET /proxy/web/8001/ HTTP/{version}\r\nHost: {host}\r\nAuthorization: Bearer sqrx_0000000000000000{}\r\nConnection: {connection}\r\n\r\n",
            "0".repeat(64)
        );
        let (status, body) = raw_exchange(&s, &bad).await;
        assert_eq!(status, 401, "HTTP/{version}: {body}");
        let theirs = format!(
            "GET /proxy/ops/8001/ HTTP/{version}\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nConnection: {connection}\r\n\r\n"
        );
        let missing = theirs.replace("/ops/", "/nope/");
        let (st1, b1) = raw_exchange(&s, &theirs).await;
        let (st2, b2) = raw_exchange(&s, &missing).await;
        assert_eq!((st1, st2), (404, 404), "HTTP/{version}: {b1} {b2}");
        assert_eq!(
            b1.replace("ops", "ID"),
            b2.replace("nope", "ID"),
            "HTTP/{version}"
        );
    }
}
