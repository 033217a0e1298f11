//! Namespaces, mounts and the pivot into the sandbox root.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::InitConfig;
use crate::protocol::{Startup, StartupFailureKind};
use crate::sys::{Forked, fork_single_threaded};

pub(super) type Step<T> = Result<T, SetupError>;

/// A step of building the sandbox that failed: what failed, and whether a kernel that cannot
/// isolate the sandbox is why.
#[derive(Debug)]
pub(super) struct SetupError {
    kind: StartupFailureKind,
    message: String,
}

impl From<String> for SetupError {
    fn from(message: String) -> Self {
        SetupError {
            kind: StartupFailureKind::Setup,
            message,
        }
    }
}

impl SetupError {
    /// Log the failure (stderr is `init.log`) and tell the host on its pipe (stdout), where
    /// it reads a [`Startup::Failed`] of this kind.
    pub(super) fn report(self, stage: &str) {
        match self.kind {
            StartupFailureKind::IsolationUnsupported => {
                eprintln!("{stage}: {} {}", super::ISOLATION_UNSUPPORTED, self.message);
            }
            StartupFailureKind::Setup => eprintln!("{stage}: {}", self.message),
        }
        report(&Startup::Failed {
            kind: self.kind,
            message: self.message,
        });
    }
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> Step<T> {
    r.map_err(|e| SetupError::from(format!("{}: {e}", what())))
}

/// [`ctx`] for a step that fails only where the kernel cannot isolate the sandbox.
fn isolation_ctx<T, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl FnOnce() -> String,
) -> Step<T> {
    r.map_err(|e| SetupError {
        kind: StartupFailureKind::IsolationUnsupported,
        message: format!("{}: {e}", what()),
    })
}

/// Write one startup status on the host's pipe (stdout).
pub(super) fn report(status: &Startup) {
    let mut out = std::io::stdout();
    let _ = out.write_all(&status.to_line()).and_then(|()| out.flush());
}

