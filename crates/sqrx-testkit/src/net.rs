//! Network namespaces for tests that build a test "internet" of their own (sandbox networking),
//! HTTP responders inside them, and a TLS ClientHello to send through them. Every namespace is
//! deleted when its guard drops; names start with `sqrxt-` (the test script's leak check looks
//! for them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// Run `ip` with `args`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`/run/netns/<name>`), deleted when dropped.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// A new namespace with `lo` up; `tag` ends its name.
    pub fn new(tag: &str) -> Self {
        // Tests of one binary run as threads of one process: a counter tells them apart.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sqrxt-{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its path, for whatever takes a namespace file.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <name> args`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A descriptor of the namespace.
    pub fn fd(&self) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(self.path()).expect("open netns"))
    }

    /// Run a program inside (`ip netns exec`); its standard output.
    pub fn run(&self, cmd: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `f` on a thread that joined the namespace (a socket it makes stays in it).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        enter(self.fd().as_fd(), f)
    }
}

/// Run `f` on a thread that joined the network namespace `ns` (a socket it makes stays in it);
/// the caller's threads never move. For namespaces made some other way than [`Netns`].
pub fn enter<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join the test namespace");
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// TCP servers in a namespace answering any request with an HTTP response whose body is
/// `hello <their address>`, until dropped.
pub struct HttpServers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HttpServers {
    /// Listen on every address of `addrs` inside `ns`.
    pub fn start(ns: &Netns, addrs: &[SocketAddr]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for addr in addrs {
            let addr = *addr;
            let listener = ns
                .enter(move || TcpListener::bind(addr))
                .expect("bind a test server in its namespace");
            listener.set_nonblocking(true).expect("nonblocking");
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 1024];
                            let _ = c.read(&mut buf);
                            let body = format!("hello {addr}\n");
                            let _ = write!(
                                c,
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        HttpServers { stop, threads }
    }
}

impl Drop for HttpServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A minimal TLS 1.2 ClientHello carrying `sni` (enough for whatever reads the SNI).
pub fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = vec![0, 0];
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A TLS server configuration presenting `chain` with the PKCS#8 `key`.
#[allow(
    deprecated,
    reason = "rustls deprecates its ring provider for lacking post-quantum key exchange; a \
              test server does not need it"
)]
fn tls_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: Vec<u8>,
) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("TLS config"),
    )
}

/// HTTPS servers in a namespace (TLS with a self-signed certificate for `names`) answering any
/// request with an HTTP response whose body is `hello <their address> <the SNI>`, until
/// dropped. Clients inside sandboxes skip verification (`curl -k`).
pub struct HttpsServers {
    stop: Arc<AtomicBool>,
}

impl HttpsServers {
    /// Listen on every address of `addrs` inside `ns`.
    pub fn start(ns: &Netns, addrs: &[SocketAddr], names: &[&str]) -> Self {
        let certified = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("a test certificate");
        let config = tls_config(
            vec![certified.cert.der().clone()],
            certified.key_pair.serialize_der(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        for addr in addrs {
            let addr = *addr;
            let listener = ns
                .enter(move || TcpListener::bind(addr))
                .expect("bind a test HTTPS server in its namespace");
            listener.set_nonblocking(true).expect("nonblocking");
            let (stop, config) = (stop.clone(), config.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((tcp, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let config = config.clone();
                    std::thread::spawn(move || {
                        let _ = tcp.set_nonblocking(false);
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(3)));
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, tcp);
                        let mut buf = [0u8; 2048];
                        if tls.read(&mut buf).is_err() {
                            return;
                        }
                        let sni = tls.conn.server_name().unwrap_or("-").to_string();
                        let body = format!("hello {addr} {sni}\n");
                        let _ = write!(
                            tls,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.flush();
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    });
                }
            });
        }
        HttpsServers { stop }
    }
}

impl Drop for HttpsServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request a [`RecordingServers`] server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The address it came in on.
    pub addr: SocketAddr,
    /// The TLS SNI (`None` for plain HTTP).
    pub sni: Option<String>,
    /// The request line and headers, as received.
    pub head: String,
    /// The body (chunked bodies decoded).
    pub body: Vec<u8>,
}

