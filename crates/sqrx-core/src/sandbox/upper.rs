//! The writable upper layer of a sandbox: a size-capped tmpfs mounted by the host at
//! `<sandbox dir>/rw`, holding overlayfs's `upper/` and `work/` directories and the `root/`
//! mount point that init mounts the overlay on (inside its own mount namespace).
//!
//! Keeping the tmpfs on the host (not inside init's namespace) is what lets the host pack the
//! upper for a snapshot, keep it across an init restart (activate) and clear it in O(1) by
//! mounting a fresh tmpfs (restore).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::SandboxError;
use super::mounts::is_mount_point;

/// The upper tmpfs of the sandbox whose directory is `sandbox_dir`.
pub(crate) fn rw_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("rw")
}

/// overlayfs's upper directory inside the tmpfs.
pub(crate) fn upper_dir(sandbox_dir: &Path) -> PathBuf {
    rw_dir(sandbox_dir).join("upper")
}

/// Where a restore prepares the fresh upper before it replaces the current one.
pub(crate) fn next_rw_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("rw.next")
}

/// Mount an empty tmpfs of `size_mb` at `<sandbox_dir>/rw` with `upper/`, `work/` and `root/`.
pub(crate) fn mount_upper(sandbox_dir: &Path, size_mb: u64) -> Result<(), SandboxError> {
    mount_upper_at(&rw_dir(sandbox_dir), size_mb)
}

/// Mount an empty upper tmpfs of `size_mb` at `rw` (see [`mount_upper`]).
pub(crate) fn mount_upper_at(rw: &Path, size_mb: u64) -> Result<(), SandboxError> {
    let rw = rw.to_path_buf();
    unmount_at(&rw);
    std::fs::create_dir_all(&rw).map_err(SandboxError::io("create", &rw))?;
    let options = format!("size={size_mb}m,mode=0700");
    nix::mount::mount(
        Some("sqrx-upper"),
        &rw,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| SandboxError::Io {
        op: "mount the upper tmpfs on",
        path: rw.clone(),
        source: e.into(),
    })?;
    for d in ["upper", "work", "root"] {
        let p = rw.join(d);
        let made = std::fs::create_dir(&p)
            .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)));
        if let Err(e) = made {
            unmount_at(&rw);
            return Err(SandboxError::Io {
                op: "create",
                path: p,
                source: e,
            });
        }
    }
    Ok(())
}

/// Unmount the upper tmpfs (its content is gone), and one a restore left half-prepared. Does
/// nothing when they are not mounted.
pub(crate) fn unmount_upper(sandbox_dir: &Path) {
    unmount_at(&rw_dir(sandbox_dir));
    unmount_at(&next_rw_dir(sandbox_dir));
    unmount_at(&old_rw_dir(sandbox_dir));
}

/// Unmount the tmpfs at `rw` if one is mounted there.
pub(crate) fn unmount_at(rw: &Path) {
    if !is_mount_point(rw) {
        return;
    }
    if let Err(e) = nix::mount::umount2(rw, MntFlags::MNT_DETACH) {
        tracing::warn!(path = %rw.display(), error = %e, "cannot unmount the upper tmpfs");
    }
}

/// Where a restore keeps the current upper while the new one takes its place.
fn old_rw_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("rw.old")
}

/// Bind the upper tmpfs mounted at `from` on `to`.
fn bind_upper(from: &Path, to: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(to).map_err(SandboxError::io("create", to))?;
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        SandboxError::Io {
            op: "bind an upper tmpfs on",
            path: to.to_path_buf(),
            source: e.into(),
        }
    })
}

/// Make the upper prepared at `next` (the new init already runs on it) the sandbox's upper,
/// keeping the current one at `rw.old` until [`finish_swap`] (the restart is committed) or
/// [`undo_swap`] (it is not). Bind mounts only: a move is refused under a shared parent mount,
/// as on systemd hosts.
pub(crate) fn swap_upper(sandbox_dir: &Path, next: &Path) -> Result<(), SandboxError> {
    let rw = rw_dir(sandbox_dir);
    let old = old_rw_dir(sandbox_dir);
    unmount_at(&old);
    if is_mount_point(&rw) {
        bind_upper(&rw, &old)?;
        crate::faults::point("upper.swap_keep_old")?;
        unmount_at(&rw);
    }
    crate::faults::point("upper.swap_bind_next")?;
    bind_upper(next, &rw)?;
    unmount_at(next);
    Ok(())
}

/// The restart is committed: drop the previous upper kept by [`swap_upper`].
pub(crate) fn finish_swap(sandbox_dir: &Path) {
    unmount_at(&old_rw_dir(sandbox_dir));
}

/// Put the upper kept by [`swap_upper`] back at `rw`, whatever step the swap reached.
pub(crate) fn undo_swap(sandbox_dir: &Path) {
    let rw = rw_dir(sandbox_dir);
    let old = old_rw_dir(sandbox_dir);
    if !is_mount_point(&old) {
        // The swap had not begun: `rw` still is the old upper.
        return;
    }
    while is_mount_point(&rw) {
        if nix::mount::umount2(&rw, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    match bind_upper(&old, &rw) {
        Ok(()) => unmount_at(&old),
        Err(e) => {
            tracing::error!(sandbox_dir = %sandbox_dir.display(), error = %e, "cannot put the previous upper back; it stays at rw.old");
        }
    }
}

/// Bytes used in the upper tmpfs.
pub(crate) fn used_bytes(sandbox_dir: &Path) -> u64 {
    let rw = rw_dir(sandbox_dir);
    match nix::sys::statvfs::statvfs(&rw) {
        Ok(st) => st
            .blocks()
            .saturating_sub(st.blocks_free())
            .saturating_mul(st.fragment_size()),
        Err(_) => 0,
    }
}
