//! The only module allowed to hold `unsafe` code and raw syscalls. Every `unsafe` block carries
//! a `// SAFETY:` comment.

pub mod caps;
pub mod confine;
pub mod devbpf;
pub mod fdpass;
pub mod identity;
pub mod idmap;
pub mod loopdev;
pub mod netdev;
pub mod netns;
pub mod pty;

#[cfg(feature = "js")]
pub mod malloc;

/// `pivot_root(new_root, put_old)`.
pub fn pivot_root(new_root: &std::ffi::CStr, put_old: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `fork()`, for the init process only (single-threaded at that point).
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// Fork the calling process.
///
/// # Safety
///
/// Sound only while the process has a single thread (the caller's). The child of a fork has
/// only the thread that called it: a lock another thread held at the fork (the allocator's,
/// stdio's, any `Mutex`) stays locked in the child forever, and the child may deadlock or see
/// half-updated data. sqrx-init's setup forks before it starts any thread.
pub unsafe fn fork_single_threaded() -> std::io::Result<Forked> {
    // SAFETY: fork takes no arguments; that the child's address space is consistent is the
    // caller's promise (a single thread, see `# Safety`).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}
