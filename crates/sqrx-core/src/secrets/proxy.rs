//! The egress proxy: part of the runtime's network daemon (see `network/resolver.rs`), which
//! hands it the connections of sandboxes with secrets that it must read (TLS to a host some
//! secret of the sandbox is bound to; any plain HTTP). It runs `hudsucker` on a loopback port of
//! the daemon's namespace: TLS connections arrive as a `CONNECT` to the name the client asked
//! for (hudsucker terminates TLS with a certificate from the runtime's CA), plain HTTP as is.
//! Every request is checked against the sandbox's secrets (see `rewrite.rs`), audited, and sent
//! on over a connection of its own to the destination the sandbox connected to — verified
//! against the host's roots (and the configured extra CAs) for the name it asked for.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hudsucker::hyper::{Request, Response, StatusCode};
use hudsucker::{Body, HttpContext, HttpHandler, RequestOrResponse};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::audit::{AuditRecord, Decision};

/// Bodies up to this size are read whole and checked for placeholders.
const BODY_LIMIT: usize = 8 << 20;

/// How the daemon's egress proxy is set up (part of the daemon's configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EgressConfig {
    /// The runtime's data directory (its secrets, CA and audit log).
    pub data_dir: PathBuf,
    /// Read TLS to hosts secrets are bound to (`SQUASH_PROXY_HTTPS`; default on).
    pub intercept_https: bool,
    /// PEM files of CAs the proxy trusts for upstream servers besides the host's roots.
    pub upstream_ca: Vec<PathBuf>,
}

/// One connection of a sandbox handed to the proxy.
pub(crate) struct Conn {
    /// The sandbox's id.
    pub sandbox: String,
    /// Its directory (its own secrets).
    pub sandbox_dir: PathBuf,
    /// Where it connected to.
    pub dst: SocketAddrV4,
    /// The name it asked for (TLS SNI or HTTP `Host`).
    pub host: String,
    /// TLS (intercepted) or plain HTTP.
    pub tls: bool,
    upstream: tokio::sync::Mutex<Option<SendRequest<Body>>>,
}

impl Conn {
    /// A connection of `sandbox` to `dst` for `host`.
    pub fn new(
        sandbox: String,
        sandbox_dir: PathBuf,
        dst: SocketAddrV4,
        host: String,
        tls: bool,
    ) -> Self {
        Conn {
            sandbox,
            sandbox_dir,
            dst,
            host,
            tls,
            upstream: tokio::sync::Mutex::new(None),
        }
    }
}

struct Shared {
    config: EgressConfig,
    /// Handed-over connections by the address they reach hudsucker from.
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    tls: tokio_rustls::TlsConnector,
}

/// The running proxy.
pub(crate) struct Egress {
    shared: Arc<Shared>,
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

/// The runtime's CA as hudsucker wants it.
struct Ca(Option<super::ca::Authority>);

#[derive(Debug)]
struct NoCertificate;

impl rustls::server::ResolvesServerCert for NoCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

impl hudsucker::certificate_authority::CertificateAuthority for Ca {
    fn gen_server_config(
        &self,
        authority: &hudsucker::hyper::http::uri::Authority,
    ) -> impl Future<Output = Arc<rustls::ServerConfig>> + Send {
        let made = match &self.0 {
            Some(ca) => ca.server_config(authority.host()),
            None => Err(std::io::Error::other("no CA")),
        };
        let config = made.unwrap_or_else(|e| {
            eprintln!("sqrx egress: no certificate for {}: {e}", authority.host());
            refusing_config()
        });
        async move { config }
    }
}

/// A TLS server configuration without a certificate: the handshake fails, so interception
/// fails and nothing is forwarded.
fn refusing_config() -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate)),
    )
}

