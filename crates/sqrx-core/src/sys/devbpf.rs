//! The cgroup v2 device controller: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, attached to a
//! sandbox's cgroup, that allows a fixed list of character devices and denies every other
//! device access (open, mknod) of the processes in it. cgroup v2 has no `devices.allow` file;
//! this program is how runc and crun do it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One allowed character device: major and minor (`None`: any minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharDevice {
    /// Major number.
    pub major: u32,
    /// Minor number, or any.
    pub minor: Option<u32>,
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const BPF_LDX_MEM_W: u8 = 0x61;
const BPF_ALU64_AND_K: u8 = 0x57;
const BPF_ALU64_MOV_K: u8 = 0xb7;
const BPF_JMP_JNE_K: u8 = 0x55;
const BPF_JMP_EXIT: u8 = 0x95;
/// `BPF_DEVCG_DEV_CHAR`.
const DEV_CHAR: i32 = 2;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// The program: 1 (allow) for a character device in `allow`, 0 (deny) for anything else.
///
/// The context (`struct bpf_cgroup_dev_ctx`, in r1) holds `access_type` (device type in the
/// low 16 bits, access in the high ones), `major` and `minor`, as 32-bit words.
pub fn program(allow: &[CharDevice]) -> Vec<Insn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),        // r2 = ctx->access_type
        insn(BPF_ALU64_AND_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(BPF_LDX_MEM_W, 3, 1, 4, 0),        // r3 = ctx->major
        insn(BPF_LDX_MEM_W, 4, 1, 8, 0),        // r4 = ctx->minor
    ];
    for dev in allow {
        // Each rule: the jumps skip to the next rule; a match returns 1.
        let checks: i16 = if dev.minor.is_some() { 3 } else { 2 };
        let mut rule = vec![
            insn(BPF_JMP_JNE_K, 2, 0, checks, DEV_CHAR),
            insn(BPF_JMP_JNE_K, 3, 0, checks - 1, dev.major as i32),
        ];
        if let Some(minor) = dev.minor {
            rule.push(insn(BPF_JMP_JNE_K, 4, 0, 1, minor as i32));
        }
        // The jumps above land past these two.
        rule.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 1));
        rule.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
        // Fix the offsets: each check jumps over the rest of the checks and the 2 returns.
        let n = rule.len() as i16;
        for (i, r) in rule.iter_mut().enumerate() {
            if r.code == BPF_JMP_JNE_K {
                r.off = n - 1 - i as i16;
            }
        }
        p.extend(rule);
    }
    p.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
    p
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (fields up to `prog_name`, zero-padded).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 64],
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    rest: [u8; 64],
}

/// Load `program` into the kernel.
pub fn load(program: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"sqrx_devs");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        rest: [0; 64],
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr for BPF_PROG_LOAD whose pointers (the
    // instructions and the license) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attach the loaded device program `prog` to the cgroup (v2 directory) `cgroup`. The cgroup
/// keeps it until it is removed.
pub fn attach(prog: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> io::Result<()> {
    let attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        rest: [0; 64],
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr for BPF_PROG_ATTACH with borrowed,
    // open descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_jump_to_the_next_rule_and_the_end_denies() {
        let p = program(&[
            CharDevice {
                major: 1,
                minor: Some(3),
            },
            CharDevice {
                major: 136,
                minor: None,
            },
        ]);
        // 4 loads, rule 1: 3 checks + 2 returns, rule 2: 2 checks + 2 returns, deny: 2.
        assert_eq!(p.len(), 4 + 5 + 4 + 2);
        // Rule 1's checks all land on rule 2's first instruction (index 9).
        for i in [4, 5, 6] {
            assert_eq!(p[i].code, BPF_JMP_JNE_K);
            assert_eq!(i as i16 + 1 + p[i].off, 9, "insn {i}");
        }
        // Rule 2's checks land on the final deny (index 13).
        assert_eq!(9 + 1 + p[9].off, 13);
        assert_eq!(10 + 1 + p[10].off, 13);
        assert_eq!((p[13].code, p[13].imm), (BPF_ALU64_MOV_K, 0));
        assert_eq!(p[14].code, BPF_JMP_EXIT);
        assert_eq!((p[7].code, p[7].imm), (BPF_ALU64_MOV_K, 1));
    }
}
