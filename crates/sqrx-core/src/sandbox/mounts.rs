//! Layer images loop-mounted read-only once per host and shared by every sandbox that uses
//! them, keyed by digest under `<data>/mounts/`. A mount is removed when no live sandbox's
//! state refers to it any more; decisions are serialised across processes with a lock file.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::SandboxError;
use super::state::LayerRef;

/// The shared layer mounts of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct LayerMounts {
    dir: PathBuf,
}

/// Take an exclusive `flock` on `path` (created if missing) for as long as the guard lives.
pub(crate) fn lock_exclusive(
    path: &Path,
) -> Result<nix::fcntl::Flock<std::fs::File>, SandboxError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(SandboxError::io("open", path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        SandboxError::Io {
            op: "lock",
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
}

/// Take an exclusive `flock` on `path` if nobody holds one: `Ok(None)` when another open file
/// (this process's included) holds it, or when `path`'s directory is gone.
pub(crate) fn try_lock_exclusive(
    path: &Path,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, SandboxError> {
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SandboxError::io("open", path)(e)),
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(SandboxError::Io {
            op: "lock",
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Is `path` a mount point of this mount namespace?
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*want))
}

impl LayerMounts {
    pub fn new(data_dir: &Path) -> Self {
        LayerMounts {
            dir: data_dir.join("mounts"),
        }
    }

    /// Hold the cross-process lock while `f` runs.
    pub fn locked<T>(
        &self,
        f: impl FnOnce() -> Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        std::fs::create_dir_all(&self.dir).map_err(SandboxError::io("create", &self.dir))?;
        let _guard = lock_exclusive(&self.dir.join(".lock"))?;
        f()
    }

    pub fn mount_point(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(&hex[..hex.len().min(32)])
    }

    /// Mount the image of `layer` if it is not mounted yet; returns the mount point. Call
    /// under `locked`.
    pub fn acquire(&self, layer: &LayerRef) -> Result<PathBuf, SandboxError> {
        let target = self.mount_point(&layer.digest);
        if is_mount_point(&target) {
            return Ok(target);
        }
        let mount_err = |source: std::io::Error| SandboxError::Mount {
            layer: layer.name.clone(),
            target: target.clone(),
            source,
        };
        crate::faults::point("layer.mount")?;
        std::fs::create_dir_all(&target).map_err(mount_err)?;
        let dev = crate::sys::loopdev::attach_read_only(&layer.image).map_err(mount_err)?;
        nix::mount::mount(
            Some(dev.path.as_path()),
            &target,
            Some("squashfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(|e| mount_err(e.into()))?;
        // The mount now holds the loop device; autoclear detaches it at unmount.
        drop(dev);
        tracing::debug!(layer = %layer.name, target = %target.display(), "layer mounted");
        Ok(target)
    }

    /// Every directory under `mounts/` (mounted or left by an interrupted mount).
    pub fn all(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// Unmount the layers in `mounts` that no sandbox in `in_use` needs. Call under `locked`.
    pub fn release(&self, mounts: &[PathBuf], in_use: &[PathBuf]) {
        for m in mounts {
            if in_use.contains(m) || !is_mount_point(m) {
                continue;
            }
            match nix::mount::umount2(m.as_path(), MntFlags::MNT_DETACH) {
                Ok(()) => {
                    let _ = std::fs::remove_dir(m);
                    tracing::debug!(target = %m.display(), "layer unmounted");
                }
                Err(e) => tracing::warn!(target = %m.display(), error = %e, "cannot unmount layer"),
            }
        }
    }
}
