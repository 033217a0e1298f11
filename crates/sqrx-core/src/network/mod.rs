//! Networking for sandboxes: a veth pair per sandbox (peer born inside the sandbox's network
//! namespace, through `rtnetlink`'s message builders), an address from a pool, and an
//! nftables table per runtime that enforces each sandbox's [`NetworkPolicy`] (through
//! netlink, no `nft` or `ip` programs). See docs/network.md.

mod link;
mod netlink;
mod nft;
mod policy;
mod resolver;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

pub use link::INSIDE_NAME;
pub use policy::{Destination, NetRule, NetworkPolicy, PolicyError};
pub use resolver::RESOLVER_ENV;
pub(crate) use resolver::main as resolver_main;

use crate::sandbox::SandboxError;

/// The host-wide registry of taken addresses (one file per /30, naming its sandbox).
pub const REGISTRY: &str = "/run/sqrx/net";

/// The default address pool: the shared address space of RFC 6598, one /30 per sandbox.
pub const DEFAULT_POOL: &str = "100.64.0.0/10";

/// How a runtime connects sandboxes that have a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The IPv4 pool sandbox addresses come from, carved in /30s (default
    /// [`DEFAULT_POOL`]); the pool is refused as a destination (sandboxes never reach each
    /// other) and masqueraded on the way out.
    pub pool: String,
    /// The interface sandboxes' traffic leaves through; its MTU is theirs. Default: the
    /// interface of the IPv4 default route (MTU 1500 when there is none).
    pub uplink: Option<String>,
    /// A network namespace (a path such as `/run/netns/sandboxes`) to hold the host side of
    /// every sandbox's link and the runtime's nftables table, instead of the runtime's own;
    /// sandboxes' traffic then leaves through that namespace's routes.
    pub netns: Option<PathBuf>,
    /// The DNS server the sandboxes' resolver forwards allowed queries to. Default: the first
    /// `nameserver` of `/etc/resolv.conf`.
    pub dns_upstream: Option<SocketAddr>,
    /// Read HTTPS to the hosts secrets are bound to, so their placeholders can be replaced
    /// (default on; `SQUASH_PROXY_HTTPS=0` turns it off, leaving plain HTTP only). See
    /// docs/secrets.md.
    #[serde(default = "yes")]
    pub intercept_https: bool,
    /// PEM files of CAs the egress proxy trusts for the servers it sends secrets to, besides
    /// the host's own roots (a private API's CA).
    #[serde(default)]
    pub upstream_ca: Vec<PathBuf>,
}

fn yes() -> bool {
    true
}

/// A sandbox with a network, as the runtime's rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Networked {
    /// Its slot.
    pub slot: NetSlot,
    /// Its policy.
    pub policy: NetworkPolicy,
    /// Its HTTP and HTTPS go through the egress proxy (it has secrets).
    pub egress: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            pool: DEFAULT_POOL.to_string(),
            uplink: None,
            netns: None,
            dns_upstream: None,
            intercept_https: true,
            upstream_ca: Vec::new(),
        }
    }
}

/// The first IPv4 `nameserver` of `/etc/resolv.conf`, port 53.
fn system_upstream() -> Option<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| a.trim().parse::<Ipv4Addr>().ok())
        .map(|a| SocketAddr::from((a, 53)))
}

/// A sandbox's place in the network: its slot in the pool (address and interface names
/// derive from it). Kept in the sandbox's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSlot {
    /// The index of its /30 in the pool.
    pub slot: u32,
}

/// Addresses and names of one sandbox's link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetInfo {
    /// The sandbox's address (on `eth0` inside).
    pub address: Ipv4Addr,
    /// Its gateway: the host side of its link.
    pub gateway: Ipv4Addr,
    /// The host side's interface name.
    pub host_interface: String,
}

fn parse_pool(pool: &str) -> Result<(Ipv4Addr, u8), SandboxError> {
    let bad = |reason: &str| SandboxError::Invalid {
        field: "network.pool",
        reason: format!("{pool:?}: {reason}"),
    };
    let rule: NetRule = pool.parse().map_err(|e: PolicyError| bad(&e.reason))?;
    match rule {
        NetRule {
            to: Destination::Cidr { addr, prefix },
            port: None,
        } if (8..=29).contains(&prefix) => Ok((addr, prefix)),
        _ => Err(bad("must be an IPv4 network with a prefix of 8 to 29")),
    }
}

