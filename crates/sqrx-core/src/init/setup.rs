//! Namespaces, mounts and the pivot into the sandbox root.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::InitConfig;
use crate::sys::{Forked, fork_single_threaded};

type Step<T> = Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> Step<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Run the outer stage (session, unshare, fork). Returns the exit code of this process.
pub(super) fn start(config: &InitConfig) -> Step<i32> {
    ctx(nix::unistd::setsid(), || "setsid".into())?;
    // The OOM killer should pick the sandbox's workload, never its init and server (inherited
    // by both; every exec'd process resets it to 0). Needs CAP_SYS_RESOURCE: best effort.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        eprintln!("sqrx-init: cannot protect init from the OOM killer: {e}");
    }
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWPID;
    ctx(unshare(flags), || "unshare namespaces".into())?;
    match ctx(fork_single_threaded(), || "fork init".into())? {
        Forked::Parent(pid) => {
            // The host reads this line, then this process exits and PID 1 lives on.
            let mut out = std::io::stdout();
            ctx(writeln!(out, "{pid}").and_then(|_| out.flush()), || {
                "report pid".into()
            })?;
            Ok(0)
        }
        Forked::Child => match pid1(config) {
            Ok(code) => Ok(code),
            Err(e) => {
                // stderr goes to the sandbox's init.log.
                eprintln!("sqrx-init (pid 1): {e}");
                Ok(1)
            }
        },
    }
}

fn mkdir(path: &Path, mode: u32) -> Step<()> {
    ctx(std::fs::create_dir_all(path), || {
        format!("mkdir {}", path.display())
    })?;
    ctx(
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        || format!("chmod {}", path.display()),
    )
}

fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Step<()> {
    ctx(
        mount(Some(source), target, Some(fstype), flags, data),
        || format!("mount {fstype} on {}", target.display()),
    )
}

/// PID 1: build the root, pivot into it, start the server, reap.
fn pid1(config: &InitConfig) -> Step<i32> {
    // Nothing mounted from here on may propagate back to the host.
    ctx(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        || "make mounts private".into(),
    )?;
    ctx(nix::unistd::sethostname(&config.hostname), || {
        "sethostname".into()
    })?;
    ctx(crate::sys::netdev::loopback_up(), || "bring up lo".into())?;

    let rw = &config.rw_dir;
    let (upper, work, root) = (rw.join("upper"), rw.join("work"), rw.join("root"));
    let lower: Vec<String> = config
        .lowerdirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    // No index, redirects or metacopy: the upper then describes its changes with whiteouts
    // and opaque directories only, which snapshots can pack, and it stays valid when the host
    // restarts init on a different lower stack (activate).
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount_fs("sqrx", &root, "overlay", MsFlags::empty(), Some(&opts))?;

    for (dir, mode) in [
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
    ] {
        let p = root.join(dir);
        if !p.exists() {
            mkdir(&p, mode)?;
        }
    }
    mount_fs(
        "proc",
        &root.join("proc"),
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    // sysfs of the sandbox's own network namespace, read-only; optional.
    let _ = mount(
        Some("sysfs"),
        &root.join("sys"),
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    setup_dev(&root.join("dev"))?;

    // Bind the control socket in the host's view of the filesystem, before leaving it.
    let socket = config.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener = ctx(std::os::unix::net::UnixListener::bind(&socket), || {
        format!("bind {}", socket.display())
    })?;
    ctx(
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)),
        || "chmod socket".into(),
    )?;

    pivot_into(&root)?;

    // The host has moved us into the sandbox's cgroup when this byte arrives; EOF means it gave
    // up on this sandbox.
    let mut go = [0u8; 1];
    ctx(
        std::io::Read::read_exact(&mut std::io::stdin().lock(), &mut go),
        || "wait for the host".into(),
    )?;
    ctx(unshare(CloneFlags::CLONE_NEWCGROUP), || {
        "unshare cgroup namespace".into()
    })?;

    match ctx(fork_single_threaded(), || "fork server".into())? {
        Forked::Child => {
            super::server::serve(listener, config.exec_seq_base);
            Ok(0)
        }
        Forked::Parent(server) => {
            drop(listener);
            // Only the server may hold the host's pipe: when it dies, the host sees the end.
            release_stdout();
            Ok(reap_until(server))
        }
    }
}

/// Point stdout (the host's pipe) at /dev/null, so this process no longer holds the pipe
/// and nothing written later reaches it (or, were fd 1 closed, a socket opened in its place).
fn release_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Tell the host, on the pipe it reads, that the server is ready (confined and about to
/// accept on the control socket), then let the pipe go.
pub(super) fn say_ready() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
    release_stdout();
}

/// A minimal /dev: a few character devices, pts and shm. No host disks.
fn setup_dev(dev: &Path) -> Step<()> {
    mount_fs(
        "sqrx-dev",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        ctx(
            mknod(
                &p,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            ),
            || format!("mknod {}", p.display()),
        )?;
        ctx(
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)),
            || format!("chmod {}", p.display()),
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        ctx(std::os::unix::fs::symlink(target, dev.join(link)), || {
            format!("symlink /dev/{link}")
        })?;
    }
    mkdir(&dev.join("pts"), 0o755)?;
    mount_fs(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mkdir(&dev.join("shm"), 0o1777)?;
    mount_fs(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=64m,mode=1777"),
    )?;
    Ok(())
}

/// `pivot_root` into `root` and detach the old root: the host filesystem becomes unreachable.
fn pivot_into(root: &Path) -> Step<()> {
    ctx(std::env::set_current_dir(root), || {
        format!("chdir {}", root.display())
    })?;
    let dot = CString::new(".").map_err(|e| e.to_string())?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    // removes the old root without needing a directory to put it in.
    ctx(crate::sys::pivot_root(&dot, &dot), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || {
        "detach old root".into()
    })?;
    ctx(std::env::set_current_dir("/"), || "chdir /".into())
}

/// Reap every child (orphans are re-parented to PID 1) until the server exits.
fn reap_until(server: i32) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == server => return code,
            Ok(WaitStatus::Signaled(pid, _, _)) if pid.as_raw() == server => return 1,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 1,
        }
    }
}
