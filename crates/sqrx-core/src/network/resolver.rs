//! DNS under policy: one resolver process per runtime (the init program in another mode),
//! living in the namespace that holds the host side of the sandboxes' links. Every UDP query a
//! sandbox sends to port 53, whatever the address, is redirected to it (nftables). It answers
//! a name only if the sandbox's policy allows it: the query goes to the upstream resolver, and
//! the IPv4 addresses of the answer (the whole CNAME chain's) are added to the sandbox's
//! names set for the rules that allowed the name, so the sandbox can connect to them. Other
//! names get NXDOMAIN and are logged; AAAA queries get an empty answer (IPv6 is off inside).
//!
//! The same process is the proxy that makes a shared address open only the names allowed:
//! a sandbox's TCP connections to ports 80 and 443 of addresses its names sets hold are
//! redirected to it (nftables), it reads the name the client asks for (TLS SNI from the
//! ClientHello, the HTTP `Host` header), and connects on only if the policy allows that name
//! and that name resolved to that address for that sandbox; other protocols and ports are
//! checked by address only.
//!
//! The process holds an exclusive lock on `<data>/network/resolver.lock` for its life (so
//! at most one runs per data directory), writes its port to `resolver.port` next to it, and
//! exits once no sandbox of the data directory has a network.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use serde::{Deserialize, Serialize};

use super::netlink::Netlink;
use super::nft::{DaemonPorts, Table};
use super::policy::{Destination, NetRule, NetworkPolicy};

/// Set in the environment of the init program to run it as the network daemon
/// ([`crate::roles::Role::NetworkDaemon`]).
pub const RESOLVER_ENV: &str = "SQRX_RESOLVER";

/// Queries a sandbox may send per second (a burst of twice that is absorbed).
const QUERIES_PER_SECOND: f64 = 50.0;

/// The shortest time an answer opens its addresses for (a TTL of 0 must still let the
/// connection that asked be made).
const MIN_ALLOW: Duration = Duration::from_secs(5);

/// What the resolver process is told on its standard input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResolverConfig {
    /// The runtime's sandboxes directory (their states say their slots and policies).
    pub sandboxes_dir: PathBuf,
    /// Where the lock, port and log live.
    pub dir: PathBuf,
    /// The address pool.
    pub pool: (Ipv4Addr, u8),
    /// The runtime's table (name, interface prefix).
    pub table: String,
    /// The interface prefix of the runtime's links.
    pub prefix: String,
    /// The namespace to serve in (`None`: the one it was started in).
    pub netns: Option<PathBuf>,
    /// Where allowed queries go.
    pub upstream: SocketAddr,
    /// The egress proxy for sandboxes with secrets.
    #[serde(default)]
    pub egress: Option<crate::secrets::proxy::EgressConfig>,
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("resolver.lock")
}

/// Rewritten by the runtime whenever a sandbox's policy changes: the resolver re-reads the
/// policies when its content differs from what it last saw.
pub(crate) fn generation_path(dir: &Path) -> PathBuf {
    dir.join("policies.gen")
}

/// Tell the resolver that policies changed.
pub(crate) fn bump_generation(dir: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let _ = std::fs::write(generation_path(dir), now.to_string());
}

fn port_path(dir: &Path) -> PathBuf {
    dir.join("resolver.port")
}

/// Is a resolver holding the lock in `dir`?
fn running(dir: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(dir))
    else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_held) => false, // released on drop: nobody held it
        Err(_) => true,
    }
}

fn parse_ports(text: &str) -> Option<DaemonPorts> {
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some(DaemonPorts {
        dns: it.next()??,
        proxy: it.next()??,
    })
}