/// The TLS client configuration for upstream servers: the host's roots and `extra` CA files.
fn client_config(extra: &[PathBuf]) -> std::io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for path in extra {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Egress {
    /// Start the proxy (its own threads) on a loopback port.
    pub fn start(config: EgressConfig) -> std::io::Result<Egress> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sqrx-egress")
            .enable_all()
            .build()?;
        let ca = match super::ca::Authority::load(&super::dir(&config.data_dir)) {
            Ok(ca) => Some(ca),
            Err(e) => {
                eprintln!("sqrx egress: cannot load the runtime's CA: {e}");
                None
            }
        };
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(&config.upstream_ca)?));
        let shared = Arc::new(Shared {
            config,
            conns: Mutex::new(HashMap::new()),
            tls,
        });
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        // Accepted connections inherit it: hudsucker's small writes (a CONNECT's answer, TLS
        // handshake records) must not wait for ACKs.
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let port = listener.local_addr()?.port();
        // A client that closes its side after sending (`nc`, HTTP/1.0 tools) still gets its
        // answer: half-closed connections are served.
        let mut server = hudsucker::hyper_util::server::conn::auto::Builder::new(
            hudsucker::hyper_util::rt::TokioExecutor::new(),
        );
        server
            .http1()
            .title_case_headers(true)
            .preserve_header_case(true)
            .half_close(true);
        let proxy = hudsucker::Proxy::builder()
            .with_listener(listener)
            .with_ca(Ca(ca))
            .with_http_connector(hyper_util::client::legacy::connect::HttpConnector::new())
            .with_http_handler(Handler {
                shared: shared.clone(),
            })
            .with_server(server)
            .build()
            .map_err(std::io::Error::other)?;
        runtime.spawn(async move {
            if let Err(e) = proxy.start().await {
                eprintln!("sqrx egress: the proxy stopped: {e}");
            }
        });
        Ok(Egress {
            shared,
            port,
            _runtime: runtime,
        })
    }

    /// Open the proxy's side of `conn`: a stream to write the client's bytes to and read the
    /// answers from. The connection stays registered until the returned guard drops.
    pub fn open(&self, conn: Conn) -> std::io::Result<(std::net::TcpStream, Registration)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_nodelay(true)?;
        let key = stream.local_addr()?;
        let connect = conn.tls.then(|| {
            format!(
                "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n",
                host = conn.host,
                port = conn.dst.port()
            )
        });
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(conn));
        let registration = Registration {
            shared: self.shared.clone(),
            key,
        };
        if let Some(connect) = connect {
            stream.write_all(connect.as_bytes())?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte)? == 0 || head.len() > 4096 {
                    return Err(std::io::Error::other("the egress proxy refused the tunnel"));
                }
                head.push(byte[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(std::io::Error::other("the egress proxy refused the tunnel"));
            }
            stream.set_read_timeout(None)?;
        }
        Ok((stream, registration))
    }
}

/// Keeps a connection known to the proxy.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    key: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hudsucker::hyper::header::CONTENT_TYPE,
        hudsucker::hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The name of a `Host` header value (no port, lowercase).
fn host_name(value: &str) -> String {
    let v = value.trim();
    let name = match v.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => v,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl HttpHandler for Handler {
    fn handle_request(
        &mut self,
        ctx: &HttpContext,
        req: Request<Body>,
    ) -> impl Future<Output = RequestOrResponse> + Send {
        let shared = self.shared.clone();
        let from = ctx.client_addr;
        async move {
            // The tunnels this daemon opens for intercepted TLS.
            if req.method() == hudsucker::hyper::Method::CONNECT {
                return req.into();
            }
            let conn = shared
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&from)
                .cloned();
            let Some(conn) = conn else {
                return json(
                    StatusCode::BAD_GATEWAY,
                    serde_json::json!({"error": "egress_proxy", "reason": "unknown connection"}),
                )
                .into();
            };
            forward(&shared, &conn, req).await.into()
        }
    }
}

fn audit(
    shared: &Shared,
    conn: &Conn,
    method: &str,
    path: &str,
    secret: &str,
    decision: Decision,
    reason: Option<&str>,
) {
    let record = AuditRecord {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        sandbox: conn.sandbox.clone(),
        secret: secret.to_string(),
        host: conn.host.clone(),
        method: method.to_string(),
        path: path.to_string(),
        decision,
        reason: reason.map(str::to_string),
    };
    super::audit::append(&super::audit::path(&shared.config.data_dir), &record);
}

