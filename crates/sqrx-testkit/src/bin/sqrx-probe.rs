//! `sqrx-probe NAME [ARG]`: one escape attempt, run inside a sandbox by the escape test suite.
//!
//! Prints `blocked: ...` and exits 0 when the attack failed, `ESCAPED: ...` and exits 1 when it
//! worked, `n/a: ...` and exits 0 when this kernel lacks what the probe attacks (the system call
//! answers ENOSYS, the file does not exist), `error: ...` and exits 2 when the probe itself could
//! not run. Probes never change the
//! host: a write to a host file writes back the value just read, and a write that would act
//! (sysrq, drop_caches) is only opened, never written. `sqrx-probe list` prints every name.
#![allow(
    unsafe_code,
    clippy::undocumented_unsafe_blocks,
    reason = "an attack program: raw syscalls are the point, and none of this ships"
)]

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

enum Outcome {
    Blocked(String),
    Escaped(String),
    NotApplicable(String),
}
use Outcome::{Blocked, Escaped, NotApplicable};

type Probe = fn(&str) -> Result<Outcome, String>;

const PROBES: &[(&str, Probe)] = &[
    ("sysctl-core-pattern", |_| {
        rewrite("/proc/sys/kernel/core_pattern")
    }),
    ("sysctl-hostname", |_| rewrite("/proc/sys/kernel/hostname")),
    ("sysctl-drop-caches", |_| {
        open_write("/proc/sys/vm/drop_caches")
    }),
    ("sysrq-trigger", |_| open_write("/proc/sysrq-trigger")),
    ("proc-kcore", |_| masked("/proc/kcore")),
    ("proc-keys", |_| masked("/proc/keys")),
    ("proc-timer-list", |_| masked("/proc/timer_list")),
    ("proc-sched-debug", |_| masked("/proc/sched_debug")),
    ("proc-kallsyms", |_| masked("/proc/kallsyms")),
    ("proc-acpi", |_| masked("/proc/acpi")),
    ("proc-scsi", |_| masked("/proc/scsi")),
    ("sys-firmware", |_| masked("/sys/firmware")),
    ("sysctl-netns", |_| rewrite("/proc/sys/net/ipv4/ip_forward")),
    ("sysctl-vm", |_| rewrite("/proc/sys/vm/overcommit_memory")),
    ("mountinfo-host-paths", mountinfo),
    ("uid-map", |_| {
        let map = std::fs::read_to_string("/proc/self/uid_map").map_err(|e| e.to_string())?;
        let first: Vec<&str> = map.split_whitespace().take(2).collect();
        Ok(if first == ["0", "0"] {
            Escaped(format!("uid 0 is host uid 0: {}", map.trim()))
        } else {
            Blocked(format!("uid_map {}", map.trim()))
        })
    }),
    ("capabilities", |_| capabilities()),
    ("mknod-disk", |_| {
        let p = c"/.sqrx-probe-sda";
        let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) };
        unsafe { libc::unlink(p.as_ptr()) };
        Ok(verdict(rc as i64, "mknod of a block device"))
    }),
    ("mount-tmpfs", |_| {
        mount_fresh(c"tmpfs", "/tmp/.sqrx-probe-mnt", "mounted a tmpfs")
    }),
    ("mount-cgroup", |_| {
        mount_fresh(c"cgroup2", "/tmp/.sqrx-probe-cg", "mounted cgroupfs")
    }),
    ("remount-proc-sys", |_| {
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/proc/sys".as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND,
                std::ptr::null(),
            )
        };
        Ok(verdict(rc as i64, "remounted /proc/sys read-write"))
    }),
    ("umount-mask", |_| {
        let rc = unsafe { libc::umount2(c"/proc/sys".as_ptr(), libc::MNT_DETACH) };
        Ok(verdict(rc as i64, "unmounted the read-only /proc/sys"))
    }),
    ("unshare-user", |_| unshare(libc::CLONE_NEWUSER)),
    ("unshare-mount", |_| unshare(libc::CLONE_NEWNS)),
    ("unshare-net", |_| unshare(libc::CLONE_NEWNET)),
    ("unshare-pid", |_| unshare(libc::CLONE_NEWPID)),
    ("unshare-cgroup", |_| unshare(libc::CLONE_NEWCGROUP)),
    ("clone-newuser", |_| clone_with(libc::CLONE_NEWUSER)),
    ("clone-newns", |_| clone_with(libc::CLONE_NEWNS)),
    ("clone3-newuser", |_| clone3_newuser()),
    ("setns-init", |_| {
        let f = std::fs::File::open("/proc/1/ns/mnt");
        let Ok(f) = f else {
            return Ok(Blocked(format!("open /proc/1/ns/mnt: {:?}", f.err())));
        };
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), 0) };
        Ok(verdict(rc as i64, "joined init's mount namespace"))
    }),
    ("x32-abi", |_| {
        let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        Ok(verdict(rc, "an x32 system call ran"))
    }),
    ("x32-keyctl", |_| {
        // keyctl through the x32 table: a deny-list by number alone would let it through.
        let rc =
            unsafe { libc::syscall(0x4000_0000 | libc::SYS_keyctl, 1, std::ptr::null::<u8>()) };
        Ok(verdict(rc, "joined a keyring through the x32 ABI"))
    }),
    ("i386-abi", |_| i386()),
    ("keyctl", |_| {
        // KEYCTL_JOIN_SESSION_KEYRING with a new anonymous keyring.
        let rc = unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<u8>()) };
        Ok(verdict(rc, "joined a new session keyring"))
    }),
    ("add-key", |_| {
        let rc = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"sqrx-probe".as_ptr(),
                c"x".as_ptr(),
                1usize,
                -3i32, // KEY_SPEC_SESSION_KEYRING
            )
        };
        Ok(verdict(rc, "added a key"))
    }),
    ("io-uring", |_| {
        let mut params = [0u8; 120];
        let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8, params.as_mut_ptr()) };
        if rc >= 0 {
            unsafe { libc::close(rc as i32) };
        }
        Ok(verdict(rc, "set up an io_uring"))
    }),
    ("bpf", |_| {
        // BPF_MAP_CREATE of a tiny array map.
        let mut attr = [0u32; 32];
        attr[0] = 2; // BPF_MAP_TYPE_ARRAY
        attr[1] = 4;
        attr[2] = 4;
        attr[3] = 1;
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                0,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if rc >= 0 {
            unsafe { libc::close(rc as i32) };
        }
        Ok(verdict(rc, "created a bpf map"))
    }),
    ("perf-event", |_| {
        let mut attr = [0u8; 128];
        attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
        // type 1 (software), config 0 (cpu clock), exclude_kernel bit off: a kernel-visible event
        let rc =
            unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0) };
        if rc >= 0 {
            unsafe { libc::close(rc as i32) };
        }
        if rc < 0 && errno().raw_os_error() == Some(libc::ENOENT) {
            return Ok(NotApplicable("this kernel has no perf events".into()));
        }
        Ok(verdict(rc, "opened a perf event"))
    }),
    ("userfaultfd", |_| {
        let rc = unsafe { libc::syscall(libc::SYS_userfaultfd, 0) };
        if rc >= 0 {
            unsafe { libc::close(rc as i32) };
        }
        Ok(verdict(rc, "created a userfaultfd"))
    }),
    ("ptrace-server", |_| {
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, 2, 0, 0) };
        if rc == 0 {
            // Detach only once the server has stopped, or it stays stopped when we exit.
            unsafe {
                libc::waitpid(2, std::ptr::null_mut(), libc::__WALL);
                libc::ptrace(libc::PTRACE_DETACH, 2, 0, 0);
            }
        }
        Ok(verdict(rc, "attached to the control server"))
    }),
    ("proc-server-fds", |_| {
        Ok(match std::fs::read_dir("/proc/2/fd") {
            Ok(d) => Escaped(format!("listed /proc/2/fd: {} entries", d.count())),
            Err(e) => Blocked(format!("/proc/2/fd: {e}")),
        })
    }),
    ("proc-server-mem", |_| {
        Ok(match std::fs::File::open("/proc/2/mem") {
            Ok(_) => Escaped("opened /proc/2/mem".into()),
            Err(e) => Blocked(format!("/proc/2/mem: {e}")),
        })
    }),
    ("proc-init-root", |_| {
        Ok(match std::fs::read_dir("/proc/1/root") {
            Ok(_) => Escaped("read /proc/1/root".into()),
            Err(e) => Blocked(format!("/proc/1/root: {e}")),
        })
    }),
    ("pidfd-getfd", |_| {
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, 2, 0) };
        if pidfd < 0 {
            return Ok(Blocked(format!("pidfd_open: {}", errno())));
        }
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) };
        Ok(verdict_unless(
            rc,
            &[libc::EBADF],
            "took a descriptor of the control server",
        ))
    }),
    ("process-vm-readv", |_| {
        let mut buf = [0u8; 8];
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: 0x400000 as *mut libc::c_void,
            iov_len: 8,
        };
        let rc = unsafe { libc::process_vm_readv(2, &local, 1, &remote, 1, 0) };
        Ok(verdict_unless(
            rc as i64,
            &[libc::EFAULT],
            "reached the control server's memory",
        ))
    }),
    ("kcmp", |_| {
        let rc = unsafe { libc::syscall(libc::SYS_kcmp, 1, 2, 0, 0, 0) };
        Ok(verdict(rc, "compared kernel objects of init"))
    }),
    ("open-tree", |_| {
        let rc = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), 1) };
        Ok(verdict(rc, "cloned a mount"))
    }),
    ("open-by-handle", |_| {
        let mut handle = [0u8; 136];
        handle[0..4].copy_from_slice(&8u32.to_ne_bytes());
        let rc = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                libc::AT_FDCWD,
                handle.as_mut_ptr(),
                libc::O_RDONLY,
            )
        };
        Ok(verdict_unless(
            rc,
            &[libc::ESTALE, libc::EINVAL],
            "decoded a file handle",
        ))
    }),
    ("iopl", |_| {
        let rc = unsafe { libc::syscall(libc::SYS_iopl, 3) };
        Ok(verdict(rc, "raised the I/O privilege level"))
    }),
    ("init-module", |_| {
        let rc = unsafe {
            libc::syscall(
                libc::SYS_init_module,
                std::ptr::null::<u8>(),
                0,
                c"".as_ptr(),
            )
        };
        Ok(verdict_unless(
            rc,
            &[libc::EFAULT, libc::ENOEXEC],
            "reached the module loader",
        ))
    }),
    ("syslog", |_| {
        let mut buf = [0u8; 64];
        let rc = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), 64) };
        Ok(verdict(rc as i64, "read the kernel log"))
    }),
    ("chroot", |_| {
        let rc = unsafe { libc::chroot(c"/tmp".as_ptr()) };
        Ok(verdict(rc as i64, "chrooted"))
    }),
    ("sethostname", |_| {
        let mut name = [0u8; 65];
        unsafe { libc::gethostname(name.as_mut_ptr().cast(), 64) };
        let len = name.iter().position(|b| *b == 0).unwrap_or(64);
        let rc = unsafe { libc::sethostname(name.as_ptr().cast(), len) };
        Ok(verdict(rc as i64, "set the hostname (same value)"))
    }),
    ("raw-socket", |_| {
        socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
    }),
    ("packet-socket", |_| {
        socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
    }),
    ("vsock", |_| socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0)),
    ("fd-leak", |_| {
        let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 2))
            .collect();
        // One of them is the directory being listed.
        Ok(if fds.len() > 1 {
            Escaped(format!("inherited descriptors: {fds:?}"))
        } else {
            Blocked("only stdin, stdout and stderr".into())
        })
    }),
    ("host-loopback", |port| {
        let addr = format!("127.0.0.1:{port}");
        Ok(
            match std::net::TcpStream::connect_timeout(
                &addr.parse().map_err(|e| format!("{e}"))?,
                std::time::Duration::from_millis(500),
            ) {
                Ok(_) => Escaped(format!("connected to the host's {addr}")),
                Err(e) => Blocked(format!("{addr}: {e}")),
            },
        )
    }),
    ("abstract-unix", |name| {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(match std::os::unix::net::UnixStream::connect_addr(&addr) {
            Ok(_) => Escaped(format!("connected to the host's @{name}")),
            Err(e) => Blocked(format!("@{name}: {e}")),
        })
    }),
    ("read-host-path", |path| {
        Ok(match std::fs::read(path) {
            Ok(_) => Escaped(format!("read {path}")),
            Err(e) => Blocked(format!("{path}: {e}")),
        })
    }),
    ("see-process", |reversed| {
        let marker: String = reversed.chars().rev().collect();
        let marker = marker.as_str();
        let me = std::process::id().to_string();
        for e in std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == me || name.parse::<u32>().is_err() {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
                && String::from_utf8_lossy(&cmd).contains(marker)
            {
                return Ok(Escaped(format!("sees {:?}", e.path())));
            }
        }
        Ok(Blocked(format!("no process with {marker:?} in view")))
    }),
    ("setuid-exec", |_| setuid_exec()),
    ("pids-limit", |max| forks(max)),
    ("memory-limit", |mb| memory(mb)),
    ("disk-limit", |mb| disk(mb)),
];

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn verdict(rc: i64, what: &str) -> Outcome {
    let e = errno();
    if rc >= 0 {
        Escaped(what.to_string())
    } else if e.raw_os_error() == Some(libc::ENOSYS) {
        NotApplicable(format!("this kernel has no such call ({e})"))
    } else {
        Blocked(format!("{e}"))
    }
}