/// The network side of one runtime.
pub(crate) struct Network {
    config: NetworkConfig,
    pool: (Ipv4Addr, u8),
    table: nft::Table,
    slots: crate::sandbox::ids::Slots,
    /// Opened on first use.
    netns: OnceLock<Option<OwnedFd>>,
    /// The resolver port the table was last rebuilt for (rebuilt once per runtime object,
    /// and again when the resolver had to be restarted).
    ready: Mutex<Option<nft::DaemonPorts>>,
    /// Where the resolver keeps its lock, port and log.
    dir: PathBuf,
    /// The runtime's sandboxes (the resolver reads their policies).
    sandboxes_dir: PathBuf,
    /// The runtime's data directory (secrets, CA, audit log).
    data_dir: PathBuf,
    mtu: OnceLock<u32>,
}

impl Network {
    /// Describe the network of the runtime whose data directory is `data_dir` (nothing is
    /// touched until a sandbox needs it).
    pub fn new(config: NetworkConfig, data_dir: &Path) -> Result<Self, SandboxError> {
        let sandboxes_dir = data_dir.join("sandboxes");
        let pool = parse_pool(&config.pool)?;
        let tag = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
            hex::encode(&h[..2])
        };
        let slots = 1u32 << (30 - u32::from(pool.1));
        Ok(Network {
            table: nft::Table {
                name: format!("sqrx_{tag}"),
                prefix: format!("sq{tag}"),
                pool,
                proxy: Default::default(),
            },
            pool,
            slots: crate::sandbox::ids::Slots::new(
                Path::new(REGISTRY).join(format!("{}_{}", pool.0, pool.1)),
                slots,
            ),
            config,
            netns: OnceLock::new(),
            ready: Mutex::new(None),
            dir: data_dir.join("network"),
            sandboxes_dir,
            data_dir: data_dir.to_path_buf(),
            mtu: OnceLock::new(),
        })
    }

    /// The addresses and names of `slot`.
    pub fn info(&self, slot: NetSlot) -> NetInfo {
        let base = u32::from(self.pool.0) + slot.slot * 4;
        NetInfo {
            gateway: Ipv4Addr::from(base + 1),
            address: Ipv4Addr::from(base + 2),
            host_interface: format!("{}{:05x}", self.table.prefix, slot.slot),
        }
    }

    pub(crate) fn chain(slot: NetSlot) -> String {
        format!("sb_{:05x}", slot.slot)
    }

    fn failed(id: &str, what: &str, e: std::io::Error) -> SandboxError {
        SandboxError::Network {
            id: id.to_string(),
            reason: format!("{what}: {e}"),
        }
    }

    /// Run `f` with a socket in the namespace that holds the host side.
    fn with_host<T: Send>(
        &self,
        f: impl FnOnce(&mut netlink::Netlink) -> std::io::Result<T> + Send,
        proto_route: bool,
    ) -> std::io::Result<T> {
        let ns = self
            .netns
            .get_or_init(|| {
                self.config
                    .netns
                    .as_ref()
                    .and_then(|p| std::fs::File::open(p).ok().map(OwnedFd::from))
            })
            .as_ref();
        let open = move || {
            let mut nl = if proto_route {
                netlink::Netlink::route()?
            } else {
                netlink::Netlink::netfilter()?
            };
            f(&mut nl)
        };
        match (ns, &self.config.netns) {
            (Some(ns), _) => crate::sys::netns::run_in(ns.as_fd(), open),
            (None, Some(p)) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot open the network namespace {}", p.display()),
            )),
            (None, None) => open(),
        }
    }

    /// Write a sysctl of the namespace that holds the host side.
    fn host_sysctl(&self, path: String) -> std::io::Result<()> {
        self.with_host(move |_| std::fs::write(&path, "1"), true)
    }

    fn mtu(&self) -> u32 {
        *self.mtu.get_or_init(|| {
            self.with_host(
                |nl| {
                    let uplink = match &self.config.uplink {
                        Some(u) => Some(u.clone()),
                        None => link::default_route_interface(nl),
                    };
                    Ok(uplink.and_then(|u| link::mtu_of(nl, &u)).unwrap_or(1500))
                },
                true,
            )
            .unwrap_or(1500)
        })
    }

    /// Make sure the runtime's resolver runs (started with `program`), and rebuild the table
    /// from the sandboxes `existing` lists once per runtime object and whenever the resolver
    /// was restarted.
    fn ensure_table(
        &self,
        existing: &dyn Fn() -> Vec<Networked>,
        program: &(PathBuf, bool),
    ) -> std::io::Result<()> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let upstream = self
            .config
            .dns_upstream
            .or_else(system_upstream)
            .ok_or_else(|| {
                std::io::Error::other(
                    "no DNS upstream: set network.dns_upstream or a nameserver in /etc/resolv.conf",
                )
            })?;
        crate::secrets::ca::ensure(&crate::secrets::dir(&self.data_dir))?;
        let ports = resolver::ensure_running(
            &resolver::ResolverConfig {
                sandboxes_dir: self.sandboxes_dir.clone(),
                dir: self.dir.clone(),
                pool: self.pool,
                table: self.table.name.clone(),
                prefix: self.table.prefix.clone(),
                netns: self.config.netns.clone(),
                upstream,
                egress: Some(crate::secrets::proxy::EgressConfig {
                    data_dir: self.data_dir.clone(),
                    intercept_https: self.config.intercept_https,
                    upstream_ca: self.config.upstream_ca.clone(),
                }),
            },
            program,
        )?;
        if *ready == Some(ports) {
            return Ok(());
        }
        // Another process of this runtime (a server, a CLI) may have built the table for
        // these daemon ports already: keep it, with the addresses its names sets hold.
        let _lock = self.table_lock()?;
        let marker = self.dir.join("table.ports");
        let expected = format!("{} {} {}\n", ports.dns, ports.proxy, self.table.name);
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == expected)
            && self.with_host(|nl| self.table.exists(nl), false)?
        {
            self.table
                .proxy
                .store(ports.proxy, std::sync::atomic::Ordering::Relaxed);
            *ready = Some(ports);
            return Ok(());
        }
        if let Some(uplink) = &self.config.uplink {
            self.host_sysctl(format!("/proc/sys/net/ipv4/conf/{uplink}/forwarding"))?;
        } else {
            let uplink = self.with_host(|nl| Ok(link::default_route_interface(nl)), true)?;
            if let Some(u) = uplink {
                self.host_sysctl(format!("/proc/sys/net/ipv4/conf/{u}/forwarding"))?;
            }
        }
        let sandboxes = existing();
        let rules: Vec<nft::SandboxRules<'_>> = sandboxes
            .iter()
            .map(|s| {
                let info = self.info(s.slot);
                nft::SandboxRules {
                    chain: Self::chain(s.slot),
                    host_name: info.host_interface,
                    address: info.address,
                    policy: &s.policy,
                    egress: s.egress,
                }
            })
            .collect();
        self.with_host(|nl| self.table.rebuild(nl, &rules, Some(ports)), false)?;
        std::fs::write(&marker, expected)?;
        *ready = Some(ports);
        Ok(())
    }

    /// Held while the table changes: processes sharing the data directory take turns.
    fn table_lock(&self) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
        std::fs::create_dir_all(&self.dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("table.lock"))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))
    }

    /// After a restart of the host side (a server, a reboot of the daemon): make sure the
    /// daemon runs and the table holds every networked sandbox of `existing`.
    pub fn recover(
        &self,
        existing: &dyn Fn() -> Vec<Networked>,
        program: &(PathBuf, bool),
    ) -> Result<(), SandboxError> {
        self.ensure_table(existing, program)
            .map_err(|e| Self::failed("*", "cannot restore the runtime's network", e))
    }

    /// Take a slot in the pool for the sandbox whose directory is `owner`.
    pub fn reserve(&self, owner: &Path) -> Result<NetSlot, SandboxError> {
        Ok(NetSlot {
            slot: self.slots.allocate(owner).map_err(|e| match e {
                crate::sandbox::ids::SlotError::Full(n) => SandboxError::Invalid {
                    field: "network",
                    reason: format!("no free address left in the pool ({n} in use)"),
                },
                crate::sandbox::ids::SlotError::Sandbox(e) => e,
            })?,
        })
    }

    /// Give the sandbox `id` its link in `sandbox_ns` and its rules for `sandbox` (its slot,
    /// policy and egress; a create, or an init restarted in a new namespace). `existing` lists the runtime's networked
    /// sandboxes and `program` is the init program, for the first use (the table and the
    /// resolver).
    pub fn attach(
        &self,
        id: &str,
        sandbox_ns: BorrowedFd<'_>,
        sandbox: &Networked,
        existing: &dyn Fn() -> Vec<Networked>,
        program: &(PathBuf, bool),
    ) -> Result<(), SandboxError> {
        self.ensure_table(existing, program)
            .map_err(|e| Self::failed(id, "cannot set up the runtime's nftables table", e))?;
        let Networked {
            slot,
            ref policy,
            egress,
        } = *sandbox;
        let info = self.info(slot);
        let plan = link::LinkPlan {
            host_name: info.host_interface.clone(),
            gateway: info.gateway,
            address: info.address,
            mtu: self.mtu(),
        };
        let rules = nft::SandboxRules {
            chain: Self::chain(slot),
            host_name: info.host_interface.clone(),
            address: info.address,
            policy,
            egress,
        };
        // Rules first: the link never carries a packet its policy has not seen.
        self.table_lock()
            .and_then(|_lock| self.with_host(|nl| self.table.put_sandbox(nl, &rules, &[]), false))
            .map_err(|e| Self::failed(id, "cannot install the sandbox's rules", e))?;
        let ns = sandbox_ns;
        self.with_host(
            move |nl| {
                // An earlier link of this slot (an init restarted) goes first.
                link::delete(nl, &plan.host_name)?;
                link::create(nl, ns, &plan)
            },
            true,
        )
        .map_err(|e| Self::failed(id, "cannot create the sandbox's link", e))?;
        self.host_sysctl(format!(
            "/proc/sys/net/ipv4/conf/{}/forwarding",
            info.host_interface
        ))
        .map_err(|e| Self::failed(id, "cannot enable forwarding on the sandbox's link", e))
    }

    /// Replace a running sandbox's policy `old` with `sandbox`'s (and its egress; one
    /// nftables transaction).
    pub fn set_policy(
        &self,
        id: &str,
        old: &NetworkPolicy,
        sandbox: &Networked,
        existing: &dyn Fn() -> Vec<Networked>,
        program: &(PathBuf, bool),
    ) -> Result<(), SandboxError> {
        self.ensure_table(existing, program)
            .map_err(|e| Self::failed(id, "cannot set up the runtime's nftables table", e))?;
        let Networked {
            slot,
            ref policy,
            egress,
        } = *sandbox;
        let info = self.info(slot);
        let chain = Self::chain(slot);
        let stale = nft::stale_sets(&chain, old, policy);
        let rules = nft::SandboxRules {
            chain,
            host_name: info.host_interface,
            address: info.address,
            policy,
            egress,
        };
        self.table_lock()
            .and_then(|_lock| {
                self.with_host(|nl| self.table.put_sandbox(nl, &rules, &stale), false)
            })
            .map_err(|e| Self::failed(id, "cannot change the sandbox's rules", e))
    }

    /// Tell the resolver that a sandbox's saved policy changed (call after saving it).
    pub fn policies_changed(&self) {
        resolver::bump_generation(&self.dir);
    }

    /// Remove a sandbox's link and rules and give its slot back (each step best effort, so
    /// a half-removed sandbox can be removed again).
    pub fn detach(&self, id: &str, owner: &Path, slot: Option<NetSlot>, policy: &NetworkPolicy) {
        let slots: Vec<NetSlot> = match slot {
            Some(s) => vec![s],
            // A create that crashed before it saved its slot: whatever names its directory.
            None => self
                .slots
                .release_owner(owner)
                .into_iter()
                .map(|slot| NetSlot { slot })
                .collect(),
        };
        for slot in slots {
            let info = self.info(slot);
            let name = info.host_interface.clone();
            if let Err(e) = self.with_host(move |nl| link::delete(nl, &name), true) {
                tracing::warn!(sandbox = %id, error = %e, "cannot delete the sandbox's link");
            }
            let chain = Self::chain(slot);
            let name = info.host_interface;
            let removed = self.table_lock().and_then(|_lock| {
                self.with_host(
                    |nl| self.table.remove_sandbox(nl, &name, &chain, policy),
                    false,
                )
            });
            if let Err(e) = removed {
                tracing::warn!(sandbox = %id, error = %e, "cannot remove the sandbox's rules");
            }
            self.slots.release(slot.slot, owner);
        }
    }
}
