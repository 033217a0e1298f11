//! Execs as users of a sandbox's own `/etc/passwd`, files written for them, and sandboxes whose
//! setuid programs work (E2B's base image: `user` with passwordless `sudo`). The attacks: a
//! setuid program must gain nothing in an ordinary sandbox, and in a setuid sandbox nothing
//! beyond the sandbox's own root (an unprivileged host uid, capabilities bounded, seccomp on).

use sqrx_core::{BootstrapPreset, ErrorKind, ExecRequest, ExecResult, Sandbox, SandboxSpec};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, block};

/// A runtime whose store has the e2b preset's layer.
fn e2b_runtime() -> TestRuntime {
    let t = TestRuntime::new();
    t.rt.layers()
        .ensure_preset(&BootstrapPreset::E2b)
        .expect("the e2b preset (needs sudo and python3 on the host: scripts/deps.sh)");
    t
}

fn e2b_sandbox(t: &TestRuntime, id: &str, setuid: bool) -> Sandbox {
    let mut spec = SandboxSpec::new(id);
    spec.layers = vec![
        sqrx_core::layer::BASE_LAYER.into(),
        sqrx_core::layer::E2B_LAYER.into(),
    ];
    spec.setuid = setuid;
    t.rt.create(spec)
        .unwrap_or_else(|e| panic!("create {id}: {e}"))
}

fn run_as(sb: &Sandbox, user: Option<&str>, cmd: &str) -> ExecResult {
    let mut req = ExecRequest::new(cmd);
    req.user = user.map(str::to_string);
    block(sb.exec(req)).unwrap_or_else(|e| panic!("exec {cmd:?} as {user:?}: {e}"))
}

fn ok_as(sb: &Sandbox, user: Option<&str>, cmd: &str) -> String {
    let r = run_as(sb, user, cmd);
    assert_eq!(
        r.exit_code,
        Some(0),
        "{cmd} as {user:?}: {}{}",
        r.stdout_text(),
        r.stderr_text()
    );
    r.stdout_text()
}