/// Like `verdict`, but some errors mean the call got past every check to the kernel proper.
fn verdict_unless(rc: i64, past_checks: &[i32], what: &str) -> Outcome {
    let e = errno();
    if rc < 0 && e.raw_os_error() == Some(libc::ENOSYS) {
        return NotApplicable(format!("this kernel has no such call ({e})"));
    }
    if rc >= 0 || e.raw_os_error().is_some_and(|n| past_checks.contains(&n)) {
        Escaped(format!("{what} ({e})"))
    } else {
        Blocked(format!("{e}"))
    }
}

fn rewrite(path: &str) -> Result<Outcome, String> {
    let before = std::fs::read(path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => match f.write_all(&before) {
            Ok(()) => Escaped(format!("wrote {path} (its own value back)")),
            Err(e) => Blocked(format!("write {path}: {e}")),
        },
        Err(e) => Blocked(format!("open {path}: {e}")),
    })
}

fn open_write(path: &str) -> Result<Outcome, String> {
    Ok(match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Escaped(format!("opened {path} for writing")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            NotApplicable(format!("{path} does not exist on this kernel"))
        }
        Err(e) => Blocked(format!("{path}: {e}")),
    })
}

fn masked(path: &str) -> Result<Outcome, String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(NotApplicable(format!(
                "{path} does not exist on this kernel"
            )));
        }
        Err(e) => return Ok(Blocked(format!("{path}: {e}"))),
    };
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return Ok(Blocked(format!("{path} is covered by /dev/null")));
    }
    if meta.is_dir() {
        let c = CString::new(path).map_err(|e| e.to_string())?;
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type == libc::TMPFS_MAGIC {
            return Ok(Blocked(format!("{path} is covered by an empty tmpfs")));
        }
        let n = std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0);
        return Ok(Escaped(format!("{path} is the kernel's ({n} entries)")));
    }
    let mut buf = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut buf))
        .map_err(|e| format!("{path}: {e}"));
    Ok(match n {
        Ok(n) => Escaped(format!("{path} is the kernel's ({n} bytes read)")),
        Err(e) => Blocked(e),
    })
}

