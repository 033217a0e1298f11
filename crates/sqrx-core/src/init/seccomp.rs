//! The seccomp deny-list every sandboxed process runs under: one classic-BPF program, built
//! here as a binary search over the system-call number and installed with `seccompiler`.
//!
//! In order, the program kills a process that uses another architecture's calling convention
//! (i386 `int 0x80` on x86_64), refuses the x32 ABI on x86_64 (its calls carry the x86_64
//! architecture tag with bit 30 set in the number, so a deny-list by number alone would miss
//! them), makes `clone3` look unimplemented (`ENOSYS`, so that libc falls back to `clone`, whose
//! flags the filter can inspect: `clone3` passes them in memory, out of reach) and returns
//! `EPERM` for calls that could reach beyond the sandbox.
//!
//! Why not `seccompiler`'s own compiler: it emits a linear chain (337 instructions for this
//! list), and the kernel pays for the length when the filter is attached, emulating it for
//! every system-call number of both ABIs to build its cache of always-allowed calls: ~210 µs
//! per sandbox start here, against ~25 µs for this ~130-instruction tree.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, sock_filter};

/// Calls refused with `EPERM`, whatever their arguments.
const DENIED: &[i64] = &[
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_quotactl,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_fanotify_init,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_kcmp,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    SYS_OPEN_TREE_ATTR,
    libc::SYS_uselib,
    libc::SYS_nfsservctl,
];

/// `open_tree_attr` (Linux 6.15; one number on every architecture since the unified table).
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// Socket families refused: `AF_VSOCK` reaches the hypervisor's host side.
const DENIED_FAMILIES: &[u32] = &[libc::AF_VSOCK as u32];

/// `clone` flags that create namespaces: a new user namespace gives a process a fresh set of
/// capabilities, the others ways around the sandbox's own. (All in the low 32 bits.)
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u32;

// Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
// Offsets in `struct seccomp_data`: nr, arch, then args[0] (its low word first on the
// little-endian architectures sqrx builds for).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
#[cfg(not(target_arch = "aarch64"))]
const AUDIT_ARCH: u32 = 0xc000_003e;

/// What the filter does with one system-call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Eperm,
    Enosys,
    /// `clone`: `EPERM` when its flags ask for a namespace.
    CloneFlags,
    /// `socket`: `EPERM` for a refused family.
    SocketFamily,
}

/// Where a jump goes before the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    At(usize),
    Verdict(Verdict),
    Kill,
}

#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    jt: Target,
    jf: Target,
    k: u32,
}

impl Insn {
    fn load(offset: u32) -> Self {
        Insn {
            code: LD_W_ABS,
            jt: Target::Next,
            jf: Target::Next,
            k: offset,
        }
    }
    fn jump(code: u16, k: u32, jt: Target, jf: Target) -> Self {
        Insn { code, jt, jf, k }
    }
    fn ret(k: u32) -> Self {
        Insn {
            code: RET_K,
            jt: Target::Next,
            jf: Target::Next,
            k,
        }
    }
}

/// The compiled program, built once per server and applied before the workload starts.
#[derive(Debug, Clone)]
pub(super) struct Filters {
    program: BpfProgram,
}

/// The numbers the program treats specially, sorted.
fn table() -> Vec<(u32, Verdict)> {
    let mut t: BTreeMap<u32, Verdict> = DENIED
        .iter()
        .map(|nr| (*nr as u32, Verdict::Eperm))
        .collect();
    t.insert(libc::SYS_clone as u32, Verdict::CloneFlags);
    t.insert(libc::SYS_clone3 as u32, Verdict::Enosys);
    t.insert(libc::SYS_socket as u32, Verdict::SocketFamily);
    t.into_iter().collect()
}

/// Emit a binary search over `entries` (sorted) with the number loaded in the accumulator.
fn search(entries: &[(u32, Verdict)], code: &mut Vec<Insn>) {
    match entries {
        [] => code.push(Insn::ret(RET_ALLOW)),
        [(nr, verdict)] => code.push(Insn::jump(
            JEQ_K,
            *nr,
            Target::Verdict(*verdict),
            Target::Verdict(Verdict::Allow),
        )),
        _ => {
            let mid = entries.len() / 2;
            let (left, right) = entries.split_at(mid);
            let branch = code.len();
            // Patched below once the left half's length is known.
            code.push(Insn::jump(
                JGT_K,
                left[left.len() - 1].0,
                Target::Next,
                Target::Next,
            ));
            search(left, code);
            let right_at = code.len();
            code[branch].jt = Target::At(right_at);
            search(right, code);
        }
    }
}

