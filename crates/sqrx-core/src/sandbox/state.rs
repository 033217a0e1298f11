//! A sandbox's persisted state (`<data>/sandboxes/<id>/state.json`), written atomically, and
//! the liveness check of its init that tells a running sandbox from a dead one after restarts.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SandboxError, SandboxSpec};
use crate::cgroup::SandboxCgroup;

/// One layer of a sandbox's stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer name.
    pub name: String,
    /// Its digest (the shared mount is keyed by it).
    pub digest: String,
    /// Where it is mounted on the host.
    pub mount: PathBuf,
    /// Its image: in the layer store, or a snapshot image in the sandbox's directory.
    #[serde(default)]
    pub image: PathBuf,
    /// Whether it is a snapshot (then `name` is the snapshot's label).
    #[serde(default)]
    pub snapshot: bool,
    /// With `snapshot`: the image is in fact the store layer `name` as it was on the machine
    /// the snapshot was taken on, kept in the sandbox's directory because this store has
    /// other contents under that name (a snapshot restored from the bucket).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_copy: bool,
}

/// Everything needed to re-attach to or clean up a sandbox from another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxState {
    /// The spec it was created with.
    pub spec: SandboxSpec,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Its lower layers, base first (layers from the store, then restored snapshots).
    pub layers: Vec<LayerRef>,
    /// The label of the snapshot last restored, if any.
    #[serde(default)]
    pub active_snapshot: Option<String>,
    /// Its cgroup.
    pub cgroup: Option<SandboxCgroup>,
    /// The host pid of its init (PID 1 inside).
    pub init_pid: i32,
    /// The init's start time in clock ticks since boot (guards against pid reuse).
    pub init_start: u64,
    /// The host ids its user namespace maps to; `None` when it runs as host root.
    #[serde(default)]
    pub ids: Option<super::IdRange>,
    /// Its slot in the runtime's address pool; `None` when it has no network.
    #[serde(default)]
    pub net: Option<crate::network::NetSlot>,
    /// Its init's control socket, a file name in its directory; `None`: `control.sock` (an
    /// init from before sockets had a name each).
    #[serde(default)]
    pub socket: Option<String>,
    /// Its HTTP and HTTPS go through the runtime's egress proxy, and its trust store holds the
    /// runtime's CA: it had secrets (its own or the runtime's) and a network when created.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub egress: bool,
}

/// Start time (field 22 of `/proc/<pid>/stat`) of a running process; `None` when it does not
/// exist or is a zombie (dead, waiting for a parent that may be slow to reap it).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl SandboxState {
    /// Is this sandbox's init still the process we started?
    pub fn init_alive(&self) -> bool {
        self.init_pid > 0 && process_start_time(self.init_pid) == Some(self.init_start)
    }

    /// Read the state file.
    pub fn load(path: &Path) -> Result<Self, SandboxError> {
        let bytes = std::fs::read(path).map_err(SandboxError::io("read", path))?;
        serde_json::from_slice(&bytes).map_err(|source| SandboxError::BadState {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Write the state file atomically (temp file, rename). No fsync: the state must survive
    /// the crash of a process, which the page cache does; after a host crash every sandbox is
    /// gone anyway and recovery removes what is left.
    pub fn save(&self, path: &Path) -> Result<(), SandboxError> {
        replace_json(path, self)
    }
}

/// Replace the JSON file `path` with `value` atomically (see [`crate::paths::replace_private`]).
pub(crate) fn replace_json(path: &Path, value: &impl Serialize) -> Result<(), SandboxError> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| SandboxError::BadState {
        path: path.to_path_buf(),
        source,
    })?;
    crate::paths::replace_private(path, &json).map_err(SandboxError::write_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let a = process_start_time(me).expect("start time");
        assert_eq!(process_start_time(me), Some(a));
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn state_round_trips_atomically() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("state.json");
        let s = SandboxState {
            spec: SandboxSpec::new("x"),
            created: Utc::now(),
            layers: vec![],
            active_snapshot: None,
            cgroup: None,
            init_pid: std::process::id() as i32,
            init_start: process_start_time(std::process::id() as i32).expect("start"),
            ids: Some(crate::sandbox::IdRange { base: 1 << 30 }),
            net: Some(crate::network::NetSlot { slot: 7 }),
            socket: Some("c-0000002a.sock".into()),
            egress: false,
        };
        s.save(&p).expect("save");
        let back = SandboxState::load(&p).expect("load");
        assert_eq!(back, s);
        assert!(back.init_alive());
        assert!(!p.with_extension("json.tmp").exists());
    }
}