fn mountinfo(host_marker: &str) -> Result<Outcome, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let leaks: Vec<&str> = info
        .lines()
        .filter(|l| {
            (!host_marker.is_empty() && l.contains(host_marker)) || l.contains("/sandboxes/")
        })
        .collect();
    Ok(if leaks.is_empty() {
        Blocked("no host path in mountinfo".into())
    } else {
        Escaped(format!("host paths: {leaks:?}"))
    })
}

fn capabilities() -> Result<Outcome, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX)
    };
    // MKNOD 27, NET_RAW 13, SETFCAP 31, AUDIT_WRITE 29, SYS_CHROOT 18, SYS_ADMIN 21,
    // SYS_PTRACE 19, SYS_MODULE 16, NET_ADMIN 12, SYS_RAWIO 17, DAC_READ_SEARCH 2.
    let bad: u64 = [27u32, 13, 31, 29, 18, 21, 19, 16, 12, 17, 2]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    let (eff, bnd) = (field("CapEff:"), field("CapBnd:"));
    Ok(if eff & bad != 0 || bnd & bad != 0 {
        Escaped(format!("CapEff {eff:x} CapBnd {bnd:x}"))
    } else {
        Blocked(format!("CapEff {eff:x} CapBnd {bnd:x}"))
    })
}

