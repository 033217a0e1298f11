//! [`Upstream`]: the reverse proxy's HTTP/1.1 client. Its connector reaches a port inside a
//! sandbox through the sandbox's init ([`Sandbox::connect_tcp`](sqrx_core::Sandbox)), so no
//! IP route into the sandbox is needed; hyper-util's pool keeps idle connections per
//! (sandbox, port) for reuse, as nginx's `keepalive` does for an upstream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sqrx_core::{Runtime, SandboxError};
use tokio::net::TcpStream;

use crate::error::ApiError;

/// How long init tries to connect to the port before calling it closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per (sandbox, port).
const MAX_IDLE_PER_TARGET: usize = 256;

/// Why a connection into a sandbox could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URI handed to the connector does not name a sandbox and port.
    #[error("not a proxy target: {uri}")]
    Target {
        /// The URI.
        uri: String,
    },
    /// The sandbox is unknown, gone, paused, or nothing listens on the port.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The connected socket could not be handed to tokio.
    #[error("cannot use the connection to port {port} of sandbox {id}: {source}")]
    Socket {
        /// The sandbox.
        id: String,
        /// The port.
        port: u16,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that connects failed.
    #[error("the connect task failed: {reason}")]
    Task {
        /// Why.
        reason: String,
    },
}

/// The authority that stands for `port` in sandbox `id` in the client's URIs, and so in its
/// pool keys. Hex keeps it a valid host and case-exact (sandbox ids are case-sensitive, hosts
/// are not).
fn authority(id: &str, port: u16) -> Result<Authority, ApiError> {
    format!("{}:{port}", hex::encode(id))
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid proxy target: {e}")))
}

/// The sandbox and port an authority from [`authority`] names.
fn target(uri: &Uri) -> Result<(String, u16), UpstreamError> {
    let bad = || UpstreamError::Target {
        uri: uri.to_string(),
    };
    let host = uri.host().ok_or_else(bad)?;
    let port = uri.port_u16().ok_or_else(bad)?;
    let id = hex::decode(host)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    Ok((id, port))
}

/// A `tower::Service<Uri>` that connects into sandboxes (the client's connector).
#[derive(Clone)]
pub struct SandboxConnector {
    rt: Runtime,
}

impl tower::Service<Uri> for SandboxConnector {
    type Response = TokioIo<TcpStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let rt = self.rt.clone();
        Box::pin(async move {
            let (id, port) = target(&uri)?;
            let sid = id.clone();
            // Looking the sandbox up reads its state file and asking init for the socket
            // blocks on its control socket: both off the async threads, in one hop.
            let std = tokio::task::spawn_blocking(move || {
                rt.get(&sid)?.connect_tcp(port, CONNECT_TIMEOUT)
            })
            .await
            .map_err(|e| UpstreamError::Task {
                reason: e.to_string(),
            })??;
            let socket = |source| UpstreamError::Socket {
                id: id.clone(),
                port,
                source,
            };
            std.set_nonblocking(true).map_err(socket)?;
            // Small writes (headers, WebSocket frames) must not wait for Nagle.
            std.set_nodelay(true).map_err(socket)?;
            Ok(TokioIo::new(TcpStream::from_std(std).map_err(socket)?))
        })
    }
}

/// The proxy's client: pooled HTTP/1.1 connections into sandboxes. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    client: Client<SandboxConnector, Body>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

impl Upstream {
    /// A client for sandboxes of `rt`.
    pub fn new(rt: Runtime) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_TARGET)
            // The proxy sets Host itself (the client's own, or 127.0.0.1:PORT).
            .set_host(false)
            .build(SandboxConnector { rt });
        Upstream { client }
    }

    /// Send `req` to `port` in sandbox `id`; `path` is the path and query the service sees.
    /// The response's body streams from the sandbox as the caller reads it.
    pub async fn send(
        &self,
        id: &str,
        port: u16,
        path: PathAndQuery,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, ApiError> {
        *req.uri_mut() = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority(id, port)?)
            .path_and_query(path)
            .build()
            .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
        self.client
            .request(req)
            .await
            .map_err(|e| upstream_error(id, port, &e))
    }
}

/// The answer for a failed upstream request: the sandbox's own error when the connector
/// failed (404 for an unknown sandbox, 502 for a closed port), else 502.
fn upstream_error(id: &str, port: u16, e: &hyper_util::client::legacy::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(u) = s.downcast_ref::<UpstreamError>() {
            return match u {
                UpstreamError::Sandbox(SandboxError::PortClosed { .. }) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("nothing accepts connections on port {port} in sandbox {id}"),
                ),
                UpstreamError::Sandbox(e) => ApiError::from_kind(e.kind(), e),
                UpstreamError::Target { .. }
                | UpstreamError::Socket { .. }
                | UpstreamError::Task { .. } => ApiError::internal(u),
            };
        }
        source = s.source();
    }
    tracing::debug!(sandbox = id, port, error = %e, "upstream request failed");
    let detail = match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("the service on port {port} in sandbox {id} failed: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_round_trip() {
        for id in ["Box-1", "box-1", "a_b", "x"] {
            let a = authority(id, 8080).expect("authority");
            let uri: Uri = format!("http://{a}/p").parse().expect("uri");
            assert_eq!(target(&uri).expect("target"), (id.to_string(), 8080));
        }
        assert_ne!(authority("Box", 1).ok(), authority("box", 1).ok());
        let uri: Uri = "http://zz:80/".parse().expect("uri");
        assert!(target(&uri).is_err());
    }
}
