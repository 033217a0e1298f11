//! A test "internet" of network namespaces this test creates, for servers whose sandboxes have
//! a network (as crates/sqrx-core/tests/it/network.rs): the runtime's namespace (`rt`: the
//! host side of every sandbox link and the runtime's nftables table, given to the server as
//! `--net-netns`) and an `inet` namespace behind it with an HTTP server on 10.1.0.1:8080 and
//! 10.2.0.1:8080. No packet can leave the machine: `rt`'s only route out is `inet`, which has
//! no route out at all.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sqrx_core::network::NetworkConfig;

/// A named network namespace, deleted when dropped.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new(tag: &str) -> Self {
        // Tests of this binary run in parallel threads of one process: a counter tells them apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sqrxs-{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    fn fd(&self) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(self.path()).expect("open netns"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// HTTP servers answering `hello <addr>` until dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(ns: &Netns, addrs: &[SocketAddr]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for addr in addrs {
            let addr = *addr;
            let listener =
                sqrx_core::sys::netns::run_in(ns.fd().as_fd(), move || TcpListener::bind(addr))
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
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The runtime's uplink inside `rt`.
pub const UPLINK: &str = "sqrxup0";

/// The test internet. Declare it before the test's `DataDir` and `Server`, so it is dropped
/// after them. Field order is drop order: servers, then the namespaces.
pub struct NetBed {
    _servers: Servers,
    rt: Netns,
    _inet: Netns,
}

impl NetBed {
    pub fn new() -> Self {
        let rt = Netns::new("rt");
        let inet = Netns::new("inet");
        rt.ip(&[
            "link", "add", UPLINK, "type", "veth", "peer", "name", "sqrxup1", "netns", &inet.name,
        ]);
        rt.ip(&["addr", "add", "10.200.0.2/24", "dev", UPLINK]);
        rt.ip(&["link", "set", UPLINK, "up"]);
        rt.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        inet.ip(&["addr", "add", "10.200.0.1/24", "dev", "sqrxup1"]);
        inet.ip(&["link", "set", "sqrxup1", "up"]);
        inet.ip(&["addr", "add", "10.1.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.2.0.1/32", "dev", "lo"]);
        let servers = Servers::start(
            &inet,
            &[
                SocketAddr::from((Ipv4Addr::new(10, 1, 0, 1), 8080)),
                SocketAddr::from((Ipv4Addr::new(10, 2, 0, 1), 8080)),
            ],
        );
        NetBed {
            _servers: servers,
            rt,
            _inet: inet,
        }
    }

    /// The runtime's network settings (for [`crate::harness::DataDir::with_network`]).
    pub fn config(&self) -> NetworkConfig {
        NetworkConfig {
            netns: Some(self.rt.path().into()),
            uplink: Some(UPLINK.into()),
            ..NetworkConfig::default()
        }
    }

    /// The server flags that put sandbox links in this bed.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--net-netns".into(),
            self.rt.path(),
            "--net-uplink".into(),
            UPLINK.into(),
        ]
    }
}

/// The shell command that fetches `http://ADDR:PORT/` from inside a sandbox (busybox `nc`).
pub fn fetch_cmd(addr: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {addr} {port} 2>&1")
}