/// Mount a new filesystem of type `fstype` at `dir` (unmounted again if that worked).
fn mount_fresh(fstype: &std::ffi::CStr, dir: &str, what: &str) -> Result<Outcome, String> {
    let _ = std::fs::create_dir_all(dir);
    let target = CString::new(dir).map_err(|e| e.to_string())?;
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    Ok(verdict(rc as i64, what))
}

/// Run `attempt` in a forked child (whatever it does must not change this probe process):
/// `Ok(None)` when it returned true, `Ok(Some(status))` with the wait status otherwise.
fn in_child(attempt: impl FnOnce() -> bool) -> Result<Option<i32>, String> {
    match unsafe { libc::fork() } {
        0 => {
            let worked = attempt();
            unsafe { libc::_exit(if worked { 0 } else { 3 }) };
        }
        -1 => Err(format!("fork: {}", errno())),
        pid => {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let worked = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            Ok((!worked).then_some(status))
        }
    }
}

fn unshare(flag: i32) -> Result<Outcome, String> {
    Ok(match in_child(|| unsafe { libc::unshare(flag) } == 0)? {
        None => Escaped(format!("unshare({flag:#x}) worked")),
        Some(_) => Blocked(format!("unshare({flag:#x}) refused")),
    })
}

fn clone_with(flag: i32) -> Result<Outcome, String> {
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flag | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc == 0 {
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        unsafe { libc::waitpid(rc as i32, std::ptr::null_mut(), 0) };
    }
    Ok(verdict(rc, "cloned into a new namespace"))
}