/// Check, substitute and send one request of `conn`; the answer for the sandbox.
async fn forward(shared: &Shared, conn: &Conn, req: Request<Body>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let refused = |secret: &str, reason: &str, status: StatusCode| {
        audit(
            shared,
            conn,
            &method,
            &path,
            secret,
            Decision::Refused,
            Some(reason),
        );
        eprintln!(
            "sqrx egress: sandbox {}: refused {method} {}{path}: {reason}",
            conn.sandbox, conn.host
        );
        json(
            status,
            serde_json::json!({
                "error": "secret_refused",
                "secret": secret,
                "host": conn.host,
                "reason": reason,
            }),
        )
    };
    // The name was checked against the policy for the connection: every request on it must be
    // for that name.
    let asked = parts
        .headers
        .get(hudsucker::hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_name);
    if asked.as_deref().is_some_and(|h| h != conn.host) {
        return json(
            StatusCode::MISDIRECTED_REQUEST,
            serde_json::json!({
                "error": "misdirected",
                "host": conn.host,
                "reason": "a request for another host on this connection",
            }),
        );
    }
    let secrets: Vec<(String, super::Secret)> =
        super::effective(&shared.config.data_dir, &conn.sandbox_dir)
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect();
    let length = parts
        .headers
        .get(hudsucker::hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let inspect = length.is_none_or(|n| n <= BODY_LIMIT as u64);
    let (mut whole, stream) = if inspect {
        match http_body_util::Limited::new(body, BODY_LIMIT)
            .collect()
            .await
        {
            Ok(c) => (Some(c.to_bytes().to_vec()), None),
            Err(_) => {
                let body_secret = secrets
                    .iter()
                    .find(|(_, s)| s.allow_body && s.bound_to(&conn.host))
                    .map(|(n, _)| n.as_str())
                    .unwrap_or("");
                return refused(
                    body_secret,
                    "the body is too large to check for placeholders (8 MiB)",
                    StatusCode::PAYLOAD_TOO_LARGE,
                );
            }
        }
    } else {
        if let Some((name, _)) = secrets
            .iter()
            .find(|(_, s)| s.allow_body && s.bound_to(&conn.host))
        {
            return refused(
                name,
                "the body is too large to check for placeholders (8 MiB)",
                StatusCode::PAYLOAD_TOO_LARGE,
            );
        }
        (None, Some(body))
    };
    match super::rewrite::rewrite(&mut parts, whole.as_mut(), &conn.host, conn.tls, &secrets) {
        Err(_) if crate::weaken::off("egress-refuse") => {}
        Err(r) => return refused(&r.secret, r.reason, StatusCode::FORBIDDEN),
        Ok(done) => {
            for name in done {
                audit(
                    shared,
                    conn,
                    &method,
                    &path,
                    &name,
                    Decision::Substituted,
                    None,
                );
            }
        }
    }
    // Upstream, the request is in origin form with the client's own `Host`.
    let pq = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = match pq.parse() {
        Ok(u) => u,
        Err(_) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "bad_request", "reason": "bad URL"}),
            );
        }
    };
    parts.version = hudsucker::hyper::Version::HTTP_11;
    if !parts.headers.contains_key(hudsucker::hyper::header::HOST)
        && let Ok(h) = hudsucker::hyper::header::HeaderValue::from_str(&conn.host)
    {
        parts.headers.insert(hudsucker::hyper::header::HOST, h);
    }
    // A body read whole goes on with its length (whatever framing the client used).
    if let Some(b) = &whole
        && (parts
            .headers
            .contains_key(hudsucker::hyper::header::TRANSFER_ENCODING)
            || parts
                .headers
                .contains_key(hudsucker::hyper::header::CONTENT_LENGTH))
    {
        parts
            .headers
            .remove(hudsucker::hyper::header::TRANSFER_ENCODING);
        parts.headers.insert(
            hudsucker::hyper::header::CONTENT_LENGTH,
            hudsucker::hyper::header::HeaderValue::from(b.len()),
        );
    }
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = match (whole, stream) {
        (Some(b), _) => Body::from(Bytes::from(b)),
        (None, Some(s)) => s,
        (None, None) => Body::empty(),
    };
    let req = Request::from_parts(parts, body);
    let upstream_failed = |reason: String| {
        eprintln!(
            "sqrx egress: sandbox {}: {} ({}): {reason}",
            conn.sandbox, conn.host, conn.dst
        );
        json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"error": "upstream_failed", "host": conn.host, "reason": reason}),
        )
    };
    let mut sender = conn.upstream.lock().await;
    let ready = match sender.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !ready {
        match connect(shared, conn).await {
            Ok(s) => *sender = Some(s),
            Err(e) => return upstream_failed(e.to_string()),
        }
    }
    let Some(s) = sender.as_mut() else {
        return upstream_failed("no connection".into());
    };
    match s.send_request(req).await {
        Ok(mut res) => {
            if res.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client) = client_upgrade
            {
                let server = hyper::upgrade::on(&mut res);
                tokio::spawn(async move {
                    if let (Ok(c), Ok(s)) = (client.await, server.await) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(c),
                            &mut TokioIo::new(s),
                        )
                        .await;
                    }
                });
            }
            res.map(Body::from)
        }
        Err(e) => {
            *sender = None;
            upstream_failed(e.to_string())
        }
    }
}

/// A new connection to `conn`'s destination (TLS verified for its name when it is TLS).
async fn connect(shared: &Shared, conn: &Conn) -> std::io::Result<SendRequest<Body>> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(SocketAddr::V4(conn.dst)),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    let handshake = |e: hyper::Error| std::io::Error::other(e.to_string());
    if conn.tls {
        let name = rustls::pki_types::ServerName::try_from(conn.host.clone())
            .map_err(std::io::Error::other)?;
        let tls = shared.tls.connect(name, tcp).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(handshake)?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(handshake)?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_are_compared_by_name() {
        assert_eq!(host_name("API.example.com:443"), "api.example.com");
        assert_eq!(host_name("api.example.com."), "api.example.com");
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }
}
