//! Who owns a sandbox and which port its front's proxy reaches by default, answered without
//! reading its state file each time: the multi-tenant server asks on every request that names
//! a sandbox.
//!
//! Neither changes while its sandbox lives, so the answer is kept with the identity of
//! the state file it was read from (device, inode, change time, size). A `stat` confirms it
//! on each lookup; a destroyed sandbox (no file) or one created again under the same id (a new
//! file: state files are replaced by rename) is read afresh.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::SandboxError;
use super::runtime::Runtime;
use super::spec::validate_id;
use super::state::SandboxState;

/// The identity of one version of a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
    size: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            size: meta.size(),
        }
    }
}

/// What the cache keeps of a sandbox's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    owner: Option<String>,
    default_port: Option<u16>,
}

/// Facts read so far, by sandbox id.
#[derive(Debug, Default)]
pub(crate) struct OwnerCache {
    known: Mutex<HashMap<String, (Stamp, Facts)>>,
}

/// Entries past which those of vanished sandboxes are dropped.
const PRUNE_ABOVE: usize = 1024;

impl OwnerCache {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, Facts)>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Runtime {
    /// The owner recorded in sandbox `id`'s spec (`None` for a sandbox without one).
    ///
    /// Costs one `stat` when the answer is known; reads the state file only for a sandbox not
    /// seen before or whose state file was replaced. Unlike [`Runtime::get`] it neither checks
    /// that the sandbox's init is alive nor repairs anything.
    pub fn owner_of(&self, id: &str) -> Result<Option<String>, SandboxError> {
        self.facts(id).map(|f| f.owner)
    }

    /// The port a front's proxy reaches in sandbox `id` when a request names none
    /// ([`crate::SandboxSpec::default_port`]); as cheap as [`Runtime::owner_of`].
    pub fn default_port_of(&self, id: &str) -> Result<Option<u16>, SandboxError> {
        self.facts(id).map(|f| f.default_port)
    }

    fn facts(&self, id: &str) -> Result<Facts, SandboxError> {
        validate_id(id)?;
        let path = self.state_path(id);
        let cache = &self.inner.owners;
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                cache.known().remove(id);
                return Err(SandboxError::NotFound { id: id.to_string() });
            }
            Err(e) => return Err(SandboxError::io("stat", &path)(e)),
        };
        let stamp = Stamp::of(&meta);
        if let Some((known, facts)) = cache.known().get(id)
            && *known == stamp
        {
            return Ok(facts.clone());
        }
        let state = SandboxState::load(&path)?;
        let facts = Facts {
            owner: state.spec.owner,
            default_port: state.spec.default_port,
        };
        // The file may have been replaced between the stat and the read: keep the answer only
        // under the stamp of what was read.
        let read = std::fs::metadata(&path).map(|m| Stamp::of(&m)).ok();
        let mut known = cache.known();
        if read == Some(stamp) {
            known.insert(id.to_string(), (stamp, facts.clone()));
        }
        if known.len() > PRUNE_ABOVE {
            let dir = &self.inner.sandboxes_dir;
            known.retain(|id, _| dir.join(id).join("state.json").exists());
        }
        Ok(facts)
    }
}
