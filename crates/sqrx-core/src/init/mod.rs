//! `sqrx-init`: the long-lived init of each sandbox.
//!
//! The host starts it (as the `sqrx-init` binary, or by re-executing with [`INIT_ENV`] a
//! program that calls [`crate::roles::run_role_if_any`] first thing in `main`; see
//! [`crate::roles::Role::SandboxInit`]) with an [`InitConfig`] on stdin. It then:
//!
//! 1. starts a new session and unshares the mount, UTS, IPC, network and PID namespaces;
//! 2. forks: the parent prints the child's host pid and exits (so the sandbox outlives the
//!    program that created it); the child is PID 1 of the new PID namespace;
//! 3. PID 1 makes every mount private, mounts the overlay root over the shared layer mounts
//!    and the upper directory (on a size-capped tmpfs that the host mounted), `/proc`, a minimal `/dev`, binds the control
//!    socket, and `pivot_root`s into the overlay, while the host moves it into the sandbox's
//!    cgroup (on cgroup v1 the first move of a burst waits for an RCU grace period: doing both
//!    at once hides most of it);
//! 4. PID 1 waits for the host's byte on stdin (the move is done), unshares the cgroup
//!    namespace (rooted at the sandbox's cgroup), forks the server (PID 2), then only reaps
//!    orphans; when the server dies PID 1 exits and the kernel kills everything left.
//!
//! The server accepts one request per connection on the control socket ([`crate::protocol`]).

mod exec;
mod masks;
mod pty;
mod seccomp;
mod server;
mod setup;
mod user;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Set by the environment when a program re-executes itself as init
/// ([`crate::roles::Role::SandboxInit`]).
pub const INIT_ENV: &str = "SQRX_RUN_AS_INIT";

/// What init needs to build the sandbox, sent by the host as JSON on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    /// The sandbox id.
    pub id: String,
    /// The hostname inside.
    pub hostname: String,
    /// Mounted layer directories, top first (overlay `lowerdir` order).
    pub lowerdirs: Vec<PathBuf>,
    /// The host-mounted tmpfs holding overlayfs's `upper/` and `work/` and the `root/` mount
    /// point.
    pub rw_dir: PathBuf,
    /// Execs are numbered from `exec_seq_base + 1` (non-zero when init is restarted).
    #[serde(default)]
    pub exec_seq_base: u64,
    /// The sandbox's directory on the host (the control socket is created in it).
    pub run_dir: PathBuf,
    /// The first host id of the sandbox's user namespace (ids `0..65536` inside map to
    /// `id_base..id_base+65536`); `None` runs the sandbox as host root (the `host-root`
    /// isolation opt-in).
    #[serde(default)]
    pub id_base: Option<u32>,
    /// With `id_base`: the host pid of a process in the sandbox's user namespace and the
    /// network namespace it owns, made by the host (init opens both through `/proc`).
    #[serde(default)]
    pub ns_holder: Option<i32>,
    /// The sandbox's DNS server (its gateway), written to `/etc/resolv.conf` when it has a
    /// network.
    #[serde(default)]
    pub dns: Option<std::net::Ipv4Addr>,
    /// The control socket's file name in `run_dir`, new for every init of the sandbox (so an
    /// init that a killed host left starting cannot take the socket of the one that replaced
    /// it); `None`: `control.sock`.
    #[serde(default)]
    pub socket: Option<String>,
    /// The runtime's CA (PEM), put in the sandbox's trust store: it has secrets.
    #[serde(default)]
    pub trust_ca: Option<String>,
    /// Setuid programs may raise privileges: the root is mounted without `nosuid` and the
    /// server does not set `no_new_privs` ([`crate::SandboxSpec::setuid`]).
    #[serde(default)]
    pub setuid: bool,
}

/// The control socket's file name for inits started before sockets had one each.
pub const DEFAULT_SOCKET: &str = "control.sock";

/// A fresh control socket file name (`c-<8 hex digits>.sock`).
pub fn fresh_socket_name() -> String {
    let n = getrandom::u32().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    });
    format!("c-{n:08x}.sock")
}

/// Marks, in init's log, a failure caused by a kernel that cannot isolate the sandbox with a
/// user namespace and idmapped mounts. The host does not read the log for it: init tells it
/// with a [`crate::protocol::Startup::Failed`] of kind
/// [`crate::protocol::StartupFailureKind::IsolationUnsupported`].
pub const ISOLATION_UNSUPPORTED: &str = "isolation unsupported:";

impl InitConfig {
    /// The control socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir
            .join(self.socket.as_deref().unwrap_or(DEFAULT_SOCKET))
    }

    /// Whether setuid programs may raise privileges: asked for, and only inside a user
    /// namespace (as host root they would gain the host's root).
    pub fn allows_setuid(&self) -> bool {
        self.setuid && self.id_base.is_some()
    }
}

/// The init program ([`crate::roles::Role::SandboxInit`]). Returns the process exit code.
pub(crate) fn main() -> i32 {
    // Whatever the embedding process leaked without O_CLOEXEC ends here, before anything else.
    if !crate::weaken::off("fds")
        && let Err(e) = crate::sys::idmap::close_from(3)
    {
        eprintln!("sqrx-init: cannot close inherited descriptors: {e}");
        return 2;
    }
    // One line of JSON; stdin stays open: the host later sends one byte once it has moved
    // PID 1 into the sandbox's cgroup.
    let mut input = String::new();
    if let Err(e) = std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut input) {
        setup::SetupError::from(format!("cannot read config: {e}")).report("sqrx-init");
        return 2;
    }
    let config: InitConfig = match serde_json::from_str(&input) {
        Ok(c) => c,
        Err(e) => {
            setup::SetupError::from(format!("bad config: {e}")).report("sqrx-init");
            return 2;
        }
    };
    match setup::start(&config) {
        Ok(code) => code,
        Err(e) => {
            e.report("sqrx-init");
            1
        }
    }
}
