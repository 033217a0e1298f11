//! Host id ranges for sandboxes' user namespaces: each sandbox maps its ids `0..65536` to a
//! range of host ids that no other sandbox on this host holds, so root in one sandbox is an
//! unprivileged host user that owns nothing outside it (not even another sandbox's files).
//!
//! Ranges are handed out host-wide (every runtime and data directory on the host draws from one
//! registry) under a lock: one file per taken slot in [`REGISTRY`], naming the sandbox
//! directory that holds it. A slot whose sandbox directory no longer exists (a data directory
//! deleted while sandboxes ran, a crash between reserve and create) is taken back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxError;
use crate::sys::idmap::ID_COUNT;

/// The host-wide registry of taken ranges (on tmpfs: a reboot, which ends every sandbox, also
/// frees every range).
pub const REGISTRY: &str = "/run/sqrx/idmap";

/// The first host id handed out: far above the ids of real users and of `/etc/subuid` ranges.
const FIRST_ID: u32 = 1 << 30;

/// Slots available: ranges end below 2^31, where some tools take ids for negative numbers.
const SLOTS: u32 = ((1u32 << 31) - FIRST_ID) / ID_COUNT;

/// A sandbox's range of host ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The host id of the sandbox's uid/gid 0.
    pub base: u32,
}

impl IdRange {
    /// How many ids the range holds.
    pub const COUNT: u32 = ID_COUNT;

    fn slot(self) -> u32 {
        (self.base - FIRST_ID) / ID_COUNT
    }
}

/// The registry of one host (a directory; [`REGISTRY`] outside tests).
#[derive(Debug, Clone)]
pub(crate) struct IdRegistry {
    slots: Slots,
}

impl IdRegistry {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IdRegistry {
            slots: Slots::new(dir, SLOTS),
        }
    }

    /// Take a free range for the sandbox whose directory is `owner`.
    pub fn allocate(&self, owner: &Path) -> Result<IdRange, SandboxError> {
        let slot = self.slots.allocate(owner).map_err(|e| match e {
            SlotError::Full(n) => SandboxError::Invalid {
                field: "sandbox",
                reason: format!("no free host id range left ({n} in use)"),
            },
            SlotError::Sandbox(e) => e,
        })?;
        Ok(IdRange {
            base: FIRST_ID + slot * ID_COUNT,
        })
    }

    /// Give `range` back if `owner` holds it.
    pub fn release(&self, range: IdRange, owner: &Path) {
        self.slots.release(range.slot(), owner);
    }

    /// Give back whatever range `owner` holds (its range was never recorded: a create that
    /// crashed), and remove temporaries of allocations that crashed.
    pub fn release_owner(&self, owner: &Path) {
        let _ = self.slots.release_owner(owner);
    }

    /// Does `owner` hold `range`?
    #[cfg(test)]
    pub fn holds(&self, range: IdRange, owner: &Path) -> bool {
        self.slots.holds(range.slot(), owner)
    }
}

/// Why no slot was handed out.
#[derive(Debug)]
pub(crate) enum SlotError {
    /// Every slot is held (how many there are).
    Full(u32),
    /// The registry could not be read or written.
    Sandbox(SandboxError),
}

impl From<SandboxError> for SlotError {
    fn from(e: SandboxError) -> Self {
        SlotError::Sandbox(e)
    }
}

/// Numbered slots handed out host-wide: one file per taken slot in a directory, naming the
/// sandbox directory that holds it, under a lock. A slot whose sandbox directory no longer
/// exists is taken back. Host id ranges and network addresses are drawn from registries of
/// this kind.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    dir: PathBuf,
    count: u32,
}

impl Slots {
    pub fn new(dir: impl Into<PathBuf>, count: u32) -> Self {
        Slots {
            dir: dir.into(),
            count,
        }
    }

