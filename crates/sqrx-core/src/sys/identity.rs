//! Changing who a process is: the user and groups of an exec, and a seccomp filter installed
//! without `no_new_privs` (for sandboxes whose setuid programs may raise privileges).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the child of `cmd` run as `uid`, `gid` and the supplementary `groups`, set between
/// fork and exec (groups first: once the uid is dropped they cannot change).
pub fn switch_on_exec(cmd: &mut Command, uid: u32, gid: u32, groups: Vec<u32>) {
    let hook = move || -> std::io::Result<()> {
        // SAFETY: setgroups reads `groups.len()` ids from the Vec, allocated before the fork
        // and alive in this copy of the address space; setresgid and setresuid take integers.
        // All three are async-signal-safe; nothing here allocates or takes a lock.
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec and only makes the async-signal-
    // safe calls above.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Install the classic-BPF `program` as this thread's seccomp filter without setting
/// `no_new_privs` (`seccompiler::apply_filter` sets it). The kernel allows this only while the
/// thread holds `CAP_SYS_ADMIN` in its user namespace.
pub fn install_seccomp_keeping_privs(program: &[seccompiler::sock_filter]) -> std::io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| std::io::Error::other("seccomp program too long"))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program. `seccompiler::sock_filter` is `repr(C)` with the
        // same fields as `libc::sock_filter` (code u16, jt u8, jf u8, k u32).
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points to `len` valid instructions that outlive the call; the kernel copies
    // them before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
