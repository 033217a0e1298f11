//! `Sandbox::destroy` and the cleanup shared with recovery: kill init (the kernel then kills
//! every process of the PID namespace and drops its mounts), remove the cgroup, release the
//! layer mounts nobody else uses, remove the sandbox's directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::SandboxError;
use super::runtime::{Runtime, Sandbox};
use super::state::process_start_time;
use crate::cgroup::SandboxCgroup;

/// Send SIGKILL to `pid` if it is still the process that started at `start`; whether it was.
pub(crate) fn kill(pid: i32, start: Option<u64>) -> bool {
    let current = process_start_time(pid);
    if current.is_none() || (start.is_some() && current != start) {
        return false;
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    true
}

/// SIGKILL `pid` (if it is still the process started at `start`) and wait until it is gone.
pub(crate) fn kill_and_wait(pid: i32, start: Option<u64>) {
    if !kill(pid, start) {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Not our child (init re-parented itself): wait by watching /proc. Once PID 1 of the
    // namespace is gone, the kernel has killed the rest of it too.
    while process_start_time(pid).is_some_and(|s| start.is_none_or(|st| st == s))
        && Instant::now() < deadline
    {
        // A zombie only lingers if we are its parent (creation failed early): reap it.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_micros(250));
    }
}

impl Sandbox {
    /// Stop every process and remove the sandbox. Nothing is left behind: no mounts, loop
    /// devices, cgroups or files. With ephemeral sandboxes (see
    /// [`crate::remote::RemoteConfig::ephemeral`]) the sandbox is first snapshotted into the
    /// bucket; if that fails, the sandbox is kept and the error returned
    /// ([`Sandbox::destroy_unsaved`] skips it).
    pub fn destroy(self) -> Result<(), SandboxError> {
        #[cfg(feature = "s3")]
        self.save_to_bucket()?;
        self.destroy_unsaved()
    }

    /// Stop every process and remove the sandbox, without saving an ephemeral sandbox into the
    /// bucket first (what [`Sandbox::destroy`] does otherwise).
    pub fn destroy_unsaved(self) -> Result<(), SandboxError> {
        // Serialised with the state operations (a crash mid-destroy is finished by the next
        // look-up or recovery: the init is gone and nothing marks it as restarting).
        let _lock = match self.state_lock() {
            Ok(lock) => Some(lock),
            Err(SandboxError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        self.cleanup()?;
        tracing::info!(sandbox = %self.id(), "sandbox destroyed");
        Ok(())
    }

    /// Remove the sandbox whatever state it is in; the caller holds its state lock.
    pub(crate) fn cleanup(&self) -> Result<(), SandboxError> {
        let s = &self.state;
        self.rt.discard(
            self.id(),
            Remains {
                dir: self.dir(),
                init: Some((s.init_pid, Some(s.init_start))),
                cgroup: s.cgroup.clone(),
                mounts: self.layer_mounts(),
                ids: s.ids,
                net: s.net,
                networked: s.spec.network.clone(),
            },
        )
    }
}

/// `<sandbox dir>/destroying`: a destroy (or cleanup) of the sandbox has begun.
pub(crate) fn destroying_marker(sandbox_dir: &std::path::Path) -> PathBuf {
    sandbox_dir.join("destroying")
}

/// What a sandbox (created, half-created or crashed) holds on the host.
pub(crate) struct Remains {
    /// Its directory.
    pub dir: PathBuf,
    /// Its init (host pid, start time if known).
    pub init: Option<(i32, Option<u64>)>,
    /// Its cgroup, whose remaining processes are killed.
    pub cgroup: Option<SandboxCgroup>,
    /// The layer mounts of its stack (those its `layers.json` claims are added).
    pub mounts: Vec<PathBuf>,
    /// Its host id range; `None` gives back any range naming its directory.
    pub ids: Option<super::IdRange>,
    /// Its slot in the address pool.
    pub net: Option<crate::network::NetSlot>,
    /// The network policy it had (without `net`, any slot naming its directory is given
    /// back when it asked for a network).
    pub networked: crate::network::NetworkPolicy,
}

impl Runtime {
    /// Release everything in `remains` of the sandbox `id` and remove its directory: kill its
    /// init and processes, unmount its uppers (`rw`, `rw.next`, `rw.old`), remove its cgroup,
    /// withdraw its claim on layer mounts and unmount those nobody else claims, give back its
    /// id range. Used by destroy, by a create's rollback and by recovery.
    pub(crate) fn discard(&self, id: &str, remains: Remains) -> Result<(), SandboxError> {
        let Remains {
            dir,
            init,
            cgroup,
            mut mounts,
            ids,
            net,
            networked,
        } = remains;
        // From here on the sandbox is going: a process killed during the rest leaves this
        // mark, and recovery finishes the job (the init may take a moment to die).
        let _ = crate::paths::create_private(&destroying_marker(&dir));
        // Frozen tasks on cgroup v1 do not die of SIGKILL until thawed.
        if let Some(cg) = &cgroup
            && cg.is_frozen()
        {
            let _ = cg.set_frozen(false);
        }
        crate::faults::point("destroy.kill_init")?;
        if let Some((pid, start)) = init {
            kill_and_wait(pid, start);
        }
        tracing::debug!(sandbox = %id, "init gone");
        if net.is_some() || networked.has_network() {
            crate::faults::point("destroy.network")?;
            self.inner.network.detach(id, &dir, net, &networked);
        }
        crate::faults::point("destroy.unmount_upper")?;
        super::upper::unmount_upper(&dir);
        crate::faults::point("destroy.remove_cgroup")?;
        if let Some(cg) = &cgroup {
            cg.remove(Duration::from_secs(5))?;
        }
        tracing::debug!(sandbox = %id, "cgroup removed");
        // The stack, and whatever an interrupted restart or merge announced besides it.
        mounts.extend(super::create::claimed_mounts(&dir));
        crate::faults::point("destroy.release_layers")?;
        self.inner.mounts.locked(|| {
            // Withdraw our claim inside the lock, so two sandboxes destroyed at once cannot
            // each keep a mount for the other.
            let _ = std::fs::remove_file(dir.join("layers.json"));
            self.inner.mounts.release(&mounts, &self.mounts_in_use(id));
            Ok(())
        })?;
        crate::faults::point("destroy.release_ids")?;
        match ids {
            Some(ids) => self.inner.ids.release(ids, &dir),
            None => self.inner.ids.release_owner(&dir),
        }
        crate::faults::point("destroy.remove_dir")?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SandboxError::Io {
                op: "remove",
                path: dir,
                source: e,
            }),
        }
    }
}
