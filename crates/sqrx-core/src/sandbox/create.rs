//! `Runtime::create`: reserve the id, mount layers, make the cgroup, start init, wait for it.
//! Any failure rolls back everything already done.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::runtime::{Runtime, Sandbox};
use super::state::{LayerRef, SandboxState, process_start_time};
use super::{SandboxError, SandboxSpec};
use crate::cgroup::{Limits, SandboxCgroup};
use crate::init::{INIT_ENV, InitConfig};
use crate::layer::{BASE_LAYER, Layer, LayerError, LayerName};
use crate::protocol::{Startup, StartupFailureKind};

/// Gives a sandbox's network namespace its link and rules (see [`Launcher::start`]).
pub(crate) type NetAttach<'a> = dyn Fn(BorrowedFd<'_>) -> Result<(), SandboxError> + 'a;

/// Undoes a partial create unless committed.
struct Rollback<'a> {
    rt: &'a Runtime,
    dir: PathBuf,
    mounts: Vec<PathBuf>,
    cgroup: Option<SandboxCgroup>,
    init_pid: Option<i32>,
    ids: Option<super::IdRange>,
    net: Option<crate::network::NetSlot>,
    networked: crate::network::NetworkPolicy,
    committed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let id = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let remains = super::destroy::Remains {
            dir: self.dir.clone(),
            init: self.init_pid.map(|pid| (pid, None)),
            cgroup: self.cgroup.clone(),
            mounts: std::mem::take(&mut self.mounts),
            ids: self.ids,
            net: self.net,
            networked: std::mem::take(&mut self.networked),
        };
        if let Err(e) = self.rt.discard(&id, remains) {
            tracing::warn!(sandbox = %id, error = %e, "cannot undo a failed create");
        }
    }
}

impl Runtime {
    /// The slot and policy of every sandbox of this runtime that has a network.
    pub(crate) fn networked_sandboxes(&self) -> Vec<crate::network::Networked> {
        self.ids()
            .iter()
            .filter_map(|id| SandboxState::load(&self.state_path(id)).ok())
            .filter_map(|s| {
                s.net.map(|slot| crate::network::Networked {
                    slot,
                    policy: s.spec.network,
                    egress: s.egress,
                })
            })
            .collect()
    }

    /// Every layer mount that a sandbox other than `except` uses or is about to use.
    pub(crate) fn mounts_in_use(&self, except: &str) -> Vec<PathBuf> {
        self.ids()
            .iter()
            .filter(|id| id.as_str() != except)
            .flat_map(|id| claimed_mounts(&self.inner.sandboxes_dir.join(id)))
            .collect()
    }

    /// The store layers `names`, as stack entries (not mounted yet).
    pub(crate) fn resolve_layers(&self, names: &[String]) -> Result<Vec<LayerRef>, SandboxError> {
        let store = &self.inner.store;
        names
            .iter()
            .map(|n| {
                let name = LayerName::new(n.as_str())?;
                let layer = match store.get(&name) {
                    Err(LayerError::NotFound { .. }) if n == BASE_LAYER => store.ensure_base()?,
                    #[cfg(feature = "s3")]
                    Err(LayerError::NotFound { .. }) if self.remote()?.is_some() => {
                        self.pull_layer(&name)?
                    }
                    other => other?,
                };
                Ok(self.layer_ref(&layer))
            })
            .collect()
    }

    /// A stack entry for a store layer.
    pub(crate) fn layer_ref(&self, layer: &Layer) -> LayerRef {
        #[cfg(feature = "s3")]
        self.note_layer_use(layer);
        LayerRef {
            name: layer.name.to_string(),
            digest: layer.digest.clone(),
            mount: self.inner.mounts.mount_point(&layer.digest),
            image: layer.path.clone(),
            snapshot: false,
            store_copy: false,
        }
    }

