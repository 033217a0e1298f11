//! The seccomp deny-list every sandboxed process runs under (built with `seccompiler`).
//!
//! Three filters are installed. The first refuses the x32 ABI on x86_64 (its calls carry the
//! x86_64 architecture tag with bit 30 set in the number, so a deny-list by number alone would
//! miss them). The second kills a process that uses any other architecture's calling
//! convention (i386 `int 0x80` on x86_64: `seccompiler`'s architecture check) and returns
//! `EPERM` for calls that could reach beyond the sandbox. The third makes `clone3` look
//! unimplemented (`ENOSYS`) so that libc falls back to `clone`, whose flags the second filter
//! can inspect (`clone3` passes them in memory, out of reach).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

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
const DENIED_FAMILIES: &[i32] = &[libc::AF_VSOCK];

/// The compiled filters, built once per server and applied between fork and exec.
#[derive(Debug, Clone)]
pub(super) struct Filters {
    x32: BpfProgram,
    deny: BpfProgram,
    clone3: BpfProgram,
}

/// `x32` ABI calls (x86_64 numbers with `__X32_SYSCALL_BIT`) fail with `EPERM`; everything
/// else passes to the next filter. Empty elsewhere than on x86_64.
fn x32_filter() -> BpfProgram {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr is at offset 0.
        insn(BPF_LD_W_ABS, 0, 0, 0),
        insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(BPF_RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        insn(BPF_RET_K, 0, 0, RET_ALLOW),
    ]
}

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

impl Filters {
    pub fn build() -> Result<Self, String> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|s| (*s, vec![])).collect();
        // clone with namespace flags: new namespaces would give a process a fresh set of
        // capabilities (user namespaces) or ways around the sandbox's own.
        let ns_flags = (libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWCGROUP) as u64;
        let mut clone_rules = Vec::new();
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
        ] {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )
            .map_err(|e| e.to_string())?;
            clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| e.to_string())?);
        }
        debug_assert!(ns_flags != 0);
        rules.insert(libc::SYS_clone, clone_rules);
        let mut socket_rules = Vec::new();
        for family in DENIED_FAMILIES {
            let cond =
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *family as u64)
                    .map_err(|e| e.to_string())?;
            socket_rules.push(SeccompRule::new(vec![cond]).map_err(|e| e.to_string())?);
        }
        rules.insert(libc::SYS_socket, socket_rules);
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch(),
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| e.to_string())?;
        let clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, vec![])].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| e.to_string())?;
        Ok(Filters {
            x32: x32_filter(),
            deny,
            clone3,
        })
    }

    /// Install both filters on the calling thread. Async-signal-safe (no allocation).
    pub fn apply(&self) -> std::io::Result<()> {
        if !self.x32.is_empty() {
            seccompiler::apply_filter(&self.x32)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        seccompiler::apply_filter(&self.deny).map_err(|e| std::io::Error::other(e.to_string()))?;
        seccompiler::apply_filter(&self.clone3).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_compile() {
        let f = super::Filters::build().expect("build");
        assert!(f.deny.len() > super::DENIED.len());
        assert!(!f.clone3.is_empty());
    }
}
