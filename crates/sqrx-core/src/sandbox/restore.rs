//! `Sandbox::restore` and `Sandbox::activate`: change a sandbox's lower stack.
//!
//! overlayfs cannot change the layers of a mounted overlay, so both restart the sandbox's init
//! on the new stack, in the same cgroup, with the same id, spec and exec history: every process
//! of the sandbox is stopped (as by a reboot). Restore also replaces the upper tmpfs with an
//! empty one, which is O(1) whatever the snapshot's size; activate keeps the upper, so files
//! written before are still there.
//!
//! Both are transactions. Everything that can fail without harm (mounting the new layers and
//! the fresh upper, loading the new init) happens while the sandbox still runs; the old upper
//! is kept until the state naming the new init is saved. A failure at any step before that
//! undoes what was done: the new init is killed, the old upper goes back in place, and, if the
//! old init was already stopped, a new init starts on the old stack and the old upper (the
//! sandbox's files are kept, its processes are not, as after the operation).
//!
//! A crash of the owning process mid-restart is repaired by the next runtime: just before the
//! old init is stopped, the restart writes its journal (`restart.json`, naming the old init);
//! it is removed once the restart is committed or rolled back. A runtime that finds a journal
//! and no process holding the sandbox's state lock finishes a committed restart or rolls back
//! one that was not (see `sandbox/recover.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxError;
use super::create::{Launcher, NetAttach, init_config};
use super::runtime::Sandbox;
use super::state::{LayerRef, SandboxState};
use super::upper;
use crate::faults::point;
use crate::init::InitConfig;

/// What a restart changes, applied to the state only once the new init serves.
struct Next {
    /// The new lower stack, base first.
    stack: Vec<LayerRef>,
    /// Start on an empty upper (restore) or keep the current one (activate).
    clear_upper: bool,
    /// The snapshot the sandbox runs on afterwards.
    active_snapshot: Option<String>,
    /// The spec's store layers afterwards.
    spec_layers: Vec<String>,
}

/// `<sandbox dir>/restart.json`: a restart is replacing the init named here. Written before
/// the old init is stopped; removed once the restart is committed or rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RestartJournal {
    /// The init the restart replaces (host pid, start time).
    pub old_init: (i32, u64),
}

impl RestartJournal {
    fn path(sandbox_dir: &Path) -> PathBuf {
        sandbox_dir.join("restart.json")
    }

    fn save(&self, sandbox_dir: &Path) -> Result<(), SandboxError> {
        super::state::replace_json(&Self::path(sandbox_dir), self)
    }

