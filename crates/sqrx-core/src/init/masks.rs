//! Masked and read-only kernel paths under the sandbox's /proc and /sys, after runc's and crun's
//! defaults: what could reconfigure the host, read kernel memory or timing, or list host
//! hardware is hidden (a file under `/dev/null`, a directory under an empty read-only tmpfs) or
//! made read-only. The mounts belong to the host's user namespace: the sandbox cannot undo them.

use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::setup::Step;

/// Paths made read-only (bind-mounted on themselves, then remounted read-only).
pub(super) const READ_ONLY: &[&str] = &[
    "proc/sys",
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sysrq-trigger",
];

/// Paths hidden: files covered by `/dev/null`, directories by an empty read-only tmpfs.
pub(super) const MASKED: &[&str] = &[
    "proc/kcore",
    "proc/keys",
    "proc/key-users",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/latency_stats",
    "proc/kallsyms",
    "proc/kpagecount",
    "proc/kpageflags",
    "proc/kpagecgroup",
    "proc/vmallocinfo",
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Apply the masks under `root` (the new root, before the pivot). `null` is a `/dev/null` node
/// to bind over masked files; `sys` says whether sysfs is mounted.
pub(super) fn apply(root: &Path, null: &Path, sys: bool) -> Step<()> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for rel in READ_ONLY {
        let p = root.join(rel);
        if !p.exists() {
            continue;
        }
        bind(&p, &p)?;
        remount(&p, ro)?;
    }
    for rel in MASKED {
        if rel.starts_with("sys/") && !sys {
            continue;
        }
        let p = root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("sqrx-masked"),
                &p,
                Some("tmpfs"),
                ro,
                Some("size=0,mode=0555"),
            )
            .map_err(|e| format!("mask {}: {e}", p.display()))?;
        } else {
            // As runc: /dev/null over the file (reads empty, writes go nowhere); no remount.
            bind(null, &p)?;
        }
    }
    Ok(())
}

fn bind(source: &Path, target: &Path) -> Step<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind {} on {}: {e}", source.display(), target.display()).into())
}

fn remount(target: &Path, flags: MsFlags) -> Step<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        None::<&str>,
    )
    .map_err(|e| format!("remount {} read-only: {e}", target.display()).into())
}
