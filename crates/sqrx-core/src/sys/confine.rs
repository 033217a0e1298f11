//! Raw pieces of process confinement for the JavaScript worker processes: handing a channel
//! fd to a child at exec time, closing every other descriptor, and dropping every capability.
//! The policy (which uid, which limits, which seccomp filter) lives in `js::confined`.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The highest capability number the loop below tries; the kernel answers `EINVAL` for those
/// it does not know, so this covers every capability of any kernel to come (64 bits of sets).
const MAX_CAP: libc::c_ulong = 63;

/// Arrange for the child of `cmd` to get `channel` as descriptor `target`, with every other
/// descriptor above `target` marked close-on-exec, and `stack_bytes` as its stack limit (the
/// kernel lays out a new program's stack and mmap base from `RLIMIT_STACK` at exec, so a
/// single-threaded worker can run deep JavaScript on its main thread).
///
/// The hook runs between fork and exec in the forked copy of a possibly multi-threaded
/// process: it only makes async-signal-safe system calls and touches no allocator.
pub fn hand_over_on_exec(cmd: &mut Command, channel: RawFd, target: RawFd, stack_bytes: u64) {
    let hook = move || -> std::io::Result<()> {
        if channel == target {
            // dup2 onto itself keeps FD_CLOEXEC; clear it by hand.
            // SAFETY: fcntl on a descriptor the parent keeps open across the fork.
            if unsafe { libc::fcntl(target, libc::F_SETFD, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else {
            // SAFETY: dup2 between two integers; `channel` is open in the parent and thus in
            // this forked copy. The new descriptor has FD_CLOEXEC cleared, so it survives exec.
            if unsafe { libc::dup2(channel, target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // Everything above the channel, inherited from an embedder that leaked descriptors
        // without O_CLOEXEC, closes at exec. CLOEXEC rather than close: the standard library
        // reports exec failures through a close-on-exec pipe of its own that must stay open.
        // SAFETY: close_range with integer arguments only.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                (target + 1) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        // ENOSYS/EINVAL (kernel before 5.11): the worker closes them itself first thing.
        let _ = rc;
        let limit = libc::rlimit {
            rlim_cur: stack_bytes,
            rlim_max: stack_bytes,
        };
        // SAFETY: setrlimit with a pointer to a valid rlimit on this stack.
        if unsafe { libc::setrlimit(libc::RLIMIT_STACK, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook above is async-signal-safe (fcntl, dup2, close_range and setrlimit
    // only; no allocation, no locks), as `pre_exec` requires in a forked multi-threaded process.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Take descriptor `fd` (the channel [`hand_over_on_exec`] put there), after checking that it
/// is an open socket. As a `File`, so that it is read and written with plain `read` and
/// `write` (the standard library's socket types use `recvfrom` and `sendto`).
pub fn take_channel(fd: RawFd) -> std::io::Result<std::fs::File> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into `st`, a valid, exclusively borrowed stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(std::io::Error::other(format!(
            "descriptor {fd} is not a socket"
        )));
    }
    // SAFETY: `fd` is open (fstat succeeded), is a socket, and nothing else in this process
    // owns it: it was handed over at exec, and this is called once.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Close every descriptor but `keep`.
pub fn close_all_except(keep: RawFd) -> std::io::Result<()> {
    let ranges = [(0, keep - 1), (keep + 1, libc::c_int::MAX)];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range with integer arguments only. No descriptor in these ranges is
        // owned by a live Rust object in the worker at this point (only `keep` is).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                last as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

use super::caps::{CapData, CapHeader};

/// Drop every capability from the bounding set (needs CAP_SETPCAP: call it before giving up
/// root) and clear the ambient set. The effective set is untouched, so a root caller can
/// still switch users afterwards; [`clear_capabilities`] empties the rest.
pub fn drop_bounding_and_ambient() -> std::io::Result<()> {
    for cap in 0..=MAX_CAP {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                // Past the last capability this kernel knows.
                Some(libc::EINVAL) => break,
                // Not allowed to drop (already unprivileged): the set cannot be used anyway
                // without CAP_SETPCAP, and capset below empties what could.
                Some(libc::EPERM) => break,
                _ => return Err(err),
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Empty the effective, permitted and inheritable capability sets of the calling thread.
pub fn clear_capabilities() -> std::io::Result<()> {
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let none = CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let data = [none, none];
    // SAFETY: `header` and `data` are valid capset arguments (version 3 takes two data
    // structs) and live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