    /// The journal of an unfinished restart of the sandbox in `sandbox_dir`, if any (an
    /// unreadable one counts as none: it is written atomically).
    pub(crate) fn load(sandbox_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(Self::path(sandbox_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The restart is over (committed or rolled back).
    pub(crate) fn remove(sandbox_dir: &Path) {
        let path = Self::path(sandbox_dir);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the restart journal");
        }
    }
}

/// The side effects a restart has had so far: what a rollback undoes.
#[derive(Default)]
struct Progress {
    /// `layers.json` names the old and the new mounts.
    announced: bool,
    /// The journal (`restart.json`) is written.
    journal: bool,
    /// A fresh upper is mounted at `rw.next`.
    next_upper: bool,
    /// The old init was sent SIGKILL.
    old_killed: bool,
    /// The new init (pid, start time), started.
    new_init: Option<(i32, u64)>,
    /// The upper swap began: the old upper may be at `rw.old` only.
    swapping: bool,
}

impl Sandbox {
    /// Restore the snapshot `label`: the sandbox's filesystem becomes exactly what it was when
    /// the snapshot was taken (layers included). Every process of the sandbox is stopped and the
    /// sandbox restarts on the snapshot's stack; the upper starts empty. On failure the sandbox
    /// keeps its stack and files (see the module docs).
    pub fn restore(&mut self, label: &str) -> Result<(), SandboxError> {
        let _lock = self.state_lock()?;
        self.refresh()?;
        let meta = match self.snapshot_meta(label) {
            #[cfg(feature = "s3")]
            Err(SandboxError::SnapshotNotFound { .. }) => self.fetch_label(label)?,
            other => other?,
        };
        let stack = self.flattened(self.restore_stack(&meta)?)?;
        let next = Next {
            stack,
            clear_upper: true,
            active_snapshot: Some(meta.info.label.clone()),
            spec_layers: self.state.spec.layers.clone(),
        };
        self.restart(next)?;
        tracing::info!(sandbox = %self.id(), label, "snapshot restored");
        Ok(())
    }

    /// Add the store layer `layer` on top of the sandbox's lower layers. Files written in the
    /// sandbox are kept and still win over the layer's; every process of the sandbox is stopped
    /// and the sandbox restarts with the layer in place. On failure the sandbox keeps its stack
    /// and files.
    pub fn activate(&mut self, layer: &str) -> Result<(), SandboxError> {
        let name = crate::layer::LayerName::new(layer)?;
        let _lock = self.state_lock()?;
        self.refresh()?;
        if self
            .state
            .layers
            .iter()
            .any(|l| (!l.snapshot || l.store_copy) && l.name == name.as_str())
        {
            return Err(SandboxError::LayerActive {
                id: self.id().to_string(),
                layer: layer.to_string(),
            });
        }
        let layer = match self.rt.layers().get(&name) {
            #[cfg(feature = "s3")]
            Err(crate::layer::LayerError::NotFound { .. }) if self.rt.remote()?.is_some() => {
                self.rt.pull_layer(&name)?
            }
            other => other?,
        };
        let mut stack = self.state.layers.clone();
        stack.push(self.rt.layer_ref(&layer));
        let stack = self.flattened(stack)?;
        let mut spec_layers = self.state.spec.layers.clone();
        spec_layers.push(name.to_string());
        let next = Next {
            stack,
            clear_upper: false,
            active_snapshot: self.state.active_snapshot.clone(),
            spec_layers,
        };
        self.restart(next)?;
        tracing::info!(sandbox = %self.id(), layer = %name, "layer activated");
        Ok(())
    }

    /// Reload the state from disk: another handle may have restarted the sandbox.
    fn refresh(&mut self) -> Result<(), SandboxError> {
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        Ok(())
    }

    /// Restart init on `next`, or leave the sandbox on its current stack and files.
    fn restart(&mut self, next: Next) -> Result<(), SandboxError> {
        let started = std::time::Instant::now();
        let mut progress = Progress::default();
        match self.restart_forward(&next, &mut progress) {
            Ok(state) => {
                self.commit(state);
                tracing::debug!(sandbox = %self.id(), ms = started.elapsed().as_micros() as f64 / 1000.0, "restarted");
                Ok(())
            }
            Err(e) => {
                self.roll_back(&next, progress, &e);
                Err(e)
            }
        }
    }

    /// The steps of a restart up to and including saving the new state, which is returned.
    fn restart_forward(
        &self,
        next: &Next,
        progress: &mut Progress,
    ) -> Result<SandboxState, SandboxError> {
        let rt = &self.rt;
        let dir = self.dir();
        let cgroup = self.cgroup_or_err()?.clone();
        let old: Vec<PathBuf> = self.state.layers.iter().map(|l| l.mount.clone()).collect();
        let mut both = old.clone();
        both.extend(
            next.stack
                .iter()
                .map(|l| l.mount.clone())
                .filter(|m| !old.contains(m)),
        );
        // The new init program loads while the layers are mounted (killed if a step fails).
        point("restart.spawn_init")?;
        let (init, self_exec) = rt.init_program()?;
        let launcher = Launcher::spawn(&init, self_exec, self.id(), &dir)?;

        // Everything that can fail without harm comes first: the new layers and the fresh
        // upper are mounted while the sandbox still runs on the old ones.
        point("restart.announce_mounts")?;
        progress.announced = true;
        rt.announce_mounts(&dir, &both)?;
        rt.inner.mounts.locked(|| {
            for l in &next.stack {
                rt.inner.mounts.acquire(l)?;
            }
            Ok(())
        })?;
        let mut config = init_config(
            &self.state.spec,
            &dir,
            &next.stack,
            self.state.ids,
            self.dns(),
        );
        config.trust_ca = self.trust_ca()?;
        config.exec_seq_base = self.logs().last().map(|e| e.seq).unwrap_or(0);
        if next.clear_upper {
            point("restart.mount_upper")?;
            let next_rw = upper::next_rw_dir(&dir);
            progress.next_upper = true;
            upper::mount_upper_at(&next_rw, self.state.spec.upper_mb)?;
            config.rw_dir = next_rw;
        }

        // The old init dies while the new one starts (its own namespaces, its upper);
        // `start_init` waits for it to be gone before the new one joins the cgroup. Frozen
        // tasks on cgroup v1 do not die of SIGKILL until thawed.
        let old_init = (self.state.init_pid, self.state.init_start);
        point("restart.stop_old_init")?;
        RestartJournal { old_init }.save(&dir)?;
        progress.journal = true;
        if cgroup.is_frozen() {
            cgroup.set_frozen(false)?;
        }
        progress.old_killed = true;
        super::destroy::kill(old_init.0, Some(old_init.1));
        let reattach = self.reattach();
        let (pid, start) = launcher.start_serving(
            &config,
            &cgroup,
            Some(old_init),
            self.state
                .net
                .is_some()
                .then_some(&reattach as &NetAttach<'_>),
        )?;
        progress.new_init = Some((pid, start));

        if next.clear_upper {
            point("restart.swap_upper")?;
            progress.swapping = true;
            upper::swap_upper(&dir, &upper::next_rw_dir(&dir))?;
        }
        let mut state = self.state.clone();
        state.layers = next.stack.clone();
        state.active_snapshot = next.active_snapshot.clone();
        state.spec.layers = next.spec_layers.clone();
        state.init_pid = pid;
        state.init_start = start;
        state.socket = config.socket.clone();
        // The commit point: once this state is on disk, the sandbox is the new one.
        point("restart.save_state")?;
        state.save(&rt.state_path(self.id()))?;
        Ok(state)
    }

    /// The restart succeeded: adopt `state` and drop what the old stack alone needed. Nothing
    /// here can undo the restart; failures are logged.
    fn commit(&mut self, state: SandboxState) {
        let rt = self.rt.clone();
        let dir = self.dir();
        let old: Vec<PathBuf> = self.layer_mounts();
        let old_socket = self.control_socket();
        self.state = state;
        if old_socket != self.control_socket() {
            let _ = std::fs::remove_file(&old_socket);
        }
        let new = self.layer_mounts();
        upper::finish_swap(&dir);
        let unused: Vec<PathBuf> = old.into_iter().filter(|m| !new.contains(m)).collect();
        if let Err(e) = rt.claim_only(self.id(), &dir, &new, &unused) {
            // layers.json still claims the old mounts too: they stay until the next restart,
            // the destroy or a recovery, which is harmless.
            tracing::warn!(sandbox = %self.id(), error = %e, "cannot release the previous stack's layers");
        }
        RestartJournal::remove(&dir);
    }

    /// Undo the steps in `progress` after the restart to `next` failed with `error`.
    fn roll_back(&mut self, next: &Next, progress: Progress, error: &SandboxError) {
        let rt = self.rt.clone();
        let dir = self.dir();
        if let Some((pid, start)) = progress.new_init {
            super::destroy::kill_and_wait(pid, Some(start));
        }
        if progress.swapping {
            upper::undo_swap(&dir);
        }
        if progress.next_upper {
            upper::unmount_at(&upper::next_rw_dir(&dir));
        }
        if progress.old_killed {
            match self.restart_previous() {
                Ok(()) => {
                    RestartJournal::remove(&dir);
                    tracing::warn!(sandbox = %self.id(), error = %error, "restart failed; the sandbox runs on its previous stack");
                }
                Err(again) => {
                    // Neither stack starts: the journal stays, and the next look-up or
                    // recovery tries once more, or cleans the sandbox up.
                    tracing::error!(sandbox = %self.id(), error = %error, again = %again, "restart failed and the previous stack does not start either");
                }
            }
        } else if progress.journal {
            RestartJournal::remove(&dir);
        }
        if progress.announced {
            let old = self.layer_mounts();
            let added: Vec<PathBuf> = next
                .stack
                .iter()
                .map(|l| l.mount.clone())
                .filter(|m| !old.contains(m))
                .collect();
            if let Err(e) = rt.claim_only(self.id(), &dir, &old, &added) {
                tracing::warn!(sandbox = %self.id(), error = %e, "cannot release the layers of a failed restart");
            }
        }
    }

    /// The old init was stopped and the restart failed (or crashed): start a new init on the
    /// stack and upper the sandbox had, and save its state. Its files are kept; its processes
    /// are gone, as they would be after the restart.
    /// Gives a restarted init's new network namespace the sandbox's link again (same slot,
    /// same rules).
    pub(crate) fn reattach(
        &self,
    ) -> impl Fn(std::os::fd::BorrowedFd<'_>) -> Result<(), SandboxError> + '_ {
        move |ns| {
            let Some(slot) = self.state.net else {
                return Ok(());
            };
            let program = self.rt.init_program()?;
            self.rt.inner.network.attach(
                self.id(),
                ns,
                &crate::network::Networked {
                    slot,
                    policy: self.state.spec.network.clone(),
                    egress: self.state.egress,
                },
                &|| self.rt.networked_sandboxes(),
                &program,
            )
        }
    }

    /// The resolver's address for the sandbox's init, when it has a network.
    fn dns(&self) -> Option<std::net::Ipv4Addr> {
        self.state
            .net
            .map(|slot| self.rt.inner.network.info(slot).gateway)
    }

    pub(crate) fn restart_previous(&mut self) -> Result<(), SandboxError> {
        let rt = self.rt.clone();
        let dir = self.dir();
        super::destroy::kill_and_wait(self.state.init_pid, Some(self.state.init_start));
        let mut config = init_config(
            &self.state.spec,
            &dir,
            &self.state.layers,
            self.state.ids,
            self.dns(),
        );
        config.trust_ca = self.trust_ca()?;
        config.exec_seq_base = self.logs().last().map(|e| e.seq).unwrap_or(0);
        let back = {
            let reattach = self.reattach();
            let net = self
                .state
                .net
                .is_some()
                .then_some(&reattach as &NetAttach<'_>);
            // Each attempt's init has a control socket of its own: one that a failed attempt
            // left starting cannot take the next one's.
            let start = || {
                let cgroup = self.cgroup_or_err()?;
                let (init, self_exec) = rt.init_program()?;
                let config = InitConfig {
                    socket: Some(crate::init::fresh_socket_name()),
                    ..config.clone()
                };
                Launcher::spawn(&init, self_exec, self.id(), &dir)?
                    .start_serving(&config, cgroup, None, net)
                    .map(|(pid, start)| (pid, start, config.socket))
            };
            // A second attempt for a transient failure (the first may race the dying inits).
            start().or_else(|first| {
                tracing::warn!(sandbox = %self.id(), error = %first, "restarting on the previous stack failed; trying again");
                start()
            })
        };
        let (pid, start, socket) = back?;
        self.state.init_pid = pid;
        self.state.init_start = start;
        self.state.socket = socket;
        if let Err(e) = self.state.save(&rt.state_path(self.id())) {
            // The init runs, but the state names the stopped one: kill it, so that the
            // journal's rollback starts it again later.
            super::destroy::kill_and_wait(pid, Some(start));
            return Err(e);
        }
        Ok(())
    }
}