fn clone3_newuser() -> Result<Outcome, String> {
    let mut args = [0u64; 11];
    args[0] = libc::CLONE_NEWUSER as u64;
    args[4] = libc::SIGCHLD as u64; // exit_signal
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_mut_ptr(),
            std::mem::size_of_val(&args),
        )
    };
    if rc == 0 {
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        unsafe { libc::waitpid(rc as i32, std::ptr::null_mut(), 0) };
    }
    Ok(verdict(rc, "clone3 into a new user namespace"))
}

#[cfg(target_arch = "x86_64")]
fn i386() -> Result<Outcome, String> {
    let attempt = || {
        let mut ret: i64 = 20; // getpid in the i386 table
        unsafe { std::arch::asm!("int 0x80", inout("rax") ret) };
        ret > 0
    };
    Ok(match in_child(attempt)? {
        None => Escaped("an i386 system call ran".into()),
        Some(status) if libc::WIFSIGNALED(status) => {
            Blocked(format!("killed by signal {}", libc::WTERMSIG(status)))
        }
        Some(_) => Blocked("the i386 call failed".into()),
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn i386() -> Result<Outcome, String> {
    Ok(Blocked("no i386 ABI on this architecture".into()))
}

fn socket(family: i32, kind: i32, proto: i32) -> Result<Outcome, String> {
    let fd = unsafe { libc::socket(family, kind, proto) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    Ok(verdict(fd as i64, "opened the socket"))
}

/// Copy this program setuid-root, drop to uid 1000 and run the copy: does it get euid 0?
fn setuid_exec() -> Result<Outcome, String> {
    let copy = "/tmp/.sqrx-probe-suid";
    std::fs::copy("/proc/self/exe", copy).map_err(|e| format!("copy: {e}"))?;
    let c = CString::new(copy).map_err(|e| e.to_string())?;
    unsafe { libc::chown(c.as_ptr(), 0, 0) };
    std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o4755))
        .map_err(|e| format!("chmod: {e}"))?;
    let mode = std::fs::metadata(copy).map(|m| m.mode()).unwrap_or(0);
    let out = std::process::Command::new(copy)
        .arg("euid")
        .uid(1000)
        .gid(1000)
        .output()
        .map_err(|e| format!("run: {e}"))?;
    let _ = std::fs::remove_file(copy);
    let euid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Ok(if euid == "0" {
        Escaped(format!(
            "setuid copy (mode {mode:o}) ran with euid 0 from uid 1000"
        ))
    } else {
        Blocked(format!("setuid copy ran with euid {euid}"))
    })
}

use std::os::unix::process::CommandExt;

/// Fork up to 4x `max` sleeping children: more than `max` alive at once escapes the limit.
fn forks(max: &str) -> Result<Outcome, String> {
    let max: usize = max
        .parse()
        .map_err(|_| "pids-limit needs a number".to_string())?;
    let mut kids = Vec::new();
    for _ in 0..max * 4 {
        match unsafe { libc::fork() } {
            0 => {
                unsafe { libc::pause() };
                unsafe { libc::_exit(0) };
            }
            -1 => break,
            pid => kids.push(pid),
        }
    }
    let n = kids.len();
    for pid in kids {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    Ok(if n >= max {
        Escaped(format!("{n} processes with a limit of {max} tasks"))
    } else {
        Blocked(format!("fork failed after {n} children"))
    })
}

/// In a child, touch 4x `mb` MiB: a child that survives escaped the memory limit.
fn memory(mb: &str) -> Result<Outcome, String> {
    let mb: usize = mb
        .parse()
        .map_err(|_| "memory-limit needs a number".to_string())?;
    let attempt = || {
        let mut v: Vec<Vec<u8>> = Vec::new();
        for _ in 0..mb * 4 {
            v.push(vec![1u8; 1 << 20]);
        }
        v.len() == mb * 4
    };
    Ok(match in_child(attempt)? {
        None => Escaped(format!("touched {} MiB with a limit of {mb} MiB", mb * 4)),
        Some(status) => Blocked(format!("child ended with status {status:#x}")),
    })
}

/// Write 2x `mb` MiB to /tmp (on the upper): more than `mb` written escaped the disk limit.
fn disk(mb: &str) -> Result<Outcome, String> {
    let mb: u64 = mb
        .parse()
        .map_err(|_| "disk-limit needs a number".to_string())?;
    let path = "/tmp/.sqrx-probe-fill";
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0u64;
    while written < mb * 2 {
        if f.write_all(&chunk).and_then(|()| f.sync_data()).is_err() {
            break;
        }
        written += 1;
    }
    drop(f);
    let _ = std::fs::remove_file(path);
    Ok(if written > mb {
        Escaped(format!("wrote {written} MiB with an upper of {mb} MiB"))
    } else {
        Blocked(format!("disk full after {written} MiB"))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("list");
    let arg = args.get(2).map(String::as_str).unwrap_or("");
    if name == "euid" {
        // The setuid copy's report of its effective uid (see setuid_exec).
        println!("{}", unsafe { libc::geteuid() });
        return;
    }
    if name == "list" {
        for (n, _) in PROBES {
            println!("{n}");
        }
        return;
    }
    let Some((_, probe)) = PROBES.iter().find(|(n, _)| *n == name) else {
        println!("error: no probe {name}");
        std::process::exit(2);
    };
    match probe(arg) {
        Ok(Blocked(why)) => {
            println!("blocked: {why}");
        }
        Ok(Escaped(what)) => {
            println!("ESCAPED: {what}");
            std::process::exit(1);
        }
        Ok(NotApplicable(why)) => {
            println!("n/a: {why}");
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(2);
        }
    }
}
