//! The backend of `benches/proxy`: a minimal HTTP/1.1 server (every request gets
//! `200 hello, world`) and a WebSocket echo server, on one thread, so the proxies in front of
//! it are what the benchmark measures.
//!
//! `proxy-backend HTTP_ADDR WS_ADDR`, e.g. `proxy-backend 127.0.0.1:8000 127.0.0.1:9000`.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello, world\n";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

async fn http(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

async fn ws(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(m)) = socket.next().await {
                if (m.is_text() || m.is_binary()) && socket.send(m).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(http_addr), Some(ws_addr)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: proxy-backend HTTP_ADDR WS_ADDR");
        std::process::exit(2);
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let h = TcpListener::bind(http_addr).await?;
            let w = TcpListener::bind(ws_addr).await?;
            tokio::join!(http(h), ws(w));
            Ok(())
        })
}
