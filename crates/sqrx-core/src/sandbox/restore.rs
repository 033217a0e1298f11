//! `Sandbox::restore` and `Sandbox::activate`: change a sandbox's lower stack.
//!
//! overlayfs cannot change the layers of a mounted overlay, so both restart the sandbox's init
//! on the new stack, in the same cgroup, with the same id, spec and exec history: every process
//! of the sandbox is stopped (as by a reboot). Restore also replaces the upper tmpfs with an
//! empty one, which is O(1) whatever the snapshot's size; activate keeps the upper, so files
//! written before are still there.

use std::path::PathBuf;

use super::SandboxError;
use super::create::{Launcher, init_config};
use super::runtime::Sandbox;
use super::state::LayerRef;

impl Sandbox {
    /// Restore the snapshot `label`: the sandbox's filesystem becomes exactly what it was when
    /// the snapshot was taken (layers included). Every process of the sandbox is stopped and the
    /// sandbox restarts on the snapshot's stack; the upper starts empty.
    pub fn restore(&mut self, label: &str) -> Result<(), SandboxError> {
        let _lock = self.state_lock()?;
        self.refresh()?;
        let meta = self.snapshot_meta(label)?;
        let stack = self.restore_stack(&meta)?;
        self.restart(stack, true, Some(meta.info.label.clone()))?;
        tracing::info!(sandbox = %self.id(), label, "snapshot restored");
        Ok(())
    }

    /// Add the store layer `layer` on top of the sandbox's lower layers. Files written in the
    /// sandbox are kept and still win over the layer's; every process of the sandbox is stopped
    /// and the sandbox restarts with the layer in place.
    pub fn activate(&mut self, layer: &str) -> Result<(), SandboxError> {
        let name = crate::layer::LayerName::new(layer)?;
        let _lock = self.state_lock()?;
        self.refresh()?;
        if self
            .state
            .layers
            .iter()
            .any(|l| !l.snapshot && l.name == name.as_str())
        {
            return Err(SandboxError::LayerActive {
                id: self.id().to_string(),
                layer: layer.to_string(),
            });
        }
        let layer = self.rt.layers().get(&name)?;
        let mut stack = self.state.layers.clone();
        stack.push(self.rt.layer_ref(&layer));
        let snapshot = self.state.active_snapshot.clone();
        self.restart(stack, false, snapshot)?;
        self.state.spec.layers.push(name.to_string());
        self.state.save(&self.rt.state_path(self.id()))?;
        tracing::info!(sandbox = %self.id(), layer = %name, "layer activated");
        Ok(())
    }

    /// Reload the state from disk: another handle may have restarted the sandbox.
    fn refresh(&mut self) -> Result<(), SandboxError> {
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        Ok(())
    }

