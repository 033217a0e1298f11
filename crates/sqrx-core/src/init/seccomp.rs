//! The seccomp deny-list every sandboxed process runs under (built with `seccompiler`).
//!
//! Two filters are installed: one returns `EPERM` for calls that could reach beyond the
//! sandbox, one makes `clone3` look unimplemented (`ENOSYS`) so that libc falls back to `clone`,
//! whose flags the first filter can inspect (`clone3` passes them in memory, out of reach).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
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
];

/// The compiled filters, built once per server and applied between fork and exec.
#[derive(Debug, Clone)]
pub(super) struct Filters {
    deny: BpfProgram,
    clone3: BpfProgram,
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
        Ok(Filters { deny, clone3 })
    }

    /// Install both filters on the calling thread. Async-signal-safe (no allocation).
    pub fn apply(&self) -> std::io::Result<()> {
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
