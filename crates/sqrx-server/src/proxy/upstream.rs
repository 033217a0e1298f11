//! [`Upstream`]: the reverse proxy's HTTP/1.1 client into sandboxes.
//!
//! A connection to a port inside a sandbox is made by the sandbox's init
//! ([`Sandbox::connect_tcp`](sqrx_core::Sandbox)), so no IP route into the sandbox is needed.
//! Idle connections are kept per (sandbox, port) and reused, as nginx's `keepalive` does for an
//! upstream. Each exchange is driven by the task serving the client's request (the hyper
//! connection is polled from the request and then from the response body), not by a task of
//! its own: a proxied request costs no hand-offs between tasks. A connection whose response
//! body was read to the end goes back to the pool as it is (hyper's connection state, buffers
//! and all), and is checked for a close by the service when it is taken out again.

use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sqrx_core::{Runtime, SandboxError};
use tokio::net::TcpStream;

use crate::error::ApiError;

/// How long init tries to connect to the port before calling it closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per (sandbox, port).
const MAX_IDLE_PER_TARGET: usize = 256;

/// Idle connections are kept per HTTP thread (see `serve`): a connection is registered with
/// the runtime of the thread that made it, and is best used from there.
type Key = (std::thread::ThreadId, String, u16);
type Conn = http1::Connection<TokioIo<TcpStream>, Body>;

struct IdleConn {
    sender: http1::SendRequest<Body>,
    conn: Conn,
    since: Instant,
}

impl IdleConn {
    /// Still usable: young enough, not closed by the service (polling the idle connection
    /// reads a pending end of stream, and never blocks), and ready for a request.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.since.elapsed() < IDLE_TIMEOUT
            && self.conn.poll_without_shutdown(&mut cx).is_pending()
            && self.sender.is_ready()
    }
}

type IdleMap = Mutex<HashMap<Key, Vec<IdleConn>>>;

/// An idle connection of the relay ([`super::relay`]): a plain socket between two exchanges.
struct IdleStream {
    stream: TcpStream,
    since: Instant,
}

