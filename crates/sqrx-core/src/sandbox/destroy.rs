//! `Sandbox::destroy` and the cleanup shared with recovery: kill init (the kernel then kills
//! every process of the PID namespace and drops its mounts), remove the cgroup, release the
//! layer mounts nobody else uses, remove the sandbox's directory.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::SandboxError;
use super::runtime::Sandbox;
use super::state::process_start_time;

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
    /// devices, cgroups or files.
    pub fn destroy(self) -> Result<(), SandboxError> {
        self.cleanup()?;
        tracing::info!(sandbox = %self.id(), "sandbox destroyed");
        Ok(())
    }

    pub(crate) fn cleanup(&self) -> Result<(), SandboxError> {
        // Frozen tasks on cgroup v1 do not die of SIGKILL until thawed.
        if let Some(cg) = &self.state.cgroup
            && cg.is_frozen()
        {
            let _ = cg.set_frozen(false);
        }
        kill_and_wait(self.state.init_pid, Some(self.state.init_start));
        tracing::debug!(sandbox = %self.id(), "init gone");
        super::upper::unmount_upper(&self.dir());
        if let Some(cg) = &self.state.cgroup {
            cg.remove(Duration::from_secs(5))?;
        }
        tracing::debug!(sandbox = %self.id(), "cgroup removed");
        let mounts: Vec<_> = self.state.layers.iter().map(|l| l.mount.clone()).collect();
        let rt = &self.rt;
        rt.inner.mounts.locked(|| {
            // Withdraw our claim inside the lock, so two sandboxes destroyed at once cannot
            // each keep a mount for the other.
            let _ = std::fs::remove_file(self.dir().join("layers.json"));
            rt.inner
                .mounts
                .release(&mounts, &rt.mounts_in_use(self.id()));
            Ok(())
        })?;
        let dir = self.dir();
        if let Some(ids) = self.state.ids {
            rt.inner.ids.release(ids, &dir);
        }
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