    /// Take a free slot for the sandbox whose directory is `owner`.
    pub fn allocate(&self, owner: &Path) -> Result<u32, SlotError> {
        std::fs::create_dir_all(&self.dir).map_err(SandboxError::io("create", &self.dir))?;
        let _lock = super::mounts::lock_exclusive(&self.dir.join(".lock"))?;
        // Start the search at a slot derived from the owner, so concurrent hosts' registries
        // (tests on one machine with different registries) rarely pick the same slot.
        let start = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(owner.as_os_str().as_encoded_bytes());
            u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % self.count
        };
        for i in 0..self.count {
            let slot = (start + i) % self.count;
            let path = self.dir.join(slot.to_string());
            match std::fs::read_to_string(&path) {
                Ok(holder) if Path::new(holder.trim_end()).is_dir() => continue,
                Ok(_) => {} // stale: its sandbox is gone
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SandboxError::Io {
                        op: "read",
                        path,
                        source: e,
                    }
                    .into());
                }
            }
            let tmp = self.dir.join(format!(".{slot}.tmp"));
            std::fs::write(&tmp, owner.as_os_str().as_encoded_bytes())
                .map_err(SandboxError::io("write", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(SandboxError::io("rename", &path))?;
            return Ok(slot);
        }
        Err(SlotError::Full(self.count))
    }

    /// Give `slot` back if `owner` holds it.
    pub fn release(&self, slot: u32, owner: &Path) {
        let path = self.dir.join(slot.to_string());
        let Ok(_lock) = super::mounts::lock_exclusive(&self.dir.join(".lock")) else {
            return;
        };
        if std::fs::read_to_string(&path).is_ok_and(|h| Path::new(h.trim_end()) == owner) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Give back whatever slots `owner` holds (which), and remove temporaries of allocations
    /// that crashed.
    pub fn release_owner(&self, owner: &Path) -> Vec<u32> {
        let mut released = Vec::new();
        if !self.dir.is_dir() {
            return released;
        }
        let Ok(_lock) = super::mounts::lock_exclusive(&self.dir.join(".lock")) else {
            return released;
        };
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let held =
                std::fs::read_to_string(&path).is_ok_and(|h| Path::new(h.trim_end()) == owner);
            let slot = name.parse::<u32>().ok();
            let stale_tmp = name.starts_with('.') && name.ends_with(".tmp");
            if held && (slot.is_some() || stale_tmp) {
                let _ = std::fs::remove_file(&path);
                released.extend(slot);
            }
        }
        released
    }

    /// Does `owner` hold `slot`?
    #[cfg(test)]
    pub fn holds(&self, slot: u32, owner: &Path) -> bool {
        std::fs::read_to_string(self.dir.join(slot.to_string()))
            .is_ok_and(|h| Path::new(h.trim_end()) == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_distinct_released_and_reclaimed_when_stale() {
        let reg_dir = tempfile::tempdir().expect("tempdir");
        let owners = tempfile::tempdir().expect("tempdir");
        let reg = IdRegistry {
            slots: Slots::new(reg_dir.path(), 2),
        };
        let dir = |n: &str| {
            let p = owners.path().join(n);
            std::fs::create_dir(&p).expect("owner dir");
            p
        };
        let (a, b, c) = (dir("a"), dir("b"), dir("c"));
        let ra = reg.allocate(&a).expect("a");
        let rb = reg.allocate(&b).expect("b");
        assert_ne!(ra, rb);
        for r in [ra, rb] {
            assert!(r.base >= FIRST_ID && r.base % ID_COUNT == 0);
            assert!(u64::from(r.base) + u64::from(ID_COUNT) <= 1 << 31);
        }
        // Full while both owners live.
        assert!(reg.allocate(&c).is_err());
        // Another owner's release does nothing; the holder's frees the slot.
        reg.release(ra, &b);
        assert!(reg.holds(ra, &a));
        reg.release(ra, &a);
        assert!(!reg.holds(ra, &a));
        assert_eq!(reg.allocate(&c).expect("c"), ra);
        // b's directory vanishes: its slot is taken back.
        std::fs::remove_dir(&b).expect("rm b");
        let d = dir("d");
        assert_eq!(reg.allocate(&d).expect("d"), rb);
        assert!(reg.holds(rb, &d));
    }

    #[test]
    fn the_host_registry_spans_ranges_below_2_to_the_31() {
        assert_eq!(SLOTS, 16384);
        let last = IdRange {
            base: FIRST_ID + (SLOTS - 1) * ID_COUNT,
        };
        assert_eq!(u64::from(last.base) + u64::from(ID_COUNT), 1 << 31);
        assert_eq!(last.slot(), SLOTS - 1);
    }
}
