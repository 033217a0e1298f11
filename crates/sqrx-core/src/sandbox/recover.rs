//! Recovery: bringing back the sandboxes of a data directory after the process that worked on
//! them was killed (`kill -9` of a CLI, server or Python/Node program) at any step of create,
//! snapshot, restore, activate, clone or destroy.
//!
//! Every state operation holds the sandbox's state lock (`.state.lock`, a `flock`, released by
//! the kernel when its holder dies) from start to end; a create holds the new sandbox's lock
//! from the moment its directory is reserved. Recovery only touches a sandbox whose lock it
//! can take, so it never interferes with an operation that is still running in a live
//! process, and finds what a dead one left:
//!
//! | found | left by | recovery |
//! |---|---|---|
//! | a directory without `state.json` | a create or clone killed before its state was saved | kill what runs in its cgroup, unmount its upper, remove its cgroup, layer claims, id range and directory (the sandbox never existed) |
//! | `restart.json` and a state naming the old init | a restore or activate killed after it began to stop the old init, before its commit | kill the old and any new init, put the old upper back at `rw` (from `rw.old` if the swap began), drop `rw.next`, start an init on the old stack and upper: the sandbox as before the call, its files intact |
//! | `restart.json` and a state naming a new init | a restart killed after its commit | drop `rw.old` and the previous stack's layers: the sandbox after the call |
//! | `frozen-by-snapshot` | a snapshot or clone killed while it packed the upper | thaw the sandbox |
//! | `destroying` | a destroy killed after it began | finish the destroy (`Dead`) |
//! | a state whose init is gone, no journal | an init that died | clean the sandbox up (`Dead`) |
//! | `rw.next`, `rw.old`, extra layer claims, `*.tmp`, images no snapshot names | any operation killed before its commit | removed |
//!
//! [`Runtime::open`] recovers every sandbox; [`Runtime::get`] repairs one whose init it finds
//! gone.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::SandboxError;
use super::destroy::Remains;
use super::mounts::{is_mount_point, lock_exclusive, try_lock_exclusive};
use super::restore::RestartJournal;
use super::runtime::{Runtime, Sandbox};
use super::snapshot::{SnapshotMeta, freeze_marker, image_path, snapshots_dir, state_lock_path};
use super::state::SandboxState;
use super::upper;

/// A state lock held by recovery.
pub(crate) type StateLock = nix::fcntl::Flock<std::fs::File>;

impl Runtime {
    /// Repair every sandbox that no process is working on: finish or roll back what killed
    /// processes left half done, clean up sandboxes whose init is gone, and unmount layers
    /// nobody claims (called by [`Runtime::open`]; see the module docs of `recover.rs`).
    pub fn recover(&self) {
        for id in self.ids() {
            if let Err(e) = self.recover_sandbox(&id) {
                tracing::warn!(sandbox = %id, error = %e, "cannot recover");
            }
        }
        self.release_unclaimed_mounts();
        let networked = self.networked_sandboxes();
        if !networked.is_empty() {
            let restored = self
                .init_program()
                .and_then(|program| self.inner.network.recover(&|| networked.clone(), &program));
            if let Err(e) = restored {
                tracing::warn!(error = %e, "cannot restore the sandboxes' network");
            }
        }
    }

    /// Take the state lock of the sandbox `id` if no live process holds it; `None` when one
    /// does (an operation is running) or the sandbox is gone.
    pub(crate) fn try_state_lock(&self, id: &str) -> Result<Option<StateLock>, SandboxError> {
        let dir = self.inner.sandboxes_dir.join(id);
        // Reservations take the directory and its lock under this lock: holding it, a free
        // lock on a directory without a state means its creator died.
        let _reserving = lock_exclusive(&self.inner.sandboxes_dir.join(".lock"))?;
        if !dir.is_dir() {
            return Ok(None);
        }
        try_lock_exclusive(&state_lock_path(&dir))
    }