    /// Restart init on `stack`, clearing the upper when `clear_upper`.
    fn restart(
        &mut self,
        stack: Vec<LayerRef>,
        clear_upper: bool,
        active_snapshot: Option<String>,
    ) -> Result<(), SandboxError> {
        let started = std::time::Instant::now();
        let ms = || started.elapsed().as_micros() as f64 / 1000.0;
        let rt = self.rt.clone();
        let dir = self.dir();
        let old: Vec<PathBuf> = self.state.layers.iter().map(|l| l.mount.clone()).collect();
        let new: Vec<PathBuf> = stack.iter().map(|l| l.mount.clone()).collect();
        let mut both = old.clone();
        both.extend(new.iter().filter(|m| !old.contains(m)).cloned());
        // The new init program loads while the layers are mounted (killed if that fails).
        let (init, self_exec) = rt.init_program()?;
        let launcher = Launcher::spawn(&init, self_exec, self.id(), &dir)?;
        // Everything that can fail without harm comes first: the new layers are mounted while
        // the sandbox still runs on the old ones.
        rt.announce_mounts(&dir, &both)?;
        let acquired = rt.inner.mounts.locked(|| {
            for l in &stack {
                rt.inner.mounts.acquire(l)?;
            }
            Ok(())
        });
        if let Err(e) = acquired {
            let _ = rt.inner.mounts.locked(|| {
                rt.announce_mounts(&dir, &old)?;
                rt.inner.mounts.release(&new, &rt.mounts_in_use(self.id()));
                Ok(())
            });
            return Err(e);
        }
        let cgroup = self
            .state
            .cgroup
            .clone()
            .ok_or_else(|| SandboxError::Invalid {
                field: "sandbox",
                reason: format!("sandbox {} has no cgroup", self.id()),
            })?;

        if cgroup.is_frozen() {
            cgroup.set_frozen(false)?;
        }
        tracing::debug!(sandbox = %self.id(), ms = ms(), "layers mounted");
        // The old init dies while the new one starts (its own namespaces, a fresh upper);
        // `start_init` waits for it to be gone before the new one joins the cgroup.
        let old_init = (self.state.init_pid, self.state.init_start);
        super::destroy::kill(old_init.0, Some(old_init.1));
        let exec_seq_base = self.logs().last().map(|e| e.seq).unwrap_or(0);
        // A restore starts on a fresh upper mounted beside the current one, which stays until
        // the new init serves: a failed restore gives the sandbox back its files.
        let next_rw = super::upper::next_rw_dir(&dir);
        let restarted = (|| {
            let mut config = init_config(&self.state.spec, &dir, &stack, self.state.ids);
            if clear_upper {
                super::upper::mount_upper_at(&next_rw, self.state.spec.upper_mb)?;
                config.rw_dir = next_rw.clone();
            }
            config.exec_seq_base = exec_seq_base;
            tracing::debug!(sandbox = %self.id(), ms = ms(), "upper ready");
            launcher.start_serving(&config, &cgroup, Some(old_init))
        })();
        let restarted = match restarted {
            Ok(p) if clear_upper => super::upper::replace_upper(&dir, &next_rw)
                .map(|()| p)
                .inspect_err(|_| super::destroy::kill_and_wait(p.0, Some(p.1))),
            other => other,
        };
        let (pid, start) = match restarted {
            Ok(p) => p,
            Err(e) => {
                super::upper::unmount_at(&next_rw);
                // Back to the stack and upper it had: its processes are gone (as they would be
                // after the restore), its files are not.
                let mut config =
                    init_config(&self.state.spec, &dir, &self.state.layers, self.state.ids);
                config.exec_seq_base = exec_seq_base;
                let back = rt.init_program().and_then(|(init, self_exec)| {
                    Launcher::spawn(&init, self_exec, self.id(), &dir)?
                        .start_serving(&config, &cgroup, None)
                });
                match back {
                    Ok((pid, start)) => {
                        tracing::warn!(sandbox = %self.id(), error = %e, "restart failed; the sandbox runs on its previous stack");
                        self.state.init_pid = pid;
                        self.state.init_start = start;
                        self.state.save(&rt.state_path(self.id()))?;
                        let _ = rt.inner.mounts.locked(|| {
                            rt.announce_mounts(&dir, &old)?;
                            let unused: Vec<PathBuf> =
                                new.iter().filter(|m| !old.contains(m)).cloned().collect();
                            rt.inner
                                .mounts
                                .release(&unused, &rt.mounts_in_use(self.id()));
                            Ok(())
                        });
                        return Err(e);
                    }
                    Err(again) => {
                        // Neither stack starts: remove the sandbox rather than leave one that
                        // cannot run. Its state names the old layers; the new ones are
                        // released with them.
                        tracing::error!(sandbox = %self.id(), error = %e, again = %again, "restart failed twice; destroying");
                    }
                }
                self.state
                    .layers
                    .extend(stack.into_iter().filter(|l| !old.contains(&l.mount)));
                let _ = self.cleanup();
                return Err(e);
            }
        };
        self.state.layers = stack;
        self.state.active_snapshot = active_snapshot;
        self.state.init_pid = pid;
        self.state.init_start = start;
        self.state.save(&rt.state_path(self.id()))?;
        tracing::debug!(sandbox = %self.id(), ms = ms(), "init serving");
        rt.inner.mounts.locked(|| {
            rt.announce_mounts(&dir, &new)?;
            let unused: Vec<PathBuf> = old.into_iter().filter(|m| !new.contains(m)).collect();
            rt.inner
                .mounts
                .release(&unused, &rt.mounts_in_use(self.id()));
            Ok(())
        })
    }
}