/// The ports of the runtime's daemon, started with `program` if none runs.
pub(crate) fn ensure_running(
    config: &ResolverConfig,
    program: &(PathBuf, bool),
) -> std::io::Result<DaemonPorts> {
    std::fs::create_dir_all(&config.dir)?;
    if running(&config.dir)
        && let Some(ports) = std::fs::read_to_string(port_path(&config.dir))
            .ok()
            .and_then(|p| parse_ports(&p))
    {
        return Ok(ports);
    }
    let log = crate::paths::create_private(&config.dir.join("resolver.log"))?;
    let mut cmd = std::process::Command::new(&program.0);
    cmd.env_clear()
        .env(RESOLVER_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    if program.1 {
        cmd.env(crate::init::INIT_ENV, "1");
    }
    #[cfg(feature = "insecure-weaken")]
    if let Some(w) = std::env::var_os("SQRX_WEAKEN") {
        cmd.env("SQRX_WEAKEN", w);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let json = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    stdin.write_all(&json)?;
    stdin.write_all(b"\n")?;
    drop(stdin);
    let mut line = String::new();
    let out = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    std::io::BufReader::new(out).read_line(&mut line)?;
    // The resolver lives on by itself (its own session); nobody waits for it but the reaper
    // thread, so it never stays a zombie of this process.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    parse_ports(&line).ok_or_else(|| {
        std::io::Error::other(format!(
            "the resolver did not start (see {}): {line:?}",
            config.dir.join("resolver.log").display()
        ))
    })
}

/// The network daemon's main ([`crate::roles::Role::NetworkDaemon`]); returns the exit code.
pub(crate) fn main() -> i32 {
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sqrx resolver: {e}");
            1
        }
    }
}

/// Names answered per (sandbox slot, address), each with when it stops counting.
type Resolved = HashMap<(u32, Ipv4Addr), Vec<(String, Instant)>>;

/// A sandbox as the resolver sees it.
#[derive(Clone)]
struct Client {
    chain: String,
    policy: NetworkPolicy,
    /// Its id and directory.
    id: String,
    dir: PathBuf,
    /// It has secrets: all its HTTP and HTTPS come here.
    egress: bool,
}

struct Shared {
    config: ResolverConfig,
    table: Table,
    /// When the policies were read, the generation they were read at, and the clients.
    clients: Mutex<(Instant, String, HashMap<u32, Client>)>,
    buckets: Mutex<HashMap<u32, (f64, Instant)>>,
    /// Names answered per (sandbox slot, address), with when the answer stops counting.
    resolved: Mutex<Resolved>,
    /// The egress proxy (`None` when it could not start: sandboxes with secrets then get
    /// no HTTP at all, and no HTTPS to their secrets' hosts).
    egress: Option<crate::secrets::proxy::Egress>,
}

