//! Dropping capabilities to a container default set, between fork and exec (no allocation).

/// The capabilities a sandboxed process keeps: Docker's default set less MKNOD, NET_RAW,
/// SYS_CHROOT, AUDIT_WRITE and SETFCAP (no device nodes, raw packets, chroot games, audit
/// records or file capabilities). With a user namespace they act only on the sandbox's own
/// files and processes.
pub const DEFAULT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
];

/// The highest capability number the capability sets can hold (two 32-bit words).
const MAX_CAP: u32 = 63;

/// The highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`); read
/// before confinement, since [`drop_to_default`] must not allocate.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(MAX_CAP, |n: u32| n.min(MAX_CAP))
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
pub(crate) struct CapHeader {
    pub(crate) version: u32,
    pub(crate) pid: i32,
}

/// `struct __user_cap_data_struct` (version 3 takes two: capabilities 0-31 and 32-63).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CapData {
    pub(crate) effective: u32,
    pub(crate) permitted: u32,
    pub(crate) inheritable: u32,
}

/// Drop every capability outside [`DEFAULT_CAPS`] from the bounding (every capability up to
/// `last_cap`, the kernel's [`last_cap`]), effective, permitted and inheritable sets and clear
/// the ambient set. Async-signal-safe: no allocation, only syscalls.
pub fn drop_to_default(last_cap: u32) -> std::io::Result<()> {
    let mut keep = [0u32; 2];
    for &c in DEFAULT_CAPS {
        keep[(c / 32) as usize] |= 1 << (c % 32);
    }
    for cap in 0..=last_cap.min(MAX_CAP) {
        if keep[(cap / 32) as usize] & (1 << (cap % 32)) == 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    }; // _LINUX_CAPABILITY_VERSION_3
    let data = [
        CapData {
            effective: keep[0],
            permitted: keep[0],
            inheritable: 0,
        },
        CapData {
            effective: keep[1],
            permitted: keep[1],
            inheritable: 0,
        },
    ];
    // SAFETY: `header` and `data` are valid capset arguments (version 3 takes two data
    // structs) and live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raise every permitted capability into the effective set of the calling thread.
pub fn raise_effective() -> std::io::Result<()> {
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `data` are valid capget arguments (version 3, two data structs) and
    // live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &header as *const CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: as above, for capset; only this thread's sets change.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Set `no_new_privs` so exec can never gain privileges (setuid binaries, file capabilities).
pub fn set_no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reset this process's OOM score adjustment to 0 (init runs at -1000). Async-signal-safe.
pub fn reset_oom_score_adj() -> std::io::Result<()> {
    let path = c"/proc/self/oom_score_adj";
    // SAFETY: a valid NUL-terminated path; the returned descriptor is checked and closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: writing 1 byte from a static buffer to the descriptor opened above.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    if n != 1 {
        return Err(err);
    }
    Ok(())
}