/// The whole program, before layout.
fn program() -> Vec<Insn> {
    let mut code = vec![
        Insn::load(OFFSET_ARCH),
        Insn::jump(JEQ_K, AUDIT_ARCH, Target::Next, Target::Kill),
        Insn::load(OFFSET_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        code.push(Insn::jump(
            JGE_K,
            X32_SYSCALL_BIT,
            Target::Verdict(Verdict::Eperm),
            Target::Next,
        ));
    }
    search(&table(), &mut code);
    code
}

/// Lay the program out: the verdict blocks go after the search, and every jump becomes a
/// forward offset (classic BPF jumps forward only, by at most 255 instructions).
fn assemble(code: &[Insn]) -> Result<BpfProgram, String> {
    // The argument checks first, then the returns: every jump goes forward.
    let clone_at = code.len();
    let socket_at = clone_at + 2;
    let allow_at = socket_at + 1 + DENIED_FAMILIES.len();
    let at = |t: Target| match t {
        Target::Verdict(Verdict::CloneFlags) => clone_at,
        Target::Verdict(Verdict::SocketFamily) => socket_at,
        Target::Verdict(Verdict::Allow) => allow_at,
        Target::Verdict(Verdict::Eperm) => allow_at + 1,
        Target::Verdict(Verdict::Enosys) => allow_at + 2,
        Target::Kill => allow_at + 3,
        Target::At(i) => i,
        Target::Next => usize::MAX,
    };
    let mut tail = vec![
        Insn::load(OFFSET_ARG0_LOW),
        Insn::jump(
            JSET_K,
            NAMESPACE_FLAGS,
            Target::Verdict(Verdict::Eperm),
            Target::Verdict(Verdict::Allow),
        ),
        Insn::load(OFFSET_ARG0_LOW),
    ];
    for (i, family) in DENIED_FAMILIES.iter().enumerate() {
        let last = i + 1 == DENIED_FAMILIES.len();
        let otherwise = if last {
            Target::Verdict(Verdict::Allow)
        } else {
            Target::Next
        };
        tail.push(Insn::jump(
            JEQ_K,
            *family,
            Target::Verdict(Verdict::Eperm),
            otherwise,
        ));
    }
    tail.extend([
        Insn::ret(RET_ALLOW),
        Insn::ret(RET_ERRNO | libc::EPERM as u32),
        Insn::ret(RET_ERRNO | libc::ENOSYS as u32),
        Insn::ret(RET_KILL_PROCESS),
    ]);
    let all: Vec<Insn> = code.iter().chain(tail.iter()).copied().collect();
    let offset = |from: usize, t: Target| -> Result<u8, String> {
        if t == Target::Next {
            return Ok(0);
        }
        let to = at(t);
        to.checked_sub(from + 1)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or_else(|| format!("seccomp jump from {from} to {to} out of range"))
    };
    all.iter()
        .enumerate()
        .map(|(i, insn)| {
            let is_jump = insn.code & 0x07 == 0x05;
            let (jt, jf) = if is_jump {
                (offset(i, insn.jt)?, offset(i, insn.jf)?)
            } else {
                (0, 0)
            };
            Ok(sock_filter {
                code: insn.code,
                jt,
                jf,
                k: insn.k,
            })
        })
        .collect()
}

impl Filters {
    pub fn build() -> Result<Self, String> {
        Ok(Filters {
            program: assemble(&program())?,
        })
    }

    /// Install the program on the calling thread. Async-signal-safe (no allocation).
    pub fn apply(&self) -> std::io::Result<()> {
        seccompiler::apply_filter(&self.program).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Install the program on the calling thread without setting `no_new_privs`; needs
    /// `CAP_SYS_ADMIN` in the thread's user namespace.
    pub fn apply_keeping_privs(&self) -> std::io::Result<()> {
        crate::sys::identity::install_seccomp_keeping_privs(&self.program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the program uses.
    fn run(program: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let word = |offset: u32| match offset {
            OFFSET_NR => nr,
            OFFSET_ARCH => arch,
            OFFSET_ARG0_LOW => arg0 as u32,
            _ => panic!("load from offset {offset}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            let taken = match i.code {
                LD_W_ABS => {
                    acc = word(i.k);
                    pc += 1;
                    continue;
                }
                RET_K => return i.k,
                JEQ_K => acc == i.k,
                JGT_K => acc > i.k,
                JGE_K => acc >= i.k,
                JSET_K => acc & i.k != 0,
                other => panic!("opcode {other:#x}"),
            };
            pc += 1 + usize::from(if taken { i.jt } else { i.jf });
        }
    }

    /// What the module documentation promises, written independently of the search.
    fn expected(arch: u32, nr: u32, arg0: u64) -> u32 {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let refused = DENIED.contains(&i64::from(nr))
            || (nr == libc::SYS_clone as u32 && arg0 as u32 & NAMESPACE_FLAGS != 0)
            || (nr == libc::SYS_socket as u32 && DENIED_FAMILIES.contains(&(arg0 as u32)));
        if arch != AUDIT_ARCH {
            RET_KILL_PROCESS
        } else if cfg!(target_arch = "x86_64") && nr >= X32_SYSCALL_BIT {
            eperm
        } else if nr == libc::SYS_clone3 as u32 {
            RET_ERRNO | libc::ENOSYS as u32
        } else if refused {
            eperm
        } else {
            RET_ALLOW
        }
    }

    #[test]
    fn the_program_does_what_the_list_says_for_every_number() {
        let program = Filters::build().expect("build").program;
        assert!(program.len() < 160, "{} instructions", program.len());
        let args = [
            0,
            libc::SIGCHLD as u64,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
            libc::CLONE_NEWNET as u64,
            libc::CLONE_NEWCGROUP as u64,
            (libc::CLONE_VM | libc::CLONE_THREAD) as u64,
            libc::AF_INET as u64,
            libc::AF_VSOCK as u64,
            libc::AF_UNIX as u64,
        ];
        let mut refused = 0;
        for arch in [AUDIT_ARCH, 0x4000_0003 /* i386 */] {
            for base in [0, X32_SYSCALL_BIT] {
                for nr in 0..1024 {
                    for arg0 in args {
                        let (got, want) = (
                            run(&program, arch, base | nr, arg0),
                            expected(arch, base | nr, arg0),
                        );
                        assert_eq!(got, want, "arch {arch:#x} nr {} arg0 {arg0:#x}", base | nr);
                        refused += usize::from(got != RET_ALLOW);
                    }
                }
            }
        }
        assert!(refused > DENIED.len() * args.len());
    }
}