#[test]
fn execs_run_as_a_named_user_with_its_groups_home_and_files() {
    if !privileged("execs_run_as_a_named_user_with_its_groups_home_and_files") {
        return;
    }
    let t = e2b_runtime();
    let sb = e2b_sandbox(&t, "users-exec", false);
    let me = Some("user");
    assert_eq!(
        ok_as(
            &sb,
            me,
            "id -u; id -g; id -G; pwd; echo $HOME $USER $LOGNAME"
        ),
        "1000\n1000\n1000 27\n/home/user\n/home/user user user\n"
    );
    // By uid too; the same identity.
    assert_eq!(
        ok_as(&sb, Some("1000"), "id -un; pwd"),
        "user\n/home/user\n"
    );
    // A file the user makes is the user's; the root's home is closed to it.
    assert_eq!(
        ok_as(&sb, me, "touch mine && stat -c '%U %G %a' mine"),
        "user user 644\n"
    );
    let denied = run_as(&sb, me, "touch /root/x");
    assert_ne!(denied.exit_code, Some(0), "{}", denied.stdout_text());
    assert!(
        denied.stderr_text().contains("Permission denied"),
        "{}",
        denied.stderr_text()
    );
    // An explicit workdir and environment win over the account's.
    let mut req = ExecRequest::new("pwd; echo $HOME");
    req.user = Some("user".into());
    req.workdir = Some("/tmp".into());
    req.env.insert("HOME".into(), "/elsewhere".into());
    let r = block(sb.exec(req)).expect("exec");
    assert_eq!(r.stdout_text(), "/tmp\n/elsewhere\n");
    // root by name; no user: root in /, as before.
    assert_eq!(ok_as(&sb, Some("root"), "id -u; pwd"), "0\n/root\n");
    assert_eq!(ok_as(&sb, None, "id -u; pwd; echo $HOME"), "0\n/\n/root\n");
    // A user the sandbox does not have is an error naming it, not a root exec.
    let mut req = ExecRequest::new("id -u");
    req.user = Some("mallory".into());
    let e = block(sb.exec(req)).expect_err("unknown user");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("mallory"), "{e}");
    let mut req = ExecRequest::new("true");
    req.user = Some("a:b".into());
    let e = block(sb.exec(req)).expect_err("bad user");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // A terminal as the user.
    block(async {
        let mut req = ExecRequest::new(sqrx_core::Command::Argv(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo uid=$(id -u) at $(pwd)".into(),
        ]));
        req.user = Some("user".into());
        let (mut events, _input, _pid) = sb.exec_pty(req, 80, 24).await.expect("pty");
        let mut screen = String::new();
        while let Some(event) = events.recv().await {
            match event.expect("pty event") {
                sqrx_core::ExecEvent::Stdout(b) => screen.push_str(&String::from_utf8_lossy(&b)),
                sqrx_core::ExecEvent::Exit(_) => break,
                sqrx_core::ExecEvent::Stderr(_) => {}
            }
        }
        assert!(screen.contains("uid=1000 at /home/user"), "{screen:?}");
    });

    // Host-side writes for the user: owned by it, parents too.
    let account = sb.account("user").expect("account");
    assert_eq!(
        (account.uid, account.gid, account.home.as_str()),
        (1000, 1000, "/home/user")
    );
    let theirs = sb.files_owned_by(&account);
    theirs
        .write_file("/home/user/new/dir/f.txt", b"hi", 0o644)
        .expect("write as user");
    let st = sb.stat("/home/user/new/dir/f.txt").expect("stat");
    assert_eq!((st.uid, st.gid), (1000, 1000));
    assert_eq!(sb.stat("/home/user/new").expect("stat").uid, 1000);
    assert_eq!(
        ok_as(&sb, me, "echo more >> new/dir/f.txt && cat new/dir/f.txt"),
        "himore\n"
    );
    sb.write_file("/home/user/roots.txt", b"r", 0o644)
        .expect("write as root");
    assert_eq!(sb.stat("/home/user/roots.txt").expect("stat").uid, 0);
    assert_eq!(
        sb.account("nobody-here").expect_err("no such user").kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn setuid_programs_gain_nothing_in_an_ordinary_sandbox() {
    if !privileged("setuid_programs_gain_nothing_in_an_ordinary_sandbox") {
        return;
    }
    let t = e2b_runtime();
    let sb = e2b_sandbox(&t, "users-nosuid", false);
    let r = run_as(&sb, Some("user"), "sudo -n id -u");
    assert_ne!(r.exit_code, Some(0), "sudo worked: {}", r.stdout_text());
    assert!(!r.stdout_text().contains('0'), "{}", r.stdout_text());
    assert!(
        r.stderr_text().contains("no new privileges"),
        "{}",
        r.stderr_text()
    );
    assert!(
        ok_as(&sb, Some("user"), "grep NoNewPrivs /proc/self/status").contains('1'),
        "no_new_privs is off"
    );
}

#[test]
fn a_setuid_sandbox_gains_only_its_own_root() {
    if !privileged("a_setuid_sandbox_gains_only_its_own_root") {
        return;
    }
    let t = e2b_runtime();
    let sb = e2b_sandbox(&t, "users-suid", true);
    let user = Some("user");
    // sudo works without a password, and without warnings (the hostname resolves).
    let r = run_as(&sb, user, "sudo -n id -u");
    assert_eq!((r.exit_code, r.stdout_text().as_str()), (Some(0), "0\n"));
    assert_eq!(r.stderr_text(), "");
    // What sudo gives is exactly what a root exec has: the same bounded capabilities, seccomp
    // filter on, the same unprivileged host range.
    let status = "grep -E '^(CapBnd|CapEff|Seccomp):' /proc/self/status; cat /proc/self/uid_map";
    let via_sudo = ok_as(&sb, user, &format!("sudo -n sh -c \"{status}\""));
    let as_root = ok_as(&sb, None, status);
    assert_eq!(via_sudo, as_root);
    assert!(via_sudo.contains("Seccomp:\t2"), "{via_sudo}");
    let host_base: u64 = via_sudo
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|b| b.parse().ok())
        .expect("uid_map");
    assert!(host_base >= 1 << 30, "sandbox root is host uid {host_base}");
    // The host's core_pattern stays the host's.
    let before = std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern");
    let w = run_as(
        &sb,
        user,
        "sudo -n sh -c 'echo \"|/tmp/pwn\" > /proc/sys/kernel/core_pattern'",
    );
    assert_ne!(w.exit_code, Some(0), "wrote core_pattern");
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern"),
        before
    );
    // Mounting stays refused (seccomp and the missing CAP_SYS_ADMIN).
    let m = run_as(&sb, user, "sudo -n mount -t tmpfs none /mnt");
    assert_ne!(m.exit_code, Some(0), "mounted: {}", m.stdout_text());

    // With host-root isolation a setuid sandbox would hand out the host's root: refused.
    let host_root = TestRuntime::with(|c| c.isolation = sqrx_core::sandbox::Isolation::HostRoot);
    let mut spec = SandboxSpec::new("users-suid-hostroot");
    spec.setuid = true;
    let e = host_root
        .rt
        .create(spec)
        .expect_err("setuid with host-root");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(host_root.rt.list().is_empty());
}
