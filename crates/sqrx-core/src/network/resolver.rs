//! DNS under policy: one resolver process per runtime (the init program in another mode),
//! living in the namespace that holds the host side of the sandboxes' links. Every UDP query a
//! sandbox sends to port 53, whatever the address, is redirected to it (nftables). It answers
//! a name only if the sandbox's policy allows it: the query goes to the upstream resolver, and
//! the IPv4 addresses of the answer (the whole CNAME chain's) are added to the sandbox's
//! names set for the rules that allowed the name, so the sandbox can connect to them. Other
//! names get NXDOMAIN and are logged; AAAA queries get an empty answer (IPv6 is off inside).
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
use super::nft::Table;
use super::policy::{Destination, NetRule, NetworkPolicy};

/// Set in the environment of the init program to run it as the resolver.
pub const RESOLVER_ENV: &str = "SQRX_RESOLVER";

/// Queries a sandbox may send per second (a burst of twice that is absorbed).
const QUERIES_PER_SECOND: f64 = 50.0;

/// Addresses stay reachable at least this long after an answer, so a transfer started just
/// before a short TTL runs out is not cut (the rules check every packet).
const MIN_ALLOW: Duration = Duration::from_secs(600);

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

/// The port of the runtime's resolver, started with `program` if none runs.
pub(crate) fn ensure_running(
    config: &ResolverConfig,
    program: &(PathBuf, bool),
) -> std::io::Result<u16> {
    std::fs::create_dir_all(&config.dir)?;
    if running(&config.dir)
        && let Some(port) = std::fs::read_to_string(port_path(&config.dir))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    {
        return Ok(port);
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
    line.trim().parse().map_err(|_| {
        std::io::Error::other(format!(
            "the resolver did not start (see {}): {line:?}",
            config.dir.join("resolver.log").display()
        ))
    })
}

/// Call first thing in `main` of the init program: run as the resolver when asked to.
pub fn run_if_resolver() {
    if std::env::var_os(RESOLVER_ENV).is_some() {
        std::process::exit(match serve() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sqrx resolver: {e}");
                1
            }
        });
    }
}

/// A sandbox as the resolver sees it.
#[derive(Clone)]
struct Client {
    chain: String,
    policy: NetworkPolicy,
}

struct Shared {
    config: ResolverConfig,
    table: Table,
    /// When the policies were read, the generation they were read at, and the clients.
    clients: Mutex<(Instant, String, HashMap<u32, Client>)>,
    buckets: Mutex<HashMap<u32, (f64, Instant)>>,
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
    if let Some(ns) = &config.netns {
        let f = std::fs::File::open(ns)?;
        crate::sys::idmap::join_net(std::os::fd::AsFd::as_fd(&f))?;
    }
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let port = sock.local_addr()?.port();
    std::fs::write(port_path(&config.dir), format!("{port}\n"))?;
    println!("{port}");
    std::io::stdout().flush()?;
    // Nothing of the caller's stays open: stdout was its pipe.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
    let shared = Arc::new(Shared {
        table: Table {
            name: config.table.clone(),
            prefix: config.prefix.clone(),
            pool: config.pool,
        },
        config,
        clients: Mutex::new((
            Instant::now() - Duration::from_secs(60),
            String::new(),
            HashMap::new(),
        )),
        buckets: Mutex::new(HashMap::new()),
    });
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

/// Does `rule` name `name`?
fn names(rule: &NetRule, name: &str) -> bool {
    match &rule.to {
        Destination::Host(h) => h == name,
        Destination::Domain(d) => name.len() > d.len() + 1 && name.ends_with(&format!(".{d}")),
        Destination::Cidr { .. } => false,
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
                            policy: state.spec.network,
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
                addrs.push(a.0);
                ttl = ttl.min(r.ttl);
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
}