/// HTTP/1.1 servers in a namespace that record every request (head and body) and count
/// connections per address, answering `ok <method> <path>` (never echoing what they got), until
/// dropped. TLS ones present a certificate for `names` from a CA of their own
/// ([`RecordingServers::ca_pem`]); connections are kept alive as HTTP/1.1 allows.
pub struct RecordingServers {
    stop: Arc<AtomicBool>,
    requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
    connections: Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, usize>>>,
    /// The CA the TLS servers' certificate chains to (PEM).
    pub ca_pem: String,
}

/// Read one HTTP/1.x request (head and body) from `r`; `None` at the end of the stream.
fn read_request(r: &mut impl std::io::BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            if head.is_empty() {
                continue;
            }
            break;
        }
        head.push_str(&line);
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0u8; n];
        r.read_exact(&mut body).ok()?;
    }
    Some((head, body))
}

/// Serve requests on one connection until it closes.
fn serve_recording<S: Read + Write>(
    stream: S,
    addr: SocketAddr,
    sni: Option<String>,
    requests: &std::sync::Mutex<Vec<Recorded>>,
) {
    let mut r = std::io::BufReader::new(stream);
    while let Some((head, body)) = read_request(&mut r) {
        let mut words = head.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("-").to_string(),
            words.next().unwrap_or("-").to_string(),
        );
        let close = head.to_ascii_lowercase().contains("connection: close")
            || head.lines().next().is_some_and(|l| l.ends_with("HTTP/1.0"));
        requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                addr,
                sni: sni.clone(),
                head,
                body,
            });
        let answer = format!("ok {method} {path}\n");
        // One write: a response in pieces meets Nagle and delayed ACKs (40 ms a request).
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let w = r.get_mut();
        let sent = w.write_all(response.as_bytes()).and_then(|()| w.flush());
        if sent.is_err() || close {
            return;
        }
    }
}

impl RecordingServers {
    /// Listen with TLS on `tls` and in plain HTTP on `plain`, inside `ns`.
    pub fn start(ns: &Netns, tls: &[SocketAddr], plain: &[SocketAddr], names: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sqrx test upstream CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA");
        let leaf_key = KeyPair::generate().expect("a key");
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("a certificate");
        let config = tls_config(
            vec![leaf.der().clone(), ca.der().clone()],
            leaf_key.serialize_der(),
        );
        let me = RecordingServers {
            stop: Arc::new(AtomicBool::new(false)),
            requests: Arc::default(),
            connections: Arc::default(),
            ca_pem: ca.pem(),
        };
        let all = tls
            .iter()
            .map(|a| (*a, true))
            .chain(plain.iter().map(|a| (*a, false)));
        for (addr, is_tls) in all {
            let listener = ns
                .enter(move || TcpListener::bind(addr))
                .expect("bind a recording server in its namespace");
            listener.set_nonblocking(true).expect("nonblocking");
            let (stop, config) = (me.stop.clone(), config.clone());
            let (requests, connections) = (me.requests.clone(), me.connections.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((tcp, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    *connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(addr)
                        .or_default() += 1;
                    let (config, requests) = (config.clone(), requests.clone());
                    std::thread::spawn(move || {
                        let _ = tcp.set_nonblocking(false);
                        let _ = tcp.set_nodelay(true);
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                        if !is_tls {
                            serve_recording(tcp, addr, None, &requests);
                            return;
                        }
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, tcp);
                        // Finish the handshake first, to know the SNI.
                        while tls.conn.is_handshaking() {
                            if tls.conn.complete_io(&mut tls.sock).is_err() {
                                return;
                            }
                        }
                        let sni = tls.conn.server_name().map(str::to_string);
                        serve_recording(tls, addr, sni, &requests);
                    });
                }
            });
        }
        me
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections accepted on `addr` so far.
    pub fn connections(&self, addr: SocketAddr) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for RecordingServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