fn serve() -> std::io::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let config: ResolverConfig = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    // The lock first: a second resolver for the same runtime leaves at once.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(&config.dir))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| std::io::Error::other(format!("another resolver runs: {e}")))?;
    let _ = nix::unistd::setsid();
    // For operators (and the test that stops the proxy).
    let _ = std::fs::write(
        config.dir.join("resolver.pid"),
        std::process::id().to_string(),
    );
    if let Some(ns) = &config.netns {
        let f = std::fs::File::open(ns)?;
        crate::sys::idmap::join_net(std::os::fd::AsFd::as_fd(&f))?;
    }
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let port = sock.local_addr()?.port();
    let listener = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let proxy_port = listener.local_addr()?.port();
    std::fs::write(port_path(&config.dir), format!("{port} {proxy_port}\n"))?;
    println!("{port} {proxy_port}");
    std::io::stdout().flush()?;
    // Nothing of the caller's stays open: stdout was its pipe.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
    let egress = config.egress.clone().and_then(|c| {
        crate::secrets::proxy::Egress::start(c)
            .map_err(|e| eprintln!("sqrx resolver: the egress proxy did not start: {e}"))
            .ok()
    });
    let shared = Arc::new(Shared {
        egress,
        table: Table {
            name: config.table.clone(),
            prefix: config.prefix.clone(),
            pool: config.pool,
            proxy: Default::default(),
        },
        config,
        resolved: Mutex::new(HashMap::new()),
        clients: Mutex::new((
            Instant::now() - Duration::from_secs(60),
            String::new(),
            HashMap::new(),
        )),
        buckets: Mutex::new(HashMap::new()),
    });
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = shared.proxy(conn) {
                        eprintln!("sqrx proxy: {e}");
                    }
                });
            }
        });
    }
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let sock = Arc::new(sock);
    let mut buf = [0u8; 1500];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let query = buf[..n].to_vec();
                let (sock, shared) = (sock.clone(), shared.clone());
                std::thread::spawn(move || {
                    if let Some(answer) = shared.answer(&query, from) {
                        let _ = sock.send_to(&answer, from);
                    }
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if shared.refresh().is_empty() {
                    eprintln!("sqrx resolver: no sandbox has a network; exiting");
                    let _ = std::fs::remove_file(port_path(&shared.config.dir));
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where a connection of a sandbox with secrets goes.
enum Handoff<'a> {
    /// Straight to its destination.
    No,
    /// Through the egress proxy, for this name.
    Egress(&'a crate::secrets::proxy::Egress, String),
    /// Nowhere: it must be read and cannot be.
    Refuse(&'static str),
}

/// What the first bytes of a connection say about the name it is for.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Name(String),
    /// Not TLS with SNI, not HTTP with a Host header.
    Nameless,
    /// Not enough bytes yet.
    More,
}

/// The TLS SNI or the HTTP `Host` (without port) of a connection's first bytes.
fn requested_name(buf: &[u8]) -> Wanted {
    if buf.first() == Some(&0x16) {
        use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
        return match tls_parser::parse_tls_plaintext(buf) {
            Ok((_, record)) => {
                for msg in record.msg {
                    if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = msg
                        && let Some(ext) = hello.ext
                        && let Ok((_, exts)) = tls_parser::parse_tls_extensions(ext)
                    {
                        for e in exts {
                            if let TlsExtension::SNI(names) = e
                                && let Some((_, n)) = names.first()
                                && let Ok(n) = std::str::from_utf8(n)
                            {
                                return Wanted::Name(n.trim_end_matches('.').to_ascii_lowercase());
                            }
                        }
                    }
                }
                Wanted::Nameless
            }
            Err(tls_parser::nom::Err::Incomplete(_)) => Wanted::More,
            Err(_) => Wanted::Nameless,
        };
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Wanted::More;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("host").then(|| {
                let v = v.trim();
                let host = v.rsplit_once(':').map_or(v, |(h, p)| {
                    if p.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        v
                    }
                });
                Wanted::Name(host.trim_end_matches('.').to_ascii_lowercase())
            })
        })
        .unwrap_or(Wanted::Nameless)
}

/// Does `rule` name `name`?
fn names(rule: &NetRule, name: &str) -> bool {
    match &rule.to {
        Destination::Host(h) => h == name,
        Destination::Domain(d) => name.len() > d.len() + 1 && name.ends_with(&format!(".{d}")),
        Destination::Cidr { .. } => false,
    }
}

/// Does `policy` let a sandbox reach `addr:port` by address (a CIDR rule, or `all`)?
pub(crate) fn address_allowed(policy: &NetworkPolicy, addr: Ipv4Addr, port: u16) -> bool {
    let matches = |r: &NetRule| match r.to {
        Destination::Cidr { addr: net, prefix } => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(addr) & mask == u32::from(net) & mask && r.port.is_none_or(|p| p == port)
        }
        _ => false,
    };
    match policy {
        NetworkPolicy::None => false,
        NetworkPolicy::All => true,
        NetworkPolicy::List { allow, deny } => {
            !deny.iter().any(matches) && allow.iter().any(matches)
        }
    }
}

/// The ports (names sets) a policy allows `name` for; `None` when it refuses the name.
pub(crate) fn allowed_ports(policy: &NetworkPolicy, name: &str) -> Option<Vec<Option<u16>>> {
    match policy {
        NetworkPolicy::None => None,
        NetworkPolicy::All => Some(Vec::new()),
        NetworkPolicy::List { allow, deny } => {
            if deny.iter().any(|r| names(r, name) && r.port.is_none()) {
                return None;
            }
            let ports: Vec<Option<u16>> = allow
                .iter()
                .filter(|r| names(r, name))
                .map(|r| r.port)
                .collect();
            (!ports.is_empty()).then_some(ports)
        }
    }
}

