//! The worker's seccomp filter: a default-deny allow-list of what a single-threaded QuickJS
//! interpreter serving one socket needs, and nothing else. Anything outside it kills the whole
//! worker (`SECCOMP_RET_KILL_PROCESS`): a probe gets no answer to learn from, and the host
//! replaces the worker.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::protocol::CHANNEL_FD;

/// Allowed whatever their arguments: memory management (the allocator and QuickJS's heap),
/// futex (libc's internal locks), clocks (the deadline, `Date`; normally served by the vDSO
/// without a system call), `getrandom` (hash map seeds; it reads no descriptor), and the ways
/// out (`sigaltstack`: the Rust runtime removes its stack-overflow handler's stack at exit).
const ALWAYS: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

/// The compiled filter. The target architecture is checked first: a system call made through
/// another ABI (i386 `int 0x80`) kills; x32 numbers are not in the list and kill too.
pub(super) fn build() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALWAYS.iter().map(|s| (*s, Vec::new())).collect();
    // read/write on the channel only: no other descriptor is open, and none can be opened.
    for sys in [libc::SYS_read, libc::SYS_write] {
        let rule = SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, CHANNEL_FD as u64)?])
            .map_err(|e| e.to_string())?;
        rules.insert(sys, vec![rule]);
    }
    // Memory, never executable: no JIT to feed, so no code the script could plant.
    let no_exec = libc::PROT_EXEC as u64;
    for sys in [libc::SYS_mmap, libc::SYS_mprotect] {
        let rule = SeccompRule::new(vec![cond(2, SeccompCmpOp::MaskedEq(no_exec), 0)?])
            .map_err(|e| e.to_string())?;
        rules.insert(sys, vec![rule]);
    }
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch(),
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    const CHILD_ENV: &str = "SQRX_TEST_SECCOMP_CHILD";
    const NAME: &str = "js::confined::seccomp::tests::the_filter_kills_what_it_does_not_allow";

    /// In a child copy of the test binary: install the filter on this thread, do what a worker
    /// does (allocate, read the clock), then `what`, then exit 0.
    fn child(what: &str) -> ! {
        let f = super::build().expect("build");
        nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
        seccompiler::apply_filter(&f).expect("apply");
        let v = vec![7u8; 32 << 20];
        std::hint::black_box(&v);
        drop(v);
        std::hint::black_box(std::time::SystemTime::now());
        match what {
            "nothing" => {}
            "open" => {
                let _ = std::hint::black_box(std::fs::File::open("/etc/hostname"));
            }
            "write stdout" => {
                let _ = nix::unistd::write(std::io::stdout(), b"x");
            }
            "socket" => {
                let _ = std::net::UdpSocket::bind("127.0.0.1:0");
            }
            "getpid" => {
                std::hint::black_box(std::process::id());
            }
            other => panic!("unknown probe {other}"),
        }
        std::process::exit(0)
    }

    #[test]
    fn the_filter_kills_what_it_does_not_allow() {
        if let Some(what) = std::env::var_os(CHILD_ENV) {
            child(&what.to_string_lossy());
        }
        for (what, killed) in [
            ("nothing", false),
            ("open", true),
            ("write stdout", true),
            ("socket", true),
            ("getpid", true),
        ] {
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, what)
                .output()
                .expect("run child");
            let sig = out.status.signal();
            if killed {
                assert_eq!(sig, Some(libc::SIGSYS), "{what}: {:?}", out.status);
            } else {
                assert!(
                    out.status.success(),
                    "{what}: {:?} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn the_filter_compiles() {
        let f = super::build().expect("build");
        assert!(f.len() > super::ALWAYS.len());
    }
}