impl IdleStream {
    /// Still usable: young enough, and nothing (an end of stream, stray bytes) arrived since
    /// its last exchange. The readiness the runtime has seen is asked first, so a quiet
    /// connection costs no read.
    fn usable(&self) -> bool {
        if self.since.elapsed() >= IDLE_TIMEOUT {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.stream.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        matches!(self.stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

type StreamMap = Mutex<HashMap<Key, Vec<IdleStream>>>;

/// Pooled HTTP/1.1 connections into sandboxes. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    rt: Runtime,
    idle: Arc<IdleMap>,
    streams: Arc<StreamMap>,
    sweeping: Arc<std::sync::Once>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why an exchange failed.
enum ExchangeError {
    /// The request was never written (the connection closed first): here it is back, to send
    /// on another connection.
    Unsent(Box<Request<Body>>, hyper::Error),
    /// Anything else.
    Failed(hyper::Error),
}

impl ExchangeError {
    fn of(mut e: hyper::client::conn::TrySendError<Request<Body>>) -> Self {
        match e.take_message() {
            Some(req) => ExchangeError::Unsent(Box::new(req), e.into_error()),
            None => ExchangeError::Failed(e.into_error()),
        }
    }
}

impl Upstream {
    /// A client for sandboxes of `rt`.
    pub fn new(rt: Runtime) -> Self {
        Upstream {
            rt,
            idle: Arc::new(Mutex::new(HashMap::new())),
            streams: Arc::new(Mutex::new(HashMap::new())),
            sweeping: Arc::new(std::sync::Once::new()),
        }
    }

    /// A fresh connection to `port` in sandbox `id`.
    pub async fn connect(&self, id: &str, port: u16) -> Result<TcpStream, ApiError> {
        let rt = self.rt.clone();
        let sid = id.to_string();
        // Looking the sandbox up reads its state file and asking init for the socket blocks on
        // its control socket: both off the async threads, in one hop.
        let std =
            tokio::task::spawn_blocking(move || rt.get(&sid)?.connect_tcp(port, CONNECT_TIMEOUT))
                .await
                .map_err(|e| ApiError::internal(format!("the connect task failed: {e}")))?
                .map_err(|e| match e {
                    SandboxError::PortClosed { .. } => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("nothing accepts connections on port {port} in sandbox {id}"),
                    ),
                    other => ApiError::from(other),
                })?;
        let socket = |e: std::io::Error| {
            ApiError::internal(format!("cannot use the connection into {id}:{port}: {e}"))
        };
        std.set_nonblocking(true).map_err(socket)?;
        // Small writes (headers, WebSocket frames) must not wait for Nagle.
        std.set_nodelay(true).map_err(socket)?;
        TcpStream::from_std(std).map_err(socket)
    }

    /// An idle connection to `key` that is still usable, if there is one.
    fn checkout(&self, key: &Key) -> Option<(http1::SendRequest<Body>, Conn)> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        while let Some(mut c) = list.pop() {
            if c.usable() {
                return Some((c.sender, c.conn));
            }
        }
        None
    }

    /// Keep a connection whose exchange is over for the next request to `key`.
    fn checkin(&self, key: Key, sender: http1::SendRequest<Body>, conn: Conn) {
        self.start_sweeper();
        let mut idle = lock(&self.idle);
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(IdleConn {
                sender,
                conn,
                since: Instant::now(),
            });
        }
    }

    /// An idle plain connection to `port` in sandbox `id` that is still usable, if this
    /// thread has one.
    pub fn take_stream(&self, id: &str, port: u16) -> Option<TcpStream> {
        let key: Key = (std::thread::current().id(), id.to_string(), port);
        let mut streams = lock(&self.streams);
        let list = streams.get_mut(&key)?;
        while let Some(s) = list.pop() {
            if s.usable() {
                return Some(s.stream);
            }
        }
        None
    }

    /// Keep a plain connection whose exchange ended cleanly for the next request to `port`
    /// in sandbox `id` from this thread.
    pub fn keep_stream(&self, id: &str, port: u16, stream: TcpStream) {
        self.start_sweeper();
        let key: Key = (std::thread::current().id(), id.to_string(), port);
        let mut streams = lock(&self.streams);
        let list = streams.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(IdleStream {
                stream,
                since: Instant::now(),
            });
        }
    }