    fn recover_sandbox(&self, id: &str) -> Result<(), SandboxError> {
        let Some(_lock) = self.try_state_lock(id)? else {
            return Ok(());
        };
        let path = self.state_path(id);
        if !path.exists() {
            return self.abandon_reservation(id);
        }
        let sandbox = Sandbox {
            rt: self.clone(),
            state: SandboxState::load(&path)?,
            files_owner: None,
        };
        match sandbox.repair() {
            Ok(_) | Err(SandboxError::Dead { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Remove what a create or clone killed before it saved the state left: the sandbox never
    /// existed. Its init (if it started) runs in its cgroup, which is known by name.
    fn abandon_reservation(&self, id: &str) -> Result<(), SandboxError> {
        tracing::warn!(sandbox = %id, "a create was interrupted; removing what it left");
        let cgroup = self.inner.cgroups.existing(&self.cgroup_name(id));
        cgroup.kill_all(Duration::from_secs(5));
        self.discard(
            id,
            Remains {
                dir: self.inner.sandboxes_dir.join(id),
                init: None,
                cgroup: Some(cgroup),
                mounts: Vec::new(),
                ids: None,
                net: None,
                // Unknown: any slot naming the directory is given back.
                networked: crate::network::NetworkPolicy::All,
            },
        )
    }

    /// Unmount the layer mounts no sandbox claims (a process killed after it withdrew a claim,
    /// before it unmounted), and remove mount points an interrupted mount left empty.
    fn release_unclaimed_mounts(&self) {
        let mounts = &self.inner.mounts;
        let released = mounts.locked(|| {
            let claimed = self.mounts_in_use("");
            let all = mounts.all();
            mounts.release(&all, &claimed);
            for m in all.iter().filter(|m| !claimed.contains(m)) {
                if !is_mount_point(m) {
                    let _ = std::fs::remove_dir(m);
                }
            }
            Ok(())
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release unclaimed layer mounts");
        }
    }
}

impl Sandbox {
    /// Bring this sandbox, which no process is working on (the caller holds its state lock),
    /// back to a consistent state: the sandbox, or [`SandboxError::Dead`] once it has been
    /// cleaned up (its init is gone and nothing says an operation of ours stopped it).
    pub(crate) fn repair(mut self) -> Result<Sandbox, SandboxError> {
        let dir = self.dir();
        if super::destroy::destroying_marker(&dir).exists() {
            tracing::warn!(sandbox = %self.id(), "finishing an interrupted destroy");
            self.cleanup()?;
            return Err(SandboxError::Dead {
                id: self.id().to_string(),
            });
        }
        if let Some(journal) = RestartJournal::load(&dir) {
            self.finish_restart(journal)?;
        }
        if !self.state.init_alive() {
            tracing::warn!(sandbox = %self.id(), "init is gone; cleaning up");
            self.cleanup()?;
            return Err(SandboxError::Dead {
                id: self.id().to_string(),
            });
        }
        let marker = freeze_marker(&dir);
        if marker.exists() {
            tracing::warn!(sandbox = %self.id(), "a snapshot was interrupted while the sandbox was frozen; thawing it");
            self.cgroup_or_err()?.set_frozen(false)?;
            let _ = std::fs::remove_file(&marker);
        }
        // No restart is under way: an upper prepared for one, or kept by a committed one, is
        // no longer needed; nor are layers announced for it.
        upper::unmount_at(&upper::next_rw_dir(&dir));
        upper::finish_swap(&dir);
        let keep = self.layer_mounts();
        let extra: Vec<PathBuf> = super::create::claimed_mounts(&dir)
            .into_iter()
            .filter(|m| !keep.contains(m))
            .collect();
        if !extra.is_empty() {
            self.rt.claim_only(self.id(), &dir, &keep, &extra)?;
        }
        self.remove_leftover_files();
        Ok(self)
    }

    /// A restart (restore, activate) was killed: finish it if its state was saved, roll it
    /// back to the previous stack and upper if not.
    fn finish_restart(&mut self, journal: RestartJournal) -> Result<(), SandboxError> {
        let dir = self.dir();
        if (self.state.init_pid, self.state.init_start) != journal.old_init {
            // The state names another init: the restart was committed (or already rolled
            // back); only its cleanup was lost.
            tracing::warn!(sandbox = %self.id(), "finishing a restart that was interrupted after its commit");
            upper::unmount_at(&upper::next_rw_dir(&dir));
            upper::finish_swap(&dir);
            RestartJournal::remove(&dir);
            return Ok(());
        }
        tracing::warn!(sandbox = %self.id(), "a restart was interrupted; rolling back to the previous stack");
        // Stop the old init (if the kill had not come yet) and a new one (if it was started).
        super::destroy::kill_and_wait(journal.old_init.0, Some(journal.old_init.1));
        if let Some(cg) = &self.state.cgroup
            && !cg.kill_all(Duration::from_secs(5))
        {
            tracing::warn!(sandbox = %self.id(), "processes of the interrupted restart survive");
        }
        upper::undo_swap(&dir);
        upper::unmount_at(&upper::next_rw_dir(&dir));
        if !is_mount_point(&upper::rw_dir(&dir)) {
            // No upper to come back to (the host rebooted): the files are gone.
            tracing::error!(sandbox = %self.id(), "the upper of the interrupted restart is gone; cleaning up");
            self.cleanup()?;
            return Err(SandboxError::Dead {
                id: self.id().to_string(),
            });
        }
        self.restart_previous()?;
        RestartJournal::remove(&dir);
        tracing::info!(sandbox = %self.id(), pid = self.state.init_pid, "back on its previous stack");
        Ok(())
    }

    /// Remove temporaries of killed writers (state, claims, journal, images, labels, merge
    /// records) and snapshot images that no label, stack or merge record names (packed by a
    /// snapshot killed before its label appeared).
    fn remove_leftover_files(&self) {
        let dir = self.dir();
        // Control sockets of inits that are gone (each init has its own).
        let current = self.control_socket();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let socket = name == crate::init::DEFAULT_SOCKET
                || (name.starts_with("c-") && name.ends_with(".sock"));
            if socket && e.path() != current {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let snapshots = snapshots_dir(&dir);
        for tmp in ["state.json.tmp", "layers.json.tmp", "restart.json.tmp"] {
            let _ = std::fs::remove_file(dir.join(tmp));
        }
        for d in [snapshots.join(".tmp"), snapshots.join("merged")] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let temporary = d.ends_with(".tmp") || e.path().extension() == Some("tmp".as_ref());
                if temporary {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let Some(named) = self.images_named() else {
            return;
        };
        for e in std::fs::read_dir(snapshots.join("images"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !named.contains(&e.path()) {
                tracing::info!(sandbox = %self.id(), image = %e.path().display(), "removing an image no snapshot names");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The snapshot images a label, the running stack or a merge record names; `None` when a
    /// label cannot be read (then nothing is removed).
    fn images_named(&self) -> Option<HashSet<PathBuf>> {
        let dir = self.dir();
        let snapshots = snapshots_dir(&dir);
        let mut digests: Vec<String> = self.state.layers.iter().map(|l| l.digest.clone()).collect();
        for e in std::fs::read_dir(&snapshots)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = e.path();
            if path.extension() != Some("json".as_ref()) {
                continue;
            }
            let meta: SnapshotMeta = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            digests.push(meta.info.digest);
            digests.extend(meta.stack.into_iter().map(|l| l.digest));
        }
        for e in std::fs::read_dir(snapshots.join("merged"))
            .into_iter()
            .flatten()
            .flatten()
        {
            digests.extend(
                std::fs::read_to_string(e.path())
                    .ok()
                    .map(|d| d.trim().to_string()),
            );
        }
        Some(
            digests
                .iter()
                .map(|d| image_path(&dir, d))
                .collect::<HashSet<_>>(),
        )
    }
}
