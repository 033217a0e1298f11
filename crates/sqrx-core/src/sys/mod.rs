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

/// Encode a device number the way squashfs stores it (the kernel's `new_encode_dev`).
pub fn squashfs_dev(major: u64, minor: u64) -> u32 {
    let (major, minor) = (major as u32, minor as u32);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Split a squashfs device number into (major, minor) (the kernel's `new_decode_dev`).
pub fn squashfs_dev_parts(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

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

/// Fork the calling process. Only call while the process has a single thread.
pub fn fork_single_threaded() -> std::io::Result<Forked> {
    // SAFETY: the callers (sqrx-init's setup before any thread is started) are single-threaded,
    // so the child inherits a consistent address space with no locks held by other threads.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 1048575), (4095, 300)] {
            let dev = squashfs_dev(major, minor);
            assert_eq!(squashfs_dev_parts(dev), (major as u32, minor as u32));
        }
        assert_eq!(squashfs_dev(1, 3), 0x103);
    }
}