    /// Sandbox ids are unique per data directory, cgroups per host: qualify the name.
    pub(crate) fn cgroup_name(&self, id: &str) -> String {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.inner.config.data_dir.as_os_str().as_encoded_bytes());
        format!("{id}-{}", &hex::encode(hash)[..8])
    }

    /// Take the id and a slot under the limit, atomically across processes. The new
    /// sandbox's state lock is taken with it and held until its state is saved: a runtime
    /// that finds a directory without a state and can take its lock knows the creator died.
    pub(crate) fn reserve(
        &self,
        id: &str,
    ) -> Result<(PathBuf, nix::fcntl::Flock<std::fs::File>), SandboxError> {
        let lock_path = self.inner.sandboxes_dir.join(".lock");
        let _guard = super::mounts::lock_exclusive(&lock_path)?;
        let dir = self.inner.sandboxes_dir.join(id);
        if dir.exists() {
            return Err(SandboxError::AlreadyExists { id: id.to_string() });
        }
        let max = self.inner.config.max_sandboxes;
        if self.ids().len() >= max {
            return Err(SandboxError::LimitExceeded { max });
        }
        std::fs::create_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SandboxError::AlreadyExists { id: id.to_string() },
            _ => SandboxError::Io {
                op: "create",
                path: dir.clone(),
                source: e,
            },
        })?;
        match super::mounts::lock_exclusive(&super::snapshot::state_lock_path(&dir)) {
            Ok(lock) => Ok((dir, lock)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    pub(crate) fn init_program(&self) -> Result<(PathBuf, bool), SandboxError> {
        if let Some(p) = &self.inner.config.init_path {
            return Ok((p.clone(), false));
        }
        if let Some(p) = std::env::var_os("SQRX_INIT").filter(|p| !p.is_empty()) {
            return Ok((PathBuf::from(p), false));
        }
        let exe = std::env::current_exe().unwrap_or_default();
        if let Some(sibling) = exe.parent().map(|d| d.join("sqrx-init"))
            && sibling.is_file()
        {
            return Ok((sibling, false));
        }
        if crate::roles::self_exec_enabled() {
            return Ok((exe, true));
        }
        Err(SandboxError::InitNotFound {
            exe: exe.display().to_string(),
        })
    }

    /// Create and start a sandbox.
    pub fn create(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        spec.validate()?;
        if spec.setuid && self.inner.config.isolation == super::Isolation::HostRoot {
            return Err(SandboxError::Invalid {
                field: "setuid",
                reason: "setuid programs need isolation = user-namespace (the default): with \
                         host-root they would gain the host's root"
                    .into(),
            });
        }
        self.init_program()?;
        #[cfg(feature = "s3")]
        if let Some(restored) = self.create_ephemeral(&spec)? {
            return Ok(restored);
        }
        let layers = self.resolve_layers(&spec.layers)?;
        let (dir, _creating) = self.reserve(&spec.id)?;
        self.launch(spec, dir, layers, None)
    }

    /// Start a sandbox in its reserved directory `dir` on the lower `stack` (base first): mount
    /// the layers, make the cgroup and the upper, start init. Undoes everything on failure.
    pub(crate) fn launch(
        &self,
        spec: SandboxSpec,
        dir: PathBuf,
        stack: Vec<LayerRef>,
        active_snapshot: Option<String>,
    ) -> Result<Sandbox, SandboxError> {
        let mut rb = Rollback {
            rt: self,
            dir: dir.clone(),
            mounts: Vec::new(),
            cgroup: None,
            init_pid: None,
            ids: None,
            net: None,
            networked: spec.network.clone(),
            committed: false,
        };
        let (init, self_exec) = self.init_program()?;
        // The init program loads while the layers are mounted.
        let launcher = Launcher::spawn(&init, self_exec, &spec.id, &dir)?;

        // Announce the mounts before taking them, so a concurrent destroy keeps them.
        crate::faults::point("create.announce_mounts")?;
        let mounts: Vec<PathBuf> = stack.iter().map(|l| l.mount.clone()).collect();
        self.announce_mounts(&dir, &mounts)?;
        rb.mounts = mounts;
        self.inner.mounts.locked(|| {
            for l in &stack {
                self.inner.mounts.acquire(l)?;
            }
            Ok(())
        })?;

        let limits = Limits {
            cpu: spec.cpu,
            memory_bytes: spec
                .memory_mb
                .or(self.inner.config.default_memory_mb)
                .map(|m| m << 20),
            pids_max: spec.pids_max.or(self.inner.config.default_pids_max),
        };
        crate::faults::point("create.cgroup")?;
        let cgroup = self
            .inner
            .cgroups
            .create(&self.cgroup_name(&spec.id), &limits)?;
        rb.cgroup = Some(cgroup.clone());
        crate::faults::point("create.mount_upper")?;
        super::upper::mount_upper(&dir, spec.upper_mb)?;
        crate::faults::point("create.allocate_ids")?;
        let ids = match self.inner.config.isolation {
            super::Isolation::UserNamespace => Some(self.inner.ids.allocate(&dir)?),
            super::Isolation::HostRoot => None,
        };
        rb.ids = ids;

        let net_slot = if spec.network.has_network() {
            crate::faults::point("create.reserve_address")?;
            let slot = self.inner.network.reserve(&dir)?;
            rb.net = Some(slot);
            Some(slot)
        } else {
            None
        };
        let dns = net_slot.map(|s| self.inner.network.info(s).gateway);
        // Secrets: the sandbox's own go to a private file (its spec keeps no value), and it
        // goes through the egress proxy if it has any, or the runtime has.
        let mut spec = spec;
        let egress = net_slot.is_some() && (!spec.secrets.is_empty() || self.has_secrets());
        if !spec.secrets.is_empty() {
            crate::secrets::fill_placeholders(
                &mut spec.secrets,
                &std::collections::BTreeMap::new(),
            );
            crate::secrets::write(&crate::secrets::sandbox_store(&dir), &spec.secrets)?;
            for s in spec.secrets.values_mut() {
                s.value.clear();
            }
        }
        let mut config = init_config(&spec, &dir, &stack, ids, dns);
        if egress {
            config.trust_ca = Some(self.egress_ca()?);
        }
        tracing::debug!(sandbox = %spec.id, "layers mounted, cgroup ready");
        let program = (init.clone(), self_exec);
        let attach = |ns: BorrowedFd<'_>, slot| {
            self.inner.network.attach(
                &spec.id,
                ns,
                &crate::network::Networked {
                    slot,
                    policy: spec.network.clone(),
                    egress,
                },
                &|| self.networked_sandboxes(),
                &program,
            )
        };
        let attach_slot = net_slot.map(|slot| move |ns: BorrowedFd<'_>| attach(ns, slot));
        let net = attach_slot.as_ref().map(|a| a as &NetAttach<'_>);
        let (pid, start) = launcher.start_serving(&config, &cgroup, None, net)?;
        rb.init_pid = Some(pid);
        tracing::debug!(sandbox = %spec.id, pid, "init serving");

        let state = SandboxState {
            spec,
            created: chrono::Utc::now(),
            layers: stack,
            active_snapshot,
            cgroup: Some(cgroup),
            init_pid: pid,
            init_start: start,
            ids,
            net: rb.net,
            socket: config.socket.clone(),
            egress,
        };
        crate::faults::point("create.save_state")?;
        state.save(&dir.join("state.json"))?;
        rb.committed = true;
        tracing::info!(sandbox = %state.spec.id, pid, "sandbox created");
        Ok(Sandbox {
            rt: self.clone(),
            state,
            files_owner: None,
        })
    }

    /// Under the mounts lock: claim exactly `keep` for the sandbox `id` (in `dir`) and unmount
    /// those of `unused` that no other sandbox claims.
    pub(crate) fn claim_only(
        &self,
        id: &str,
        dir: &Path,
        keep: &[PathBuf],
        unused: &[PathBuf],
    ) -> Result<(), SandboxError> {
        self.inner.mounts.locked(|| {
            self.announce_mounts(dir, keep)?;
            self.inner.mounts.release(unused, &self.mounts_in_use(id));
            Ok(())
        })
    }

    /// Record in `<dir>/layers.json` the layer mounts a sandbox uses or is about to use.
    pub(crate) fn announce_mounts(
        &self,
        dir: &Path,
        mounts: &[PathBuf],
    ) -> Result<(), SandboxError> {
        super::state::replace_json(&dir.join("layers.json"), &mounts)
    }
}

/// The layer mounts the sandbox in `dir` claims in its `layers.json` (none if it has none).
pub(crate) fn claimed_mounts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read(dir.join("layers.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<PathBuf>>(&b).ok())
        .unwrap_or_default()
}

/// What init needs to assemble the sandbox on `stack` (base first).
pub(crate) fn init_config(
    spec: &SandboxSpec,
    dir: &Path,
    stack: &[LayerRef],
    ids: Option<super::IdRange>,
    dns: Option<std::net::Ipv4Addr>,
) -> InitConfig {
    InitConfig {
        id: spec.id.clone(),
        hostname: spec.hostname.clone().unwrap_or_else(|| spec.id.clone()),
        lowerdirs: lowerdirs(stack),
        rw_dir: super::upper::rw_dir(dir),
        exec_seq_base: 0,
        run_dir: dir.to_path_buf(),
        id_base: ids.map(|r| r.base),
        ns_holder: None,
        dns,
        socket: Some(crate::init::fresh_socket_name()),
        trust_ca: None,
        setuid: spec.setuid,
    }
}

/// `stack` (base first) with each image once, at its topmost place.
///
/// A stack may hold the same image twice (two snapshots with identical content, a layer
/// activated again under a snapshot of itself), and overlayfs refuses a layer that overlaps
/// another (`ELOOP`). The higher copy shadows everything the lower one holds, entry for entry
/// (its whiteouts and opaque directories too), so keeping only the topmost occurrence gives
/// exactly the same view.
pub(crate) fn topmost_copies(stack: &[LayerRef]) -> Vec<LayerRef> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<LayerRef> = stack
        .iter()
        .rev()
        .filter(|l| seen.insert(l.mount.clone()))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// The overlay's lower directories for `stack` (base first), top first, each mount once
/// ([`topmost_copies`]).
pub(crate) fn lowerdirs(stack: &[LayerRef]) -> Vec<PathBuf> {
    topmost_copies(stack)
        .into_iter()
        .rev()
        .map(|l| l.mount)
        .collect()
}

/// The error for an init that failed with `reason`.
fn init_failed(id: &str, reason: String) -> SandboxError {
    SandboxError::InitFailed {
        id: id.to_string(),
        reason,
    }
}

/// The error for a [`Startup::Failed`] of kind `kind`: a kernel that cannot isolate the
/// sandbox is told apart from other failures.
fn startup_failed(id: &str, kind: StartupFailureKind, message: String) -> SandboxError {
    match kind {
        StartupFailureKind::IsolationUnsupported => SandboxError::IsolationUnsupported {
            id: id.to_string(),
            reason: message,
        },
        StartupFailureKind::Setup => init_failed(id, message),
    }
}

/// The error for a startup `line` that is not the status init was expected to send: the
/// failure it reports, or (a line this host does not know, or none) the log's tail.
fn unexpected_startup(id: &str, line: &str, run_dir: &Path) -> SandboxError {
    match Startup::parse(line) {
        Some(Startup::Failed { kind, message }) => startup_failed(id, kind, message),
        _ => init_failed(id, log_tail(run_dir)),
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("init.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    if lines.is_empty() {
        "init exited without a message".into()
    } else {
        lines.into_iter().rev().collect::<Vec<_>>().join("; ")
    }
}

/// An init program started and waiting for its configuration on stdin: it loads while the
/// host mounts layers and prepares the upper. Dropped unused, it is killed and reaped.
pub(crate) struct Launcher {
    child: std::process::Child,
    id: String,
    run_dir: PathBuf,
}

impl Launcher {
    /// Run the init program `init` (with `self_exec`, the current executable acting as init)
    /// for sandbox `id` whose run directory is `run_dir` (its stderr goes to `init.log` there).
    pub(crate) fn spawn(
        init: &Path,
        self_exec: bool,
        id: &str,
        run_dir: &Path,
    ) -> Result<Self, SandboxError> {
        let log_path = run_dir.join("init.log");
        let log = crate::paths::create_private(&log_path)
            .map_err(SandboxError::io("create", &log_path))?;
        let mut cmd = std::process::Command::new(init);
        // init gets nothing from the host's environment: no tokens or credentials leak.
        cmd.env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        if self_exec {
            cmd.env(INIT_ENV, "1");
        }
        #[cfg(feature = "insecure-weaken")]
        if let Some(w) = std::env::var_os("SQRX_WEAKEN") {
            cmd.env("SQRX_WEAKEN", w);
        }
        let child = cmd.spawn().map_err(|e| SandboxError::InitFailed {
            id: id.to_string(),
            reason: format!("cannot run {}: {e}", init.display()),
        })?;
        Ok(Launcher {
            child,
            id: id.to_string(),
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// Send `config` and start the sandbox's PID 1; its host pid and start time. `net` gives
    /// the sandbox's network namespace its link and rules while init starts. `predecessor`
    /// is a PID 1 (pid, start time) of the same sandbox that was sent SIGKILL: it dies while
    /// this one starts, and is waited for before this one joins the cgroup (so the two never
    /// share the sandbox's limits).
    pub(crate) fn start(
        mut self,
        config: &InitConfig,
        cgroup: &SandboxCgroup,
        predecessor: Option<(i32, u64)>,
        net: Option<&NetAttach<'_>>,
    ) -> Result<(i32, u64, Ready), SandboxError> {
        let failed = |reason: String| init_failed(&self.id, reason);
        crate::faults::point("init.send_config")?;
        // The user namespace (and the network namespace it owns) is made here while init
        // loads; init joins it through the holder, which is dropped (killed) when this returns.
        let holder =
            match config.id_base {
                Some(base) => Some(crate::sys::idmap::NamespaceHolder::spawn(base).map_err(
                    |e| SandboxError::IsolationUnsupported {
                        id: self.id.clone(),
                        reason: format!("cannot create a user namespace: {e}"),
                    },
                )?),
                None => None,
            };
        let config = InitConfig {
            ns_holder: holder.as_ref().map(|h| h.pid()),
            ..config.clone()
        };
        let mut json = serde_json::to_vec(&config).map_err(|e| failed(e.to_string()))?;
        json.push(b'\n');
        let mut stdin = self
            .child
            .stdin
            .take()
            .ok_or_else(|| failed("no stdin pipe".into()))?;
        stdin
            .write_all(&json)
            .map_err(|e| failed(format!("cannot send config: {e}")))?;
        if predecessor.is_none() {
            // On cgroup v1 the first move into a cgroup after a pause waits for an RCU grace
            // period (several ms here), the longest step of a create. Moving init itself now
            // starts that wait while it loads and makes its namespaces; PID 1 is then moved in
            // right after (or was born inside), without the wait. An init that failed is gone
            // and cannot be moved: its status line says why.
            let _ = cgroup.add(self.child.id() as i32);
        }
        if let Some(attach) = net {
            let holder = holder.as_ref().ok_or_else(|| SandboxError::Invalid {
                field: "network",
                reason: "a network needs isolation = user-namespace (the default)".into(),
            })?;
            let ns = std::fs::File::open(format!("/proc/{}/ns/net", holder.pid()))
                .map_err(|e| failed(format!("cannot open the sandbox's network namespace: {e}")))?;
            attach(ns.as_fd())?;
        }
        let mut line = String::new();
        let mut out = BufReader::new(
            self.child
                .stdout
                .take()
                .ok_or_else(|| failed("no stdout pipe".into()))?,
        );
        let _ = out.read_line(&mut line);
        let status = self.child.wait().map_err(|e| failed(e.to_string()))?;
        drop(holder);
        let pid = match Startup::parse(&line) {
            Some(Startup::Forked { pid }) if status.success() => pid,
            _ => return Err(unexpected_startup(&self.id, &line, &self.run_dir)),
        };
        let start = process_start_time(pid).ok_or_else(|| failed(log_tail(&self.run_dir)))?;
        if let Some((old, old_start)) = predecessor {
            super::destroy::kill_and_wait(old, Some(old_start));
        }
        // Move PID 1 into the cgroup while it builds its root; then let it start the server,
        // which (like everything after it) is born inside the cgroup.
        let joined = crate::faults::point("init.join_cgroup")
            .map_err(SandboxError::from)
            .and_then(|()| Ok(cgroup.add(pid)?))
            .and_then(|()| Ok(crate::faults::point("init.go")?));
        if let Err(e) = joined {
            super::destroy::kill_and_wait(pid, Some(start));
            return Err(e);
        }
        let written = stdin.write_all(b"g");
        drop(stdin);
        let ready = Ready {
            out,
            id: self.id.clone(),
            run_dir: self.run_dir.clone(),
        };
        if let Err(e) = written {
            // PID 1 is gone before it got the byte: the status it wrote last says why.
            return Err(match ready.wait() {
                Err(reported) => reported,
                Ok(()) => failed(format!("cannot start init: {e}")),
            });
        }
        Ok((pid, start, ready))
    }
}

impl Launcher {
    /// [`Launcher::start`], then wait until init serves; an init that does not come up is
    /// killed. Its host pid and start time.
    pub(crate) fn start_serving(
        self,
        config: &InitConfig,
        cgroup: &SandboxCgroup,
        predecessor: Option<(i32, u64)>,
        net: Option<&NetAttach<'_>>,
    ) -> Result<(i32, u64), SandboxError> {
        let (pid, start, ready) = self.start(config, cgroup, predecessor, net)?;
        let served = crate::faults::point("init.ready")
            .map_err(SandboxError::from)
            .and_then(|()| ready.wait());
        if let Err(e) = served {
            super::destroy::kill_and_wait(pid, Some(start));
            return Err(e);
        }
        Ok((pid, start))
    }
}

/// The pipe on which a starting init's server says it is ready.
pub(crate) struct Ready {
    out: BufReader<std::process::ChildStdout>,
    id: String,
    run_dir: PathBuf,
}

impl Ready {
    /// Wait until init's server says `ready` (confined, accepting on its control socket); an
    /// init that dies first closes the pipe, and the error carries its log's tail.
    pub(crate) fn wait(mut self) -> Result<(), SandboxError> {
        use std::os::fd::AsFd;
        let failed = |reason: String| init_failed(&self.id, reason);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed(format!(
                    "not ready within 10 s; {}",
                    log_tail(&self.run_dir)
                )));
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.out.get_ref().as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(failed(format!("cannot wait for init: {e}"))),
            }
        }
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        match Startup::parse(&line) {
            Some(Startup::Ready) => Ok(()),
            _ => Err(unexpected_startup(&self.id, &line, &self.run_dir)),
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // Unused (the host failed before sending the config), or already exited: either way
        // nothing is left running or unreaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, mount: &str) -> LayerRef {
        LayerRef {
            name: name.into(),
            digest: format!("sha256:{mount}"),
            mount: PathBuf::from(mount),
            image: PathBuf::new(),
            snapshot: false,
            store_copy: false,
        }
    }

    #[test]
    fn lowerdirs_are_top_first_and_keep_the_topmost_copy_of_an_image() {
        let stack = [
            layer("000-base", "/m/base"),
            layer("s1", "/m/empty"),
            layer("s2", "/m/x"),
            layer("s3", "/m/empty"),
        ];
        assert_eq!(
            lowerdirs(&stack),
            ["/m/empty", "/m/x", "/m/base"].map(PathBuf::from)
        );
        assert_eq!(
            lowerdirs(&stack[..2]),
            ["/m/empty", "/m/base"].map(PathBuf::from)
        );
    }
}
