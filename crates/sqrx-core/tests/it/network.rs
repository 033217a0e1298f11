//! Sandbox networking against a test "internet" made of network namespaces this test creates:
//! the runtime's uplink namespace (`rt`, where the host side of every sandbox link and the
//! runtime's nftables table live, configured with `NetworkConfig::netns`) and an `inet`
//! namespace behind it with HTTP servers on 10.1.0.1 and 10.2.0.1. No packet can leave the
//! machine: `rt`'s only route out is `inet`, and `inet` has no route out at all.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqrx_core::network::{NetworkConfig, NetworkPolicy};
use sqrx_core::{Sandbox, SandboxSpec};
use sqrx_testkit::net::{HttpServers, HttpsServers, Netns, client_hello};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, sh};

/// A DNS authority for `*.test` names, answering until dropped: `allowed.test` and
/// `api.svc.test` are 10.1.0.1, `other.test` 10.2.0.1, `alias.test` a CNAME of
/// `allowed.test`; anything else NXDOMAIN.
struct Authority {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Authority {
    fn start(ns: &Netns, addr: SocketAddr) -> Self {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::{A, CNAME};
        use hickory_proto::rr::{Name, RData, Record, RecordType};
        let sock = ns
            .enter(move || std::net::UdpSocket::bind(addr))
            .expect("bind the test DNS authority");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries.first().cloned() else {
                    continue;
                };
                let name = query.name.to_ascii().trim_end_matches('.').to_lowercase();
                let a = |n: &str, ip: [u8; 4]| {
                    Record::from_rdata(
                        Name::from_ascii(n).expect("name"),
                        60,
                        RData::A(A(Ipv4Addr::from(ip))),
                    )
                };
                let answers: Option<Vec<Record>> = match name.as_str() {
                    "allowed.test" | "api.svc.test" => Some(vec![a(&name, [10, 1, 0, 1])]),
                    "other.test" => Some(vec![a(&name, [10, 2, 0, 1])]),
                    "stream.test" => Some(vec![a(&name, [10, 4, 0, 1])]),
                    // The secrets tests' upstreams (tests/it/secrets.rs).
                    "secret.test" => Some(vec![a(&name, [10, 5, 0, 1])]),
                    "leak.test" => Some(vec![a(&name, [10, 6, 0, 1])]),
                    // A record with a short TTL (the resolver opens addresses for 5 s at least).
                    "short.test" => {
                        let mut r = a(&name, [10, 1, 0, 1]);
                        r.ttl = 1;
                        Some(vec![r])
                    }
                    // Shares allowed.test's address (two virtual hosts, one server).
                    "blocked.test" => Some(vec![a(&name, [10, 1, 0, 1])]),
                    // An allowed name pointing at a metadata address (DNS rebinding).
                    "rebind.test" => Some(vec![a(&name, [169, 254, 169, 254])]),
                    "alias.test" => Some(vec![
                        Record::from_rdata(
                            Name::from_ascii("alias.test").expect("name"),
                            60,
                            RData::CNAME(CNAME(Name::from_ascii("allowed.test").expect("name"))),
                        ),
                        a("allowed.test", [10, 1, 0, 1]),
                    ]),
                    _ => None,
                };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.add_query(query.clone());
                match answers {
                    Some(records) if query.query_type == RecordType::A => {
                        r.add_answers(records);
                    }
                    Some(_) => {}
                    None => r.metadata.response_code = ResponseCode::NXDomain,
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Authority {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The test internet and a runtime whose sandboxes route through it. Field order is drop
/// order: sandboxes' runtime first, then servers, then the namespaces.
pub(crate) struct Bed {
    pub(crate) t: TestRuntime,
    _servers: HttpServers,
    _tls: HttpsServers,
    _dns: Authority,
    pub(crate) rt_ns: Netns,
    pub(crate) inet: Netns,
}

const UPLINK: &str = "sqrxup0";

impl Bed {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A bed whose runtime's network settings `tweak` changes.
    pub(crate) fn with(tweak: impl Fn(&mut NetworkConfig)) -> Self {
        let rt_ns = Netns::new("rt");
        let inet = Netns::new("inet");
        // The runtime's uplink: a veth pair between rt and inet, rt's default route via inet.
        rt_ns.ip(&[
            "link", "add", UPLINK, "type", "veth", "peer", "name", "sqrxup1", "netns", &inet.name,
        ]);
        rt_ns.ip(&["addr", "add", "10.200.0.2/24", "dev", UPLINK]);
        rt_ns.ip(&["link", "set", UPLINK, "up"]);
        rt_ns.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        inet.ip(&["addr", "add", "10.200.0.1/24", "dev", "sqrxup1"]);
        inet.ip(&["link", "set", "sqrxup1", "up"]);
        inet.ip(&["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.2.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.3.0.53/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.4.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.5.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.6.0.1/32", "dev", "lo"]);
        // A "metadata service" a sandbox must never reach.
        inet.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
        let dns = Authority::start(&inet, SocketAddr::from(([10, 3, 0, 53], 53)));
        let sa = |a: [u8; 4], p: u16| SocketAddr::from((Ipv4Addr::from(a), p));
        let servers = HttpServers::start(
            &inet,
            &[
                sa([10, 1, 0, 1], 8080),
                sa([10, 1, 0, 1], 8081),
                sa([10, 1, 0, 1], 80),
                sa([10, 2, 0, 1], 8080),
                sa([169, 254, 169, 254], 80),
                sa([169, 254, 169, 254], 8080),
            ],
        );
        let t = TestRuntime::with(|c| {
            c.network = network_config(&rt_ns);
            tweak(&mut c.network);
        });
        let tls = HttpsServers::start(
            &inet,
            &[sa([10, 1, 0, 1], 443)],
            &["allowed.test", "blocked.test"],
        );
        Bed {
            t,
            _servers: servers,
            _tls: tls,
            _dns: dns,
            rt_ns,
            inet,
        }
    }

    fn create(&self, id: &str, network: NetworkPolicy) -> Sandbox {
        let mut spec = SandboxSpec::new(id);
        spec.network = network;
        self.t
            .rt
            .create(spec)
            .unwrap_or_else(|e| panic!("create {id}: {e}"))
    }

    /// Host-side interfaces of sandboxes in the runtime's namespace.
    fn sandbox_links(&self) -> Vec<String> {
        self.rt_ns
            .run(&["ls", "/sys/class/net"])
            .split_whitespace()
            .filter(|n| n.starts_with("sq") && !n.starts_with("sqrxup"))
            .map(String::from)
            .collect()
    }

    /// Another runtime object on the bed's data directory (a server restart).
    pub(crate) fn reopen(&self) -> sqrx_core::Runtime {
        let mut c = sqrx_core::RuntimeConfig::new(self.t.dir.path());
        c.init_path = Some(env!("CARGO_BIN_EXE_sqrx-init").into());
        c.network = network_config(&self.rt_ns);
        sqrx_core::Runtime::open(c).expect("reopen")
    }

    /// The runtime's nftables ruleset, as `nft` lists it.
    fn ruleset(&self) -> String {
        self.rt_ns.run(&["nft", "list", "ruleset"])
    }
}

/// The runtime's network settings for a bed whose uplink namespace is `rt_ns`.
fn network_config(rt_ns: &Netns) -> NetworkConfig {
    NetworkConfig {
        netns: Some(rt_ns.path().into()),
        uplink: Some(UPLINK.into()),
        dns_upstream: Some(SocketAddr::from(([10, 3, 0, 53], 53))),
        ..NetworkConfig::default()
    }
}

/// The name of the (only) sqrx table in a ruleset listing.
fn table_name(ruleset: &str) -> String {
    ruleset
        .lines()
        .find_map(|l| l.strip_prefix("table inet "))
        .map(|l| l.trim_end_matches(" {").to_string())
        .expect("a table")
}

/// An HTTP GET of `http://host:port/` from inside (busybox `nc`: Debian's static busybox
/// `wget` crashes); the answer, or why not.
fn fetch(sb: &Sandbox, url: &str) -> Result<String, String> {
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .replace(':', " ");
    let r = sh(
        sb,
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {hostport} 2>&1"),
    );
    let text = r.stdout_text();
    if r.exit_code == Some(0) && text.contains("hello") {
        Ok(text)
    } else {
        Err(text)
    }
}

fn reaches(sb: &Sandbox, url: &str) -> bool {
    fetch(sb, url).is_ok()
}

#[test]
fn a_sandbox_without_a_network_has_only_loopback() {
    if !privileged("network_none") {
        return;
    }
    let bed = Bed::new();
    let sb = bed.create("net-none", NetworkPolicy::None);
    let links = crate::sandbox::out(&sb, "ls /sys/class/net");
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    assert!(sb.network_info().is_none());
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"));
    assert!(bed.sandbox_links().is_empty());
}

#[test]
fn policies_allow_what_they_name_and_nothing_else() {
    if !privileged("network_policies") {
        return;
    }
    let bed = Bed::new();
    let all = bed.create("net-all", NetworkPolicy::All);
    let info = all.network_info().expect("a link");
    assert!(reaches(&all, "http://10.1.0.1:8080/"));
    assert!(reaches(&all, "http://10.2.0.1:8080/"));
    // Inside: eth0 with its address, IPv6 off.
    let links = crate::sandbox::out(&all, "ls /sys/class/net; cat /sys/class/net/eth0/operstate");
    assert_eq!(
        links.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo", "up"]
    );
    let trie = crate::sandbox::out(&all, "cat /proc/net/fib_trie");
    assert!(trie.contains(&info.address.to_string()), "{trie}");
    assert_eq!(
        crate::sandbox::out(&all, "cat /proc/sys/net/ipv6/conf/all/disable_ipv6").trim(),
        "1"
    );

    let cidr = bed.create(
        "net-cidr",
        NetworkPolicy::allow(&["10.1.0.0/16"]).expect("policy"),
    );
    assert!(reaches(&cidr, "http://10.1.0.1:8080/"));
    assert!(reaches(&cidr, "http://10.1.0.1:8081/"));
    assert!(!reaches(&cidr, "http://10.2.0.1:8080/"));

    let port = bed.create(
        "net-port",
        NetworkPolicy::allow(&["10.1.0.1:8080"]).expect("policy"),
    );
    assert!(reaches(&port, "http://10.1.0.1:8080/"));
    assert!(!reaches(&port, "http://10.1.0.1:8081/"));
    assert!(!reaches(&port, "http://10.2.0.1:8080/"));

    let deny = bed.create(
        "net-deny",
        serde_json::from_str(r#"{"allow": ["10.0.0.0/8"], "deny": ["10.2.0.0/16"]}"#)
            .expect("policy"),
    );
    assert!(reaches(&deny, "http://10.1.0.1:8080/"));
    assert!(!reaches(&deny, "http://10.2.0.1:8080/"));

    // Never reachable, whatever the policy: the host (its uplink address and the sandbox's
    // gateway), other sandboxes, link-local metadata. A server listens on the host's side.
    let host = HttpServers::start(
        &bed.rt_ns,
        &[
            SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 9090)),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9091)),
        ],
    );
    assert!(!reaches(&all, "http://10.200.0.2:9090/"));
    assert!(!reaches(&all, "http://169.254.169.254:8080/"));
    // The test internet ends at inet, which has no route out: no packet leaves the machine.
    assert!(!bed.inet.run(&["ip", "route"]).contains("default"));
    assert!(!reaches(&all, "http://192.0.2.1:80/"));
    assert!(!reaches(&all, &format!("http://{}:9091/", info.gateway)));
    let other = cidr.network_info().expect("a link").address;
    let listening = std::thread::scope(|s| {
        s.spawn(|| {
            sh(
                &cidr,
                "busybox timeout 4 busybox nc -l -p 7000 >/dev/null 2>&1 || true",
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        fetch(&all, &format!("http://{other}:7000/"))
    });
    assert!(listening.is_err(), "reached another sandbox: {listening:?}");
    drop(host);
    // ICMP is refused under a list (and raw sockets are not available to sandbox root).
    assert_ne!(
        sh(&cidr, "busybox ping -c 1 -W 1 10.1.0.1").exit_code,
        Some(0)
    );
}

#[test]
fn a_policy_changes_live_and_destroy_leaves_nothing() {
    if !privileged("network_live") {
        return;
    }
    let bed = Bed::new();
    let mut sb = bed.create("net-live", NetworkPolicy::All);
    assert!(reaches(&sb, "http://10.1.0.1:8080/"));
    let t = Instant::now();
    sb.set_network(NetworkPolicy::allow(&["10.2.0.0/16"]).expect("policy"))
        .expect("set_network");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"));
    assert!(reaches(&sb, "http://10.2.0.1:8080/"));
    // The state keeps the policy; another handle sees it.
    let again = bed.t.rt.get("net-live").expect("get");
    assert_eq!(again.network_policy(), sb.network_policy());

    // A sandbox created without a network gets one live.
    let mut late = bed.create("net-late", NetworkPolicy::None);
    assert!(!reaches(&late, "http://10.1.0.1:8080/"));
    late.set_network(NetworkPolicy::All).expect("set_network");
    assert!(reaches(&late, "http://10.1.0.1:8080/"));

    // A restore restarts init in a new namespace: the link comes back with the same address.
    let before = sb.network_info().expect("link");
    sb.snapshot(Some("s1")).expect("snapshot");
    sb.restore("s1").expect("restore");
    assert_eq!(sb.network_info(), Some(before));
    assert!(reaches(&sb, "http://10.2.0.1:8080/"));
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"));

    // A second runtime object on the same data directory (a server restart) rebuilds the
    // table from the sandboxes' states: nothing duplicated, nothing lost.
    let rules_before = bed.ruleset();
    let reopened = bed.reopen();
    let mut spec = SandboxSpec::new("net-after");
    spec.network = NetworkPolicy::All;
    let after = reopened.create(spec).expect("create after reopen");
    assert!(reaches(&after, "http://10.1.0.1:8080/"));
    assert!(reaches(&sb, "http://10.2.0.1:8080/"));
    let rules_after = bed.ruleset();
    let count = |s: &str, what: &str| s.matches(what).count();
    assert_eq!(
        count(&rules_after, "masquerade"),
        count(&rules_before, "masquerade")
    );
    assert_eq!(
        count(&rules_after, "chain sb_"),
        count(&rules_before, "chain sb_") + 1
    );

    // The table gone (a reboot of the namespace's rules, an operator's `nft flush`): the next
    // runtime open rebuilds it from the sandboxes' states, and they work again.
    bed.rt_ns.run(&[
        "nft",
        "delete",
        "table",
        "inet",
        &table_name(&bed.ruleset()),
    ]);
    assert!(!reaches(&after, "http://10.1.0.1:8080/"));
    let _reopened_again = bed.reopen();
    assert!(reaches(&after, "http://10.1.0.1:8080/"));
    assert!(reaches(&sb, "http://10.2.0.1:8080/"));
    assert_eq!(
        count(&bed.ruleset(), "chain sb_"),
        count(&rules_after, "chain sb_")
    );

    for s in [sb, late, after] {
        s.destroy().expect("destroy");
    }
    assert!(bed.sandbox_links().is_empty(), "{:?}", bed.sandbox_links());
    let left = bed.ruleset();
    assert_eq!(count(&left, "chain sb_"), 0, "{left}");
    assert!(!left.contains("jump sb_"), "{left}");
}

#[test]
fn a_hundred_networked_sandboxes_start_at_once_with_unique_addresses() {
    if !privileged("network_many") {
        return;
    }
    let bed = Bed::new();
    let sandboxes: Vec<Sandbox> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let bed = &bed;
                s.spawn(move || bed.create(&format!("net-many-{i}"), NetworkPolicy::All))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread"))
            .collect()
    });
    let mut addresses: Vec<Ipv4Addr> = sandboxes
        .iter()
        .map(|s| s.network_info().expect("link").address)
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 100);
    assert_eq!(bed.sandbox_links().len(), 100);
    for sb in sandboxes.iter().step_by(10) {
        assert!(reaches(sb, "http://10.1.0.1:8080/"), "{}", sb.id());
    }
    std::thread::scope(|s| {
        for sb in sandboxes {
            s.spawn(move || sb.destroy().expect("destroy"));
        }
    });
    assert!(bed.sandbox_links().is_empty());
    assert_eq!(bed.ruleset().matches("chain sb_").count(), 0);
}

/// Resolve `name` from inside (busybox's own DNS client, through the sandbox's resolv.conf,
/// or through `server`); the addresses answered.
fn resolve(sb: &Sandbox, name: &str, server: Option<&str>) -> Vec<Ipv4Addr> {
    let r = sh(
        sb,
        &format!(
            "busybox nslookup -type=a {name} {} 2>&1",
            server.unwrap_or("")
        ),
    );
    let text = r.stdout_text();
    // Skip the server's own address line(s): answers follow the "Name:" line.
    text.split("Name:")
        .skip(1)
        .flat_map(|part| {
            part.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn names_resolve_and_open_only_what_the_policy_allows() {
    if !privileged("network_names") {
        return;
    }
    let bed = Bed::new();
    let mut sb = bed.create(
        "net-names",
        NetworkPolicy::allow(&["allowed.test", "*.svc.test", "alias.test"]).expect("policy"),
    );
    let resolv = crate::sandbox::out(&sb, "cat /etc/resolv.conf");
    let gateway = sb.network_info().expect("link").gateway;
    assert_eq!(resolv.trim(), format!("nameserver {gateway}"));
    // An allowed address stays closed until the sandbox resolves a name that leads to it.
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"));
    assert_eq!(
        resolve(&sb, "allowed.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    assert!(reaches(&sb, "http://10.1.0.1:8080/"));
    assert!(reaches(&sb, "http://10.1.0.1:8081/"));
    assert_eq!(
        resolve(&sb, "api.svc.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    assert_eq!(
        resolve(&sb, "alias.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    // Other names are NXDOMAIN, and their addresses stay closed.
    assert!(resolve(&sb, "other.test", None).is_empty());
    assert!(resolve(&sb, "svc.test", None).is_empty());
    assert!(!reaches(&sb, "http://10.2.0.1:8080/"));
    // Asking another resolver directly changes nothing: every DNS query goes to sqrx's.
    assert!(resolve(&sb, "other.test", Some("10.3.0.53")).is_empty());
    assert!(resolve(&sb, "other.test", Some("10.2.0.1")).is_empty());
    assert!(!reaches(&sb, "http://10.2.0.1:8080/"));

    // Queries are rate-limited per sandbox (50/s, bursts of 100): 400 lookups as fast as the
    // sandbox can send them are not all answered. Four senders at once, so that the rate
    // passes the limit even where starting each nslookup is slow (a loaded machine).
    let burst = sh(
        &sb,
        "for j in 1 2 3 4; do (for i in $(busybox seq 100); do busybox nslookup -type=a \
         allowed.test; done &) ; done 2>&1 | busybox grep -c 'Address: 10.1.0.1'",
    );
    let answered: usize = burst.stdout_text().trim().parse().unwrap_or(0);
    assert!((50..400).contains(&answered), "{answered} of 400 answered");
    let log = std::fs::read_to_string(bed.t.dir.path().join("network/resolver.log"))
        .expect("resolver log");
    assert!(log.contains("refused other.test"), "{log}");
    assert!(log.contains("rate limited"), "{log}");
    // The bucket refills.
    std::thread::sleep(Duration::from_secs(1));

    // A policy change empties what earlier answers opened.
    sb.set_network(NetworkPolicy::allow(&["other.test"]).expect("policy"))
        .expect("set_network");
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"));
    assert!(resolve(&sb, "allowed.test", None).is_empty());
    assert_eq!(
        resolve(&sb, "other.test", None),
        [Ipv4Addr::new(10, 2, 0, 1)]
    );
    assert!(reaches(&sb, "http://10.2.0.1:8080/"));
    sb.destroy().expect("destroy");
    assert_eq!(bed.ruleset().matches("sb_").count(), 0, "{}", bed.ruleset());
}

/// Send a request for `host` (HTTP Host header, or TLS SNI on port 443) to `ip:port` from
/// inside; whether the server answered.
fn asks_for(sb: &Sandbox, ip: &str, port: u16, host: &str) -> bool {
    let request = if port == 443 {
        client_hello(host)
    } else {
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let file = format!("/tmp/request-{host}-{port}");
    sb.write_file(&file, &request, 0o644)
        .expect("write request");
    let r = sh(
        sb,
        &format!("busybox nc -w 2 {ip} {port} < {file} 2>/dev/null"),
    );
    if port == 443 {
        // The TLS server answers this bare ClientHello with a record (a handshake or an
        // alert): it got it. The proxy answers a refused one with nothing.
        matches!(r.stdout.first(), Some(0x15 | 0x16))
    } else {
        r.stdout_text().contains("hello")
    }
}

#[test]
fn an_address_shared_by_an_allowed_and_a_refused_name_serves_only_the_allowed_one() {
    if !privileged("network_shared_address") {
        return;
    }
    let bed = Bed::new();
    let names = bed.create(
        "net-shared",
        NetworkPolicy::allow(&["allowed.test", "rebind.test"]).expect("policy"),
    );
    assert_eq!(
        resolve(&names, "allowed.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    assert!(resolve(&names, "blocked.test", None).is_empty());
    // Same address, two names: only the allowed one is served, over HTTP and TLS.
    assert!(asks_for(&names, "10.1.0.1", 80, "allowed.test"));
    assert!(!asks_for(&names, "10.1.0.1", 80, "blocked.test"));
    assert!(asks_for(&names, "10.1.0.1", 443, "allowed.test"));
    assert!(!asks_for(&names, "10.1.0.1", 443, "blocked.test"));
    assert!(!asks_for(&names, "10.1.0.1", 443, "10.1.0.1"));
    // An allowed name whose answer is a metadata address opens nothing.
    resolve(&names, "rebind.test", None);
    assert!(!asks_for(&names, "169.254.169.254", 80, "rebind.test"));
    assert!(!reaches(&names, "http://169.254.169.254:8080/"));
    // Other ports of the address are checked by address only (docs/network.md says so).
    assert!(reaches(&names, "http://10.1.0.1:8080/"));

    // A CIDR rule is about addresses: no name check there.
    let cidr = bed.create(
        "net-shared-cidr",
        NetworkPolicy::allow(&["10.1.0.0/16"]).expect("policy"),
    );
    assert!(asks_for(&cidr, "10.1.0.1", 80, "blocked.test"));
}

#[test]
fn real_clients_reach_allowed_names_and_nothing_else() {
    if !privileged("network_clients") {
        return;
    }
    let bed = Bed::new();
    bed.t.python_layer();
    let web = sqrx_core::LayerName::new("100-web").expect("name");
    bed.t
        .rt
        .layers()
        .from_host(
            &web,
            &["/usr/bin/curl".into(), "/usr/bin/node".into()],
            &Default::default(),
        )
        .expect("curl and node layer");
    let mut spec = SandboxSpec::new("net-clients");
    spec.layers = vec!["000-base".into(), "100-py".into(), "100-web".into()];
    spec.network = NetworkPolicy::allow(&["allowed.test"]).expect("policy");
    let sb = bed.t.rt.create(spec).expect("create");
    // glibc's resolver (curl, Python) and libuv's (Node), through /etc/resolv.conf.
    for (client, cmd) in [
        ("curl", "curl -sS -m 5 http://{host}:8080/"),
        (
            "python",
            "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{host}:8080/', timeout=5).read().decode())\"",
        ),
        (
            "node",
            "node -e \"fetch('http://{host}:8080/').then(r => r.text()).then(t => console.log(t))\"",
        ),
    ] {
        let allowed = sh(
            &sb,
            &format!("{} 2>&1", cmd.replace("{host}", "allowed.test")),
        );
        assert!(
            allowed.stdout_text().contains("hello 10.1.0.1:8080"),
            "{client}: {}",
            allowed.stdout_text()
        );
        let refused = sh(
            &sb,
            &format!("{} 2>&1", cmd.replace("{host}", "other.test")),
        );
        assert!(
            !refused.stdout_text().contains("hello"),
            "{client} reached other.test: {}",
            refused.stdout_text()
        );
    }
    // HTTPS: the proxy reads the SNI, the server is real TLS (self-signed, so no verification).
    for (client, cmd) in [
        ("curl", "curl -sSk -m 5 https://allowed.test/"),
        (
            "python",
            "python3 -c \"import ssl, urllib.request; print(urllib.request.urlopen('https://allowed.test/', timeout=5, context=ssl._create_unverified_context()).read().decode())\"",
        ),
        (
            "node",
            "NODE_TLS_REJECT_UNAUTHORIZED=0 node -e \"fetch('https://allowed.test/').then(r => r.text()).then(t => console.log(t))\"",
        ),
    ] {
        let r = sh(&sb, &format!("{cmd} 2>&1"));
        assert!(
            r.stdout_text().contains("hello 10.1.0.1:443 allowed.test"),
            "{client} over TLS: {}",
            r.stdout_text()
        );
    }
    // The same address for a name the policy refuses (the client skips DNS): no TLS session.
    let r = sh(
        &sb,
        "curl -sSk -m 5 --resolve blocked.test:443:10.1.0.1 https://blocked.test/ 2>&1",
    );
    assert!(!r.stdout_text().contains("hello"), "{}", r.stdout_text());
}

/// Servers that, once a client has said something, send it `tick` every 100 ms until the
/// connection breaks (or the test ends).
struct Tickers {
    stop: Arc<AtomicBool>,
}

impl Tickers {
    fn start(ns: &Netns, addrs: &[SocketAddr]) -> Self {
        use std::io::{Read, Write};
        let stop = Arc::new(AtomicBool::new(false));
        for addr in addrs {
            let addr = *addr;
            let listener = ns
                .enter(move || std::net::TcpListener::bind(addr))
                .expect("bind a ticker");
            listener.set_nonblocking(true).expect("nonblocking");
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut c, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let _ = c.set_nonblocking(false);
                        let _ = c.read(&mut [0u8; 1024]);
                        while !stop.load(Ordering::Relaxed) && c.write_all(b"tick\n").is_ok() {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    });
                }
            });
        }
        Tickers { stop }
    }
}

impl Drop for Tickers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Lines received so far in `file` inside.
fn ticks(sb: &Sandbox, file: &str) -> usize {
    sh(sb, &format!("busybox wc -l < {file}"))
        .stdout_text()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_policy_change_cuts_open_connections_it_no_longer_allows() {
    if !privileged("network_cut") {
        return;
    }
    let bed = Bed::new();
    let _tickers = Tickers::start(
        &bed.inet,
        &[
            SocketAddr::from(([10, 1, 0, 1], 9000)),
            SocketAddr::from(([10, 2, 0, 1], 9000)),
            SocketAddr::from(([10, 4, 0, 1], 80)),
        ],
    );
    let mut sb = bed.create(
        "net-cut",
        NetworkPolicy::allow(&["10.1.0.0/16", "10.2.0.0/16", "stream.test"]).expect("policy"),
    );
    assert_eq!(
        resolve(&sb, "stream.test", None),
        [Ipv4Addr::new(10, 4, 0, 1)]
    );
    // Three long-lived connections: two by address (nftables), one by name (the proxy).
    for (file, cmd) in [
        (
            "/tmp/cidr-cut",
            "(echo go; sleep 60) | busybox nc 10.1.0.1 9000",
        ),
        (
            "/tmp/cidr-kept",
            "(echo go; sleep 60) | busybox nc 10.2.0.1 9000",
        ),
        (
            "/tmp/name-cut",
            "(printf 'GET / HTTP/1.1\\r\\nHost: stream.test\\r\\n\\r\\n'; sleep 60) | busybox nc 10.4.0.1 80",
        ),
    ] {
        crate::sandbox::block(sb.spawn(sqrx_core::ExecRequest::new(
            format!("{cmd} > {file} 2>&1").as_str(),
        )))
        .expect("spawn");
    }
    std::thread::sleep(Duration::from_millis(1500));
    for file in ["/tmp/cidr-cut", "/tmp/cidr-kept", "/tmp/name-cut"] {
        assert!(ticks(&sb, file) > 3, "{file} is not receiving");
    }
    sb.set_network(NetworkPolicy::allow(&["10.2.0.0/16"]).expect("policy"))
        .expect("set_network");
    std::thread::sleep(Duration::from_millis(1000));
    let after: Vec<usize> = ["/tmp/cidr-cut", "/tmp/cidr-kept", "/tmp/name-cut"]
        .iter()
        .map(|f| ticks(&sb, f))
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    // The refused ones receive nothing more; the one still allowed goes on.
    assert_eq!(
        ticks(&sb, "/tmp/cidr-cut"),
        after[0],
        "the CIDR connection was not cut"
    );
    assert_eq!(
        ticks(&sb, "/tmp/name-cut"),
        after[2],
        "the named connection was not cut"
    );
    assert!(
        ticks(&sb, "/tmp/cidr-kept") > after[1] + 3,
        "an allowed connection was cut"
    );
}

#[test]
fn an_answer_opens_its_addresses_for_its_ttl_and_while_they_are_in_use() {
    if !privileged("network_ttl") {
        return;
    }
    let bed = Bed::new();
    let _tickers = Tickers::start(&bed.inet, &[SocketAddr::from(([10, 1, 0, 1], 9000))]);
    let sb = bed.create(
        "net-ttl",
        NetworkPolicy::allow(&["short.test"]).expect("policy"),
    );
    // An answer nobody uses closes with its TTL (5 s at least): a connection after it needs a
    // new answer. (Each packet to an open address keeps it open 60 s more: not touched here.)
    assert_eq!(
        resolve(&sb, "short.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    std::thread::sleep(Duration::from_secs(7));
    assert!(!reaches(&sb, "http://10.1.0.1:8080/"), "open after its TTL");
    assert_eq!(
        resolve(&sb, "short.test", None),
        [Ipv4Addr::new(10, 1, 0, 1)]
    );
    assert!(reaches(&sb, "http://10.1.0.1:8080/"));
    // In use, it stays open past the TTL: a long transfer goes on.
    crate::sandbox::block(sb.spawn(sqrx_core::ExecRequest::new(
        "(echo go; sleep 60) | busybox nc 10.1.0.1 9000 > /tmp/ticks 2>&1",
    )))
    .expect("spawn");
    std::thread::sleep(Duration::from_secs(7));
    let before = ticks(&sb, "/tmp/ticks");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        ticks(&sb, "/tmp/ticks") > before + 3,
        "a connection in use was cut at the TTL"
    );
}
