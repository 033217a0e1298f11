//! One accepted client connection. The server reads its requests itself while they are
//! `/proxy` requests the relay takes ([`proxy::relay`]); at the first request it does not,
//! the connection goes to hyper and the router for the rest of its life, with the bytes read
//! so far replayed. So a client talking to sandboxed services pays for no HTTP machinery it
//! does not need, and every other request is served exactly as axum serves it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::{BoxFuture, Either};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use crate::hosts::LocalAddr;
use crate::proxy::relay::{self, After, Parsed};
use crate::proxy::{self};
use crate::state::AppState;

/// Longest request head the relay waits for; a longer one is hyper's to refuse.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Initial size of a connection's read buffer.
const BUFFER: usize = 8 * 1024;

/// Serve the connection `tcp` from `client` until it closes, or until `stop` (the request
/// under way finishes first).
pub async fn serve(
    mut tcp: TcpStream,
    client: SocketAddr,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(BUFFER);
    let mut scratch = BytesMut::new();
    let token = routes.state.config().auth_token.clone();
    let idle = routes.state.config().idle_timeout;
    let state = routes.state.clone();
    let local = routes.local.ip();
    loop {
        // The next request's head must be in within the idle timeout.
        let deadline = tokio::time::Instant::now() + idle;
        let plan = loop {
            let tenanted = state.tenants().is_some_and(|t| t.keys_exist());
            match relay::parse(
                &buf,
                token.as_deref(),
                tenanted,
                &state.config().allowed_hosts,
                client,
                local,
            ) {
                Parsed::Relay(plan) => break plan,
                Parsed::Other => return hand_to_hyper(tcp, buf.freeze(), routes, stop).await,
                Parsed::Partial if buf.len() >= MAX_REQUEST_HEAD => {
                    return hand_to_hyper(tcp, buf.freeze(), routes, stop).await;
                }
                Parsed::Partial => {}
            }
            buf.reserve(BUFFER);
            tokio::select! {
                // Bytes that are there win (and the timers are then never armed).
                biased;
                read = tcp.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                // Between requests, a stopping server closes the connection.
                _ = stop.wait_for(|stop| *stop), if buf.is_empty() => return,
                () = tokio::time::sleep_until(deadline) => return,
            }
        };
        let stopping = *stop.borrow();
        let after = relay::relay(
            &routes.state,
            &mut tcp,
            &mut buf,
            &mut scratch,
            *plan,
            stopping,
        )
        .await;
        if after == After::Close {
            return linger_close(tcp).await;
        }
        // A long body grew the buffers: an idle connection keeps small ones.
        if scratch.capacity() > relay::HEAD_READ {
            scratch = BytesMut::new();
        }
        if buf.capacity() > MAX_REQUEST_HEAD {
            buf = BytesMut::from(&buf[..]);
        }
    }
}

/// How long a closing connection waits for the client to finish sending.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and dropped while waiting.
const LINGER_BYTES: usize = 1 << 20;

/// Close `tcp` without losing the response just written: send our end of stream, then read
/// and drop what the client still sends (a body the answer left unread, pipelined requests)
/// until it closes too, for a little while. Closing a socket with unread bytes would reset the
/// connection, and the client could lose the response (nginx's "lingering close").
async fn linger_close(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 8 * 1024];
    let mut dropped = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while dropped < LINGER_BYTES {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// Serve the rest of the connection with hyper (HTTP/1.1 with upgrades, or HTTP/2), `read`
/// being what was read from it already; on `stop`, hyper finishes the requests under way
/// and closes.
async fn hand_to_hyper(
    tcp: TcpStream,
    read: Bytes,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
) {
    let idle = routes.state.config().idle_timeout;
    let service = TowerToHyperService::new(
        routes.map_request(|req: axum::http::Request<Incoming>| req.map(Body::new)),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A connection idle between requests (or slow to send a head) is closed, as by the relay.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    // HTTP/2 WebSockets use the extended CONNECT (RFC 8441), as with axum::serve.
    builder.http2().enable_connect_protocol();
    let io = TokioIo::new(Replay { read, tcp });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// A connection whose first bytes were read already: they are read again first.
struct Replay {
    read: Bytes,
    tcp: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.tcp).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        if self.read.is_empty() {
            // Let the read buffer go rather than keep it for the connection's life.
            self.read = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The service of a connection hyper serves: proxied requests go the direct way
/// ([`proxy::direct`]), everything else to the router, with the peer's address as
/// [`ConnectInfo`] (the proxy's `X-Forwarded-For`).
#[derive(Clone)]
pub struct Routes {
    /// The router.
    pub router: Router,
    /// The shared state.
    pub state: AppState,
    /// The peer.
    pub client: SocketAddr,
    /// The address the connection arrived at (see [`LocalAddr`]).
    pub local: SocketAddr,
}

impl Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <Router as Service<Request>>::Future,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        req.extensions_mut().insert(LocalAddr(self.local));
        // `{port}-{sandbox}.{domain}` (E2B's `get_host`): that port of that sandbox.
        if let Some(uri) = crate::e2b::host_route(req.headers(), req.uri()) {
            *req.uri_mut() = uri;
        }
        if proxy::direct::target(req.uri().path()).is_some() {
            let state = self.state.clone();
            let client = self.client;
            return Either::Left(Box::pin(async move {
                Ok(proxy::direct::serve(state, client, req).await)
            }));
        }
        req.extensions_mut().insert(ConnectInfo(self.client));
        Either::Right(self.router.call(req))
    }
}