impl Shared {
    /// Re-read the sandboxes' states when a policy changed (or a second passed); the
    /// clients by slot.
    fn refresh(&self) -> HashMap<u32, Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let generation =
            std::fs::read_to_string(generation_path(&self.config.dir)).unwrap_or_default();
        if clients.0.elapsed() >= Duration::from_secs(1) || generation != clients.1 {
            let mut map = HashMap::new();
            for e in std::fs::read_dir(&self.config.sandboxes_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let Ok(state) =
                    crate::sandbox::state::SandboxState::load(&e.path().join("state.json"))
                else {
                    continue;
                };
                if let Some(slot) = state.net {
                    map.insert(
                        slot.slot,
                        Client {
                            chain: super::Network::chain(slot),
                            dir: e.path(),
                            id: state.spec.id,
                            policy: state.spec.network,
                            egress: state.egress,
                        },
                    );
                }
            }
            *clients = (Instant::now(), generation, map);
        }
        clients.2.clone()
    }

    /// The sandbox at `addr`, if it is one of this runtime's.
    fn client(&self, addr: Ipv4Addr) -> Option<(u32, Client)> {
        let (base, prefix) = self.config.pool;
        let offset = u32::from(addr).checked_sub(u32::from(base))?;
        if offset >= 1 << (32 - u32::from(prefix)) || offset % 4 != 2 {
            return None;
        }
        let slot = offset / 4;
        if let Some(c) = self.refresh().get(&slot) {
            return Some((slot, c.clone()));
        }
        // A sandbox created within the last second: read again.
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).0 =
            Instant::now() - Duration::from_secs(60);
        self.refresh().get(&slot).map(|c| (slot, c.clone()))
    }

    fn within_rate(&self, slot: u32) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = b.entry(slot).or_insert((2.0 * QUERIES_PER_SECOND, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * QUERIES_PER_SECOND)
            .min(2.0 * QUERIES_PER_SECOND);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn answer(&self, query: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let SocketAddr::V4(from4) = from else {
            return None;
        };
        let (slot, client) = self.client(*from4.ip())?;
        let msg = Message::from_vec(query).ok()?;
        let q = msg.queries.first()?.clone();
        let name = q.name.to_lowercase().to_ascii();
        let name = name.trim_end_matches('.').to_string();
        let reply = |code: ResponseCode| {
            let mut r = Message::error_msg(msg.metadata.id, msg.metadata.op_code, code);
            r.metadata.recursion_desired = msg.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_query(q.clone());
            r.to_vec().ok()
        };
        if !self.within_rate(slot) {
            eprintln!("sqrx resolver: sandbox slot {slot}: rate limited ({name})");
            return reply(ResponseCode::Refused);
        }
        let Some(ports) = allowed_ports(&client.policy, &name) else {
            eprintln!("sqrx resolver: sandbox slot {slot}: refused {name}");
            return reply(ResponseCode::NXDomain);
        };
        if q.query_type == RecordType::AAAA {
            return reply(ResponseCode::NoError);
        }
        let answer = self.forward(query)?;
        let parsed = Message::from_vec(&answer).ok()?;
        if parsed.metadata.message_type != MessageType::Response
            || parsed.metadata.id != msg.metadata.id
        {
            return None;
        }
        let mut addrs = Vec::new();
        let mut ttl = u32::MAX;
        for r in &parsed.answers {
            if let RData::A(a) = &r.data {
                // An allowed name pointing at the host, another sandbox or a metadata
                // service (DNS rebinding) opens nothing.
                if super::nft::refused(a.0, self.config.pool) && !crate::weaken::off("net-rebind") {
                    eprintln!(
                        "sqrx resolver: sandbox slot {slot}: {name} answered {}: refused",
                        a.0
                    );
                    continue;
                }
                addrs.push(a.0);
                ttl = ttl.min(r.ttl);
            }
        }
        if !addrs.is_empty() {
            let until = Instant::now() + Duration::from_secs(u64::from(ttl)).max(MIN_ALLOW);
            let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            resolved.retain(|_, names| {
                names.retain(|(_, t)| *t > Instant::now());
                !names.is_empty()
            });
            for a in &addrs {
                let names = resolved.entry((slot, *a)).or_default();
                names.retain(|(n, _)| *n != name);
                names.push((name.clone(), until));
            }
        }
        if !addrs.is_empty() && !ports.is_empty() {
            let ttl = Duration::from_secs(u64::from(ttl)).max(MIN_ALLOW);
            let added = Netlink::netfilter().and_then(|mut nl| {
                for port in &ports {
                    self.table
                        .allow_addresses(&mut nl, &client.chain, *port, &addrs, ttl)?;
                }
                Ok(())
            });
            if let Err(e) = added {
                eprintln!("sqrx resolver: cannot allow the addresses of {name}: {e}");
                return reply(ResponseCode::ServFail);
            }
        }
        Some(answer)
    }

    /// Did `name` resolve to `addr` for the sandbox in `slot` (and not expire)?
    fn resolved_to(&self, slot: u32, addr: Ipv4Addr, name: &str) -> bool {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved
            .get(&(slot, addr))
            .is_some_and(|names| names.iter().any(|(n, t)| n == name && *t > Instant::now()))
    }

    /// Serve one redirected connection: read the name the client asks for, check it, and
    /// relay to the original destination.
    fn proxy(&self, mut client: std::net::TcpStream) -> std::io::Result<()> {
        use std::io::Read;
        let std::net::SocketAddr::V4(peer) = client.peer_addr()? else {
            return Ok(());
        };
        let Some((slot, sandbox)) = self.client(*peer.ip()) else {
            return Ok(());
        };
        let dst = crate::sys::netns::original_destination(&client)?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let name = loop {
            let n = client.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            match requested_name(&buf) {
                Wanted::Name(name) => break Some(name),
                Wanted::Nameless => break None,
                Wanted::More if buf.len() < 16 * 1024 => continue,
                Wanted::More => break None,
            }
        };
        let allowed = |policy: &NetworkPolicy| {
            name.as_deref().is_some_and(|n| {
                allowed_ports(policy, n)
                    .is_some_and(|ports| ports.iter().any(|p| p.is_none_or(|p| p == dst.port())))
            })
        };
        let resolved = name
            .as_deref()
            .is_some_and(|n| self.resolved_to(slot, *dst.ip(), n));
        // A sandbox with secrets sends all its HTTP and HTTPS here, also to addresses its
        // policy allows by address.
        let by_address = |c: &Client| c.egress && address_allowed(&c.policy, *dst.ip(), dst.port());
        if !((allowed(&sandbox.policy) && resolved) || by_address(&sandbox)) {
            eprintln!(
                "sqrx proxy: sandbox slot {slot}: refused {} for {dst}",
                name.as_deref().unwrap_or("a connection without a name")
            );
            if buf.first() != Some(&0x16) {
                let _ = client.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            return Ok(());
        }
        client.set_read_timeout(None)?;
        let _ = client.set_nodelay(true);
        let tls = buf.first() == Some(&0x16);
        let (mut upstream, _registration) = match self.egress_handoff(
            &sandbox,
            tls,
            name.as_deref(),
        ) {
            Handoff::No => (
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::V4(dst),
                    Duration::from_secs(10),
                )?,
                None,
            ),
            Handoff::Egress(egress, host) => {
                let conn = crate::secrets::proxy::Conn::new(
                    sandbox.id.clone(),
                    sandbox.dir.clone(),
                    dst,
                    host,
                    tls,
                );
                match egress.open(conn) {
                    Ok((stream, registration)) => (stream, Some(registration)),
                    Err(e) => {
                        eprintln!("sqrx proxy: sandbox slot {slot}: the egress proxy: {e}");
                        return Ok(());
                    }
                }
            }
            Handoff::Refuse(why) => {
                eprintln!("sqrx proxy: sandbox slot {slot}: refused {dst}: {why}");
                if !tls {
                    let _ = client.write_all(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                return Ok(());
            }
        };
        upstream.write_all(&buf)?;
        let relay = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let up = relay(client.try_clone()?, upstream.try_clone()?);
        let down = relay(upstream.try_clone()?, client.try_clone()?);
        // A policy change that refuses the name cuts the connection, as the nftables rules cut
        // connections they no longer allow (the answer's expiry does not: the connection is
        // in use).
        while !(up.is_finished() && down.is_finished()) {
            std::thread::sleep(Duration::from_millis(250));
            let still = self
                .client(*peer.ip())
                .is_some_and(|(s, c)| s == slot && (allowed(&c.policy) || by_address(&c)));
            if !still {
                eprintln!(
                    "sqrx proxy: sandbox slot {slot}: cut {} to {dst}: no longer allowed",
                    name.as_deref().unwrap_or("")
                );
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = upstream.shutdown(std::net::Shutdown::Both);
                break;
            }
        }
        let _ = up.join();
        let _ = down.join();
        Ok(())
    }

    /// Must the egress proxy read this connection of `sandbox` (TLS or not, for `name`)?
    fn egress_handoff(&self, sandbox: &Client, tls: bool, name: Option<&str>) -> Handoff<'_> {
        let (Some(name), Some(config)) = (name, self.config.egress.as_ref()) else {
            return Handoff::No;
        };
        if !sandbox.egress {
            return Handoff::No;
        }
        let read = if tls {
            config.intercept_https
                && crate::secrets::effective(&config.data_dir, &sandbox.dir)
                    .iter()
                    .any(|(_, s, _)| s.bound_to(name))
        } else {
            // Plain HTTP is always read: a placeholder in it is refused, whatever the host.
            true
        };
        match (read, &self.egress) {
            (false, _) => Handoff::No,
            (true, Some(e)) => Handoff::Egress(e, name.to_string()),
            (true, None) => Handoff::Refuse("the egress proxy is not running"),
        }
    }

    /// Ask the upstream resolver.
    fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        sock.connect(self.config.upstream).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        sock.send(query).ok()?;
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_allowed_by_host_and_domain_rules_and_denied_rules_win() {
        let p: NetworkPolicy = serde_json::from_str(
            r#"{"allow": ["pypi.org", "*.pythonhosted.org", "api.example.com:443", "10.0.0.0/8"],
                "deny": ["evil.pythonhosted.org"]}"#,
        )
        .expect("policy");
        assert_eq!(allowed_ports(&p, "pypi.org"), Some(vec![None]));
        assert_eq!(
            allowed_ports(&p, "files.pythonhosted.org"),
            Some(vec![None])
        );
        assert_eq!(allowed_ports(&p, "api.example.com"), Some(vec![Some(443)]));
        for refused in [
            "pythonhosted.org",
            "evil.pythonhosted.org",
            "pypi.org.evil.com",
            "xpypi.org",
            "example.com",
        ] {
            assert_eq!(allowed_ports(&p, refused), None, "{refused}");
        }
        assert_eq!(
            allowed_ports(&NetworkPolicy::All, "any.where"),
            Some(vec![])
        );
        assert_eq!(allowed_ports(&NetworkPolicy::None, "pypi.org"), None);
    }

    #[test]
    fn the_name_a_connection_asks_for_is_read_from_http_and_tls() {
        assert_eq!(
            requested_name(b"GET / HTTP/1.1\r\nHost: PyPI.org:8080\r\nAccept: */*\r\n\r\n"),
            Wanted::Name("pypi.org".into())
        );
        assert_eq!(
            requested_name(b"GET / HTTP/1.1\r\nHost: pypi.org"),
            Wanted::More
        );
        assert_eq!(requested_name(b"GET / HTTP/1.0\r\n\r\n"), Wanted::Nameless);
        let hello = sqrx_testkit::net::client_hello("files.pythonhosted.org");
        assert_eq!(
            requested_name(&hello),
            Wanted::Name("files.pythonhosted.org".into())
        );
        assert_eq!(requested_name(&hello[..20]), Wanted::More);
    }
}