    /// Close idle connections past their time or closed by the service (a destroyed
    /// sandbox's, say), every few seconds, for as long as the pool exists.
    fn start_sweeper(&self) {
        let idle: Weak<IdleMap> = Arc::downgrade(&self.idle);
        let streams: Weak<StreamMap> = Arc::downgrade(&self.streams);
        self.sweeping.call_once(|| {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return;
            };
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let (Some(idle), Some(streams)) = (idle.upgrade(), streams.upgrade()) else {
                        return;
                    };
                    lock(&idle).retain(|_, list| {
                        list.retain_mut(IdleConn::usable);
                        !list.is_empty()
                    });
                    lock(&streams).retain(|_, list| {
                        list.retain(IdleStream::usable);
                        !list.is_empty()
                    });
                }
            });
        });
    }

    /// Send `req` to `port` in sandbox `id`; `path` is the path and query the service sees.
    /// The response body streams from the sandbox as the caller reads it. With `upgrade`, the
    /// connection is given over to a protocol switch (see [`hyper::upgrade::on`]) and never
    /// pooled.
    pub async fn send(
        &self,
        id: &str,
        port: u16,
        path: PathAndQuery,
        mut req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Body>, ApiError> {
        *req.uri_mut() = Uri::from(path);
        let key: Key = (std::thread::current().id(), id.to_string(), port);
        if upgrade {
            let io = self.connect(id, port).await?;
            return self.send_upgrade(id, port, io, req).await;
        }
        let (sender, conn) = match self.checkout(&key) {
            Some(pooled) => pooled,
            None => self.handshake(id, port).await?,
        };
        match self.exchange(key.clone(), sender, conn, req).await {
            Ok(r) => Ok(r),
            // The service closed the pooled connection as we sent: once more on a new one.
            Err(ExchangeError::Unsent(req, e)) => {
                tracing::debug!(sandbox = id, port, error = %e, "idle connection closed; retrying");
                let (sender, conn) = self.handshake(id, port).await?;
                self.exchange(key, sender, conn, *req)
                    .await
                    .map_err(|e| service_failed(id, port, e))
            }
            Err(e) => Err(service_failed(id, port, e)),
        }
    }

    /// A new HTTP/1.1 connection to `port` in sandbox `id`.
    async fn handshake(
        &self,
        id: &str,
        port: u16,
    ) -> Result<(http1::SendRequest<Body>, Conn), ApiError> {
        let io = self.connect(id, port).await?;
        http1::handshake::<_, Body>(TokioIo::new(io))
            .await
            .map_err(|e| service_failed(id, port, ExchangeError::Failed(e)))
    }

    async fn send_upgrade(
        &self,
        id: &str,
        port: u16,
        io: TcpStream,
        req: Request<Body>,
    ) -> Result<Response<Body>, ApiError> {
        let (mut sender, conn) = http1::handshake::<_, Body>(TokioIo::new(io))
            .await
            .map_err(|e| service_failed(id, port, ExchangeError::Failed(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "proxied upgrade connection failed");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| service_failed(id, port, ExchangeError::Failed(e)))?;
        Ok(resp.map(Body::new))
    }

    /// One request and its response head over a connection, driven from this task.
    async fn exchange(
        &self,
        key: Key,
        mut sender: http1::SendRequest<Body>,
        conn: Conn,
        req: Request<Body>,
    ) -> Result<Response<Body>, ExchangeError> {
        let mut response = std::pin::pin!(sender.try_send_request(req));
        let mut live = Some(conn);
        // Poll the connection, then the response it produces, until the head is in. (This
        // order finds the head in the same poll that read it.)
        let head = std::future::poll_fn(|cx| {
            if let Some(c) = live.as_mut()
                && c.poll_without_shutdown(cx).is_ready()
            {
                // Finished (closed, or failed): the response future says how, now that the
                // dispatcher has let go of the request.
                live = None;
            }
            response
                .as_mut()
                .poll(cx)
                .map(|r| r.map_err(ExchangeError::of))
        })
        .await?;
        let reusable = head.version() == Version::HTTP_11
            && !head
                .headers()
                .get_all(axum::http::header::CONNECTION)
                .iter()
                .any(|v| has_token(v, "close"));
        let (parts, body) = head.into_parts();
        let reusable = reusable && live.is_some();
        let body = ProxyBody {
            body,
            conn: live,
            sender: Some(sender),
            release: reusable.then(|| (self.clone(), key)),
            done: false,
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Does a `Connection` value hold `token`?
fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// The answer when the service broke the exchange.
fn service_failed(id: &str, port: u16, e: ExchangeError) -> ApiError {
    let (ExchangeError::Unsent(_, e) | ExchangeError::Failed(e)) = e;
    let detail = match std::error::Error::source(&e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("the service on port {port} in sandbox {id} failed: {detail}"),
    )
}

/// The service's response body, driving its connection as it is read; the connection goes
/// back to the pool once the body ended (and the service allows keep-alive).
struct ProxyBody {
    body: Incoming,
    conn: Option<Conn>,
    sender: Option<http1::SendRequest<Body>>,
    release: Option<(Upstream, Key)>,
    /// The body reached its end.
    done: bool,
}

impl hyper::body::Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut()
            && conn.poll_without_shutdown(cx).is_ready()
        {
            // The connection ended (closed, or failed): the body reports how.
            this.conn = None;
            this.release = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Err(_))) => this.release = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves its connection mid-response: close it.
        if !(self.done || self.body.is_end_stream()) {
            return;
        }
        let (Some(mut conn), Some(sender), Some((upstream, key))) =
            (self.conn.take(), self.sender.take(), self.release.take())
        else {
            return;
        };
        // Let the connection take in the end of the exchange; it is then idle (or closed).
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if conn.poll_without_shutdown(&mut cx).is_pending() {
            upstream.checkin(key, sender, conn);
        }
    }
}