/// Run the outer stage (user namespace, session, unshare, fork). Returns the exit code of this
/// process.
pub(super) fn start(config: &InitConfig) -> Step<i32> {
    ctx(nix::unistd::setsid(), || "setsid".into())?;
    // The OOM killer should pick the sandbox's workload, never its init and server (inherited
    // by both; every exec'd process resets it to 0). Needs CAP_SYS_RESOURCE: best effort.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        eprintln!("sqrx-init: cannot protect init from the OOM killer: {e}");
    }
    // The sandbox's user namespace, with the network namespace it owns (so its root may bind
    // low ports), made by the host while this program loaded: held by a process of the host's.
    // The other namespaces stay owned by the host's user namespace, so root in the sandbox has
    // no capability over its mounts, hostname or IPC (and keeps none over its network but
    // NET_BIND_SERVICE).
    let namespaces = match (config.id_base, config.ns_holder) {
        (Some(_), Some(holder)) => Some(isolation_ctx(
            crate::sys::idmap::open_namespaces(holder),
            || "cannot open the sandbox's user namespace".into(),
        )?),
        (Some(_), None) => {
            return Err(SetupError {
                kind: StartupFailureKind::Setup,
                message: "no user namespace from the host".into(),
            });
        }
        (None, _) => None,
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWPID;
    if crate::weaken::off("netns") {
        flags -= CloneFlags::CLONE_NEWNET;
    } else if let Some(ns) = &namespaces {
        // The network namespace the user namespace owns replaces a fresh one.
        flags -= CloneFlags::CLONE_NEWNET;
        ctx(crate::sys::idmap::join_net(ns.net.as_fd()), || {
            "join the sandbox's network namespace".into()
        })?;
    }
    if crate::weaken::off("pidns") {
        flags -= CloneFlags::CLONE_NEWPID;
    }
    ctx(unshare(flags), || "unshare namespaces".into())?;
    #[allow(
        unsafe_code,
        reason = "fork is sound only in a single-threaded process, which only this caller knows"
    )]
    // SAFETY: init's main runs first thing in its process (the sqrx-init binary, or a program's
    // `roles::run_role_if_any()`) and nothing above starts a thread: the process has one.
    let forked = unsafe { fork_single_threaded() };
    match ctx(forked, || "fork init".into())? {
        Forked::Parent(pid) => {
            // The host reads this line, then this process exits and PID 1 lives on.
            let mut out = std::io::stdout();
            let line = Startup::Forked { pid }.to_line();
            ctx(out.write_all(&line).and_then(|_| out.flush()), || {
                "report pid".into()
            })?;
            Ok(0)
        }
        Forked::Child => match pid1(config, namespaces.map(|ns| ns.user)) {
            Ok(code) => Ok(code),
            Err(e) => {
                // stderr goes to the sandbox's init.log; stdout is still the host's pipe.
                e.report("sqrx-init (pid 1)");
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

/// The directory (in PID 1's private mount namespace only) where the sandbox's view of its
/// layers is staged before the pivot; detached with the old root.
const STAGE: &str = "stage";

/// PID 1: build the root, pivot into it, start the server, reap.
fn pid1(config: &InitConfig, userns: Option<OwnedFd>) -> Step<i32> {
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

    let stage = config.run_dir.join(STAGE);
    mkdir(&stage, 0o700)?;
    mount_fs(
        "sqrx-stage",
        &stage,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0700"),
    )?;
    // Relative layer names keep the overlay's options short and the host's paths out of the
    // sandbox's /proc/self/mountinfo.
    ctx(std::env::set_current_dir(&stage), || {
        format!("chdir {}", stage.display())
    })?;
    let ns = userns.as_ref().map(|fd| fd.as_fd());
    let mut lower = Vec::with_capacity(config.lowerdirs.len());
    for (i, dir) in config.lowerdirs.iter().enumerate() {
        let name = format!("l{i}");
        stage_mount(dir, Path::new(&name), ns, true)?;
        lower.push(name);
    }
    stage_mount(&config.rw_dir, Path::new("rw"), ns, false)?;
    mkdir(Path::new("root"), 0o755)?;
    mkdir(Path::new("nodes"), 0o755)?;
    mount_fs(
        "sqrx-nodes",
        Path::new("nodes"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0755"),
    )?;

    // From here on, files this process creates in the sandbox belong to the sandbox's root.
    // overlayfs also keeps the mounter's ids for its own work files: with an idmapped upper
    // they must be ids the sandbox's namespace maps.
    let fs_ids = match config.id_base {
        Some(base) => Some(ctx(crate::sys::idmap::act_as(base), || {
            "act as the sandbox's root".into()
        })?),
        None => None,
    };
    // No index, redirects or metacopy: the upper then describes its changes with whiteouts
    // and opaque directories only, which snapshots can pack, and it stays valid when the host
    // restarts init on a different lower stack (activate).
    let opts = format!(
        "lowerdir={},upperdir=rw/upper,workdir=rw/work,index=off,redirect_dir=off,metacopy=off",
        lower.join(":"),
    );
    let root = stage.join("root");
    let mut root_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if config.allows_setuid() || crate::weaken::off("nosuid") {
        root_flags -= MsFlags::MS_NOSUID;
    }
    mount_fs("sqrx", &root, "overlay", root_flags, Some(&opts))?;

    for (dir, mode) in [
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
    ] {
        let p = root.join(dir);
        match std::fs::symlink_metadata(&p) {
            // A mount target that is a symlink would be followed, here before the pivot on
            // the host's side, and put the mount somewhere the sandbox chose.
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "/{dir} in the sandbox's layers is a symlink; refusing to mount on it"
                )
                .into());
            }
            Ok(_) => {}
            Err(_) => mkdir(&p, mode)?,
        }
    }
    setup_dev(&root.join("dev"), &stage.join("nodes"))?;
    mount_fs(
        "proc",
        &root.join("proc"),
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    // sysfs of the sandbox's own network namespace, read-only; optional.
    let sys_mounted = mount(
        Some("sysfs"),
        &root.join("sys"),
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .is_ok();
    if !crate::weaken::off("masks") {
        super::masks::apply(&root, &stage.join("nodes/null"), sys_mounted)?;
    }

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

    if crate::weaken::off("pivot") {
        ctx(std::env::set_current_dir("/"), || "chdir /".into())?;
    } else {
        pivot_into(&root)?;
    }
    if let Some(dns) = config.dns {
        write_resolv_conf(dns)?;
    }
    // `sudo` looks its own host up and warns when it cannot. Only setuid sandboxes get the
    // entry: it is a change in the upper, which every other sandbox keeps exactly as its user
    // left it. Best effort: a full upper must not stop the sandbox from starting.
    if config.allows_setuid()
        && let Err(e) = name_own_host(&config.hostname)
    {
        eprintln!("sqrx-init: cannot name the host in /etc/hosts: {e}");
    }
    if let Some(ca) = &config.trust_ca {
        ctx(crate::secrets::trust::install(ca), || {
            "put the egress CA in the trust store".into()
        })?;
    }
    drop(fs_ids);

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
    // PID 1 stays host root (it only reaps): nothing in the sandbox may read its memory or
    // descriptors through /proc/1.
    if !crate::weaken::off("dumpable") {
        ctx(crate::sys::idmap::set_non_dumpable(), || {
            "make init non-dumpable".into()
        })?;
    }

    #[allow(
        unsafe_code,
        reason = "fork is sound only in a single-threaded process, which only this caller knows"
    )]
    // SAFETY: PID 1 is the child of the fork in `start`, which has only the thread that forked,
    // and nothing since has started another.
    let forked = unsafe { fork_single_threaded() };
    match ctx(forked, || "fork server".into())? {
        Forked::Child => {
            if let Some(ns) = userns {
                if let Err(e) = crate::sys::idmap::become_root_in(ns.as_fd()) {
                    SetupError::from(format!("cannot enter the sandbox's user namespace: {e}"))
                        .report("sqrx-init");
                    return Ok(1);
                }
                drop(ns);
            }
            super::server::serve(listener, config.exec_seq_base, config.allows_setuid());
            Ok(0)
        }
        Forked::Parent(server) => {
            drop(listener);
            drop(userns);
            // Only the server may hold the host's pipe: when it dies, the host sees the end.
            release_stdout();
            Ok(reap_until(server))
        }
    }
}

/// Attach at `name` (relative to the stage) a private clone of the mount at `dir`: `nosuid`,
/// `nodev`, read-only when `read_only`, and idmapped through `userns` when there is one.
fn stage_mount(
    dir: &Path,
    name: &Path,
    userns: Option<BorrowedFd<'_>>,
    read_only: bool,
) -> Step<()> {
    use crate::sys::idmap;
    mkdir(name, 0o755)?;
    let m = ctx(idmap::clone_mount(dir), || {
        format!("clone mount {}", dir.display())
    })?;
    let attrs = idmap::set_mount_attrs(&m, userns, read_only);
    let what = || format!("cannot make an idmapped mount of {}", dir.display());
    if userns.is_some() {
        isolation_ctx(attrs, what)?;
    } else {
        ctx(attrs, what)?;
    }
    ctx(idmap::attach(&m, name), || {
        format!("attach {} at {}", dir.display(), name.display())
    })
}

/// Point stdout (the host's pipe) at /dev/null, so this process no longer holds the pipe
/// and nothing written later reaches it (or, were fd 1 closed, a socket opened in its place).
fn release_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Point stdin and stderr at /dev/null: the server holds no host file once it serves.
pub(super) fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Tell the host, on the pipe it reads, that the server is ready (confined and about to
/// accept on the control socket), then let the pipe go.
pub(super) fn say_ready() {
    report(&Startup::Ready);
    release_stdout();
}

/// The device nodes of every sandbox (name, major, minor), all `0666`.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A minimal /dev: a `nodev` tmpfs where only sqrx's own nodes work (each bind-mounted from
/// `nodes`, a staging tmpfs that allows devices), pts and shm. No host disks.
fn setup_dev(dev: &Path, nodes: &Path) -> Step<()> {
    mount_fs(
        "sqrx-dev",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        Some("size=64k,mode=0755"),
    )?;
    for (name, major, minor) in DEVICES {
        let node = nodes.join(name);
        ctx(
            mknod(
                &node,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            ),
            || format!("mknod {}", node.display()),
        )?;
        ctx(
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)),
            || format!("chmod {}", node.display()),
        )?;
        let target = dev.join(name);
        ctx(std::fs::File::create(&target), || {
            format!("create {}", target.display())
        })?;
        ctx(
            mount(
                Some(&node),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
            || format!("bind {}", target.display()),
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

/// Point the sandbox's `/etc/resolv.conf` at its resolver. After the pivot, as the sandbox's
/// root: whatever `/etc` is, it resolves inside the sandbox; a symlink in place of the file is
/// replaced, never followed.
fn write_resolv_conf(dns: std::net::Ipv4Addr) -> Step<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = Path::new("/etc/resolv.conf");
    let _ = std::fs::create_dir_all("/etc");
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        let _ = std::fs::remove_file(path);
    }
    let mut f = ctx(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        || "open /etc/resolv.conf".into(),
    )?;
    ctx(
        std::io::Write::write_all(&mut f, format!("nameserver {dns}\n").as_bytes()),
        || "write /etc/resolv.conf".into(),
    )
}

/// Make the sandbox's hostname resolve (`127.0.1.1` in `/etc/hosts`, as Debian's installer
/// does), so that programs that look their own host up (`sudo`) do not stall or warn. After
/// the pivot, as the sandbox's root; a file that names it already is left alone, a symlink in
/// place of the file is never followed.
fn name_own_host(hostname: &str) -> std::io::Result<()> {
    let path = Path::new("/etc/hosts");
    let current = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(path)?,
        Ok(_) => return Ok(()),
        Err(_) => "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_string(),
    };
    let named = current.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        line.split_whitespace().skip(1).any(|name| name == hostname)
    });
    if named {
        return Ok(());
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    crate::secrets::trust::write_file(path, text.as_bytes())
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
