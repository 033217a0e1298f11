//! User namespaces and idmapped mounts: the pieces that make root in a sandbox an unprivileged
//! range of host ids (Linux 6.3+ for idmapped tmpfs; overlayfs on idmapped layers since 5.19).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// How many ids a sandbox's user namespace maps (0..65535 inside).
pub const ID_COUNT: u32 = 65536;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A detached copy of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`), not attached anywhere
/// until [`attach`]ed.
pub fn clone_mount(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: a valid NUL-terminated path that outlives the call; integer flags.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Make the detached mount `mount` read-only-or-not, `nosuid`, `nodev` and, with `userns`,
/// idmapped through that user namespace's mapping (on-disk id `n` shows as the host id that
/// `n` maps to in `userns`).
pub fn set_mount_attrs(
    mount: &OwnedFd,
    userns: Option<BorrowedFd<'_>>,
    read_only: bool,
) -> io::Result<()> {
    let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if read_only {
        set |= MOUNT_ATTR_RDONLY;
    }
    let mut userns_fd = 0;
    if let Some(ns) = userns {
        set |= MOUNT_ATTR_IDMAP;
        userns_fd = ns.as_raw_fd() as u64;
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: an owned mount descriptor, an empty NUL-terminated path, and a mount_attr that
    // lives across the call with its exact size.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Attach the detached mount `mount` at `target` (`move_mount`).
pub fn attach(mount: &OwnedFd, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    // SAFETY: an owned mount descriptor, valid NUL-terminated paths that outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// A sandbox's user namespace and the network namespace it owns.
pub struct SandboxNamespaces {
    /// The user namespace: ids `0..ID_COUNT` map to `base..base+ID_COUNT` on the host.
    pub user: OwnedFd,
    /// A new network namespace owned by `user`, so that the sandbox's root may bind low ports
    /// (`CAP_NET_BIND_SERVICE` over it) without a sysctl.
    pub net: OwnedFd,
}

/// A process the host keeps, for the few milliseconds a sandbox's init needs to join them, in
/// a new user namespace mapping ids `0..ID_COUNT` (uids and gids) to `base..base+ID_COUNT` on
/// the host and in a new network namespace that user namespace owns. Made by the host while
/// init loads, so that init only opens them ([`open_namespaces`]). Dropping it kills and reaps
/// the process; open namespace descriptors keep the namespaces alive.
pub struct NamespaceHolder {
    pid: libc::pid_t,
    /// The process's stack (it shares this process's memory): freed only once it is reaped.
    _stack: Vec<u8>,
}

/// The holder's whole life: die with the thread that made it, hold none of the host's
/// descriptors (its table is a copy), wait to be killed. With every signal blocked (inherited
/// from that thread) `pause` never returns. It shares the host's memory: it writes nothing but
/// `errno` should a call fail, and these do not fail with these arguments.
/// `parent` carries the pid of the process that cloned it: if that died before the death
/// signal was armed (killed right after the clone), the holder exits by itself.
extern "C" fn hold(parent: *mut libc::c_void) -> libc::c_int {
    // SAFETY: prctl, getppid, exit and close_range with integer arguments; pause takes none.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() as usize != parent as usize {
            libc::syscall(libc::SYS_exit, 0);
        }
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        loop {
            libc::pause();
        }
    }
}

impl NamespaceHolder {
    /// Clone the holder and write its id maps. Needs root; safe in a multithreaded process
    /// (the holder shares this process's memory, so nothing is copied, and runs only `hold`
    /// on a stack of its own).
    pub fn spawn(base: u32) -> io::Result<NamespaceHolder> {
        const STACK: usize = 16 * 1024;
        let mut stack = vec![0u8; STACK];
        let flags = libc::CLONE_VM | libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::SIGCHLD;
        // SAFETY: sigset_t is plain data, filled by sigfillset; pthread_sigmask changes only
        // this thread's mask (restored right after the clone). clone runs `hold` on the top of
        // `stack` (16-byte aligned: x86_64 and aarch64 stacks grow down), which lives in the
        // returned holder until the process is reaped; `hold` uses nothing else.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = stack.as_mut_ptr().add(STACK) as usize & !15;
            let me = libc::getpid() as usize as *mut libc::c_void;
            let pid = libc::clone(hold, top as *mut libc::c_void, flags, me);
            let err = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(err);
            }
            pid
        };
        let holder = NamespaceHolder { pid, _stack: stack };
        let map = format!("0 {base} {ID_COUNT}\n");
        std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
        Ok(holder)
    }

    /// The holder's host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child by pid; it is not reaped anywhere else,
        // so the pid still names it.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
        }
    }
}

/// Open the user namespace of the process `pid` (a [`NamespaceHolder`]) and its network
/// namespace.
pub fn open_namespaces(pid: i32) -> io::Result<SandboxNamespaces> {
    let open =
        |kind: &str| std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).map(OwnedFd::from);
    Ok(SandboxNamespaces {
        user: open("user")?,
        net: open("net")?,
    })
}

/// Join the network namespace `ns`.
pub fn join_net(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns with a borrowed namespace descriptor and an integer flag.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Join the user namespace `ns` and become its root (uid and gid 0 inside, no supplementary
/// groups). The caller must be single-threaded and privileged over `ns`.
pub fn become_root_in(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns with a borrowed namespace descriptor and an integer flag.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setgroups with an empty list; setresgid/setresuid with integer ids. Raw syscalls,
    // not libc's wrappers: the process is single-threaded, no broadcast to other threads needed.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
            || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// While alive, the calling **thread** creates files as host uid/gid `id` (its filesystem ids)
/// with its capabilities unchanged; dropping it restores filesystem ids 0. Only for a thread
/// running as root; other threads are not affected (Linux credentials are per thread, and the
/// raw `setfsuid`/`capset` calls are not broadcast by libc).
pub struct FsIds {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Switch the calling thread's filesystem ids to `id` (see [`FsIds`]).
pub fn act_as(id: u32) -> io::Result<FsIds> {
    act_as_ids(id, id)
}

/// Switch the calling thread's filesystem uid to `uid` and gid to `gid` (see [`FsIds`]).
pub fn act_as_ids(uid: u32, gid: u32) -> io::Result<FsIds> {
    // SAFETY: setfsgid/setfsuid take integer ids and only change this thread's credentials.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
    let guard = FsIds {
        _not_send: std::marker::PhantomData,
    };
    // A root thread whose fsuid leaves 0 loses its filesystem capabilities (DAC override,
    // chown, fowner); raise them again from the permitted set so access decisions stay root's.
    super::caps::raise_effective()?;
    Ok(guard)
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: as in act_as. Going back to fsuid 0 restores the filesystem capabilities.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, 0);
            libc::syscall(libc::SYS_setfsgid, 0);
        }
    }
}

/// Close every descriptor from `first` up (`close_range`): nothing the embedding process
/// leaked without `O_CLOEXEC` reaches the sandbox.
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with integer arguments; the caller owns no descriptor above `first`
    // that it still uses.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) })?;
    Ok(())
}

/// Make this process non-dumpable: no core dumps, and `/proc/<pid>/*` and ptrace need
/// `CAP_SYS_PTRACE` in the process's initial user namespace.
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
