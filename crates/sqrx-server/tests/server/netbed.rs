//! A test "internet" of network namespaces this test creates, for servers whose sandboxes have
//! a network (as crates/sqrx-core/tests/it/network.rs): the runtime's namespace (`rt`: the
//! host side of every sandbox link and the runtime's nftables table, given to the server as
//! `--net-netns`) and an `inet` namespace behind it with an HTTP server on 10.1.0.1:8080 and
//! 10.2.0.1:8080. No packet can leave the machine: `rt`'s only route out is `inet`, which has
//! no route out at all.

use std::net::{Ipv4Addr, SocketAddr};

use sqrx_core::network::NetworkConfig;
use sqrx_testkit::net::{HttpServers, Netns, RecordingServers};

/// The runtime's uplink inside `rt`.
pub const UPLINK: &str = "sqrxup0";

/// The test internet. Declare it before the test's `DataDir` and `Server`, so it is dropped
/// after them. Field order is drop order: servers, then the namespaces.
pub struct NetBed {
    _servers: HttpServers,
    /// Plain HTTP servers on 10.5.0.1:80 and 10.6.0.1:80 that record what they receive (the
    /// secrets tests).
    pub recording: RecordingServers,
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
        inet.ip(&["addr", "add", "10.5.0.1/32", "dev", "lo"]);
        inet.ip(&["addr", "add", "10.6.0.1/32", "dev", "lo"]);
        let recording = RecordingServers::start(
            &inet,
            &[],
            &[
                SocketAddr::from((Ipv4Addr::new(10, 5, 0, 1), 80)),
                SocketAddr::from((Ipv4Addr::new(10, 6, 0, 1), 80)),
            ],
            &[],
        );
        let servers = HttpServers::start(
            &inet,
            &[
                SocketAddr::from((Ipv4Addr::new(10, 1, 0, 1), 8080)),
                SocketAddr::from((Ipv4Addr::new(10, 2, 0, 1), 8080)),
            ],
        );
        NetBed {
            _servers: servers,
            recording,
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
