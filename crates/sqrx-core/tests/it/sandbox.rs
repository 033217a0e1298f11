//! Sandboxes end to end as root: real namespaces, overlay roots, cgroups and init processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqrx_core::{
    Command, ErrorKind, ExecRequest, ExecResult, LayerName, Runtime, RuntimeConfig, Sandbox,
    SandboxError, SandboxSpec,
};
use sqrx_testkit::privileged;

/// A runtime on a fresh data dir with a base layer. Dropping it destroys every sandbox in it
/// (also when the test panics) and removes the data dir.
pub struct TestRuntime {
    pub rt: Runtime,
    pub dir: tempfile::TempDir,
}

impl TestRuntime {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sqrx-test-rt-")
            .tempdir()
            .expect("tempdir");
        let mut config = RuntimeConfig::new(dir.path());
        config.init_path = Some(PathBuf::from(env!("CARGO_BIN_EXE_sqrx-init")));
        configure(&mut config);
        let rt = Runtime::open(config).expect("open runtime");
        rt.layers().ensure_base().expect("base layer");
        TestRuntime { rt, dir }
    }

    pub fn create(&self, id: &str) -> Sandbox {
        self.rt
            .create(SandboxSpec::new(id))
            .unwrap_or_else(|e| panic!("create {id}: {e}"))
    }

    /// A store layer `name` holding `files` (relative paths and contents).
    pub fn layer_of_files(&self, name: &str, files: &[(&str, &str)]) {
        let src = tempfile::tempdir().expect("tempdir");
        for (path, content) in files {
            let p = src.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
        }
        self.rt
            .layers()
            .build_from_dir(
                &LayerName::new(name).expect("name"),
                src.path(),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("build layer {name}: {e}"));
    }

    /// A layer with Debian's python3 (for tests that need more than a shell).
    pub fn python_layer(&self) {
        let name = LayerName::new("100-py").expect("name");
        if !self.rt.layers().contains(&name) {
            self.rt
                .layers()
                .from_host(
                    &name,
                    &["/usr/bin/python3".into(), "/usr/lib/python3.11".into()],
                    &Default::default(),
                )
                .expect("python layer");
        }
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        for s in self.rt.list() {
            let id = s.id().to_string();
            // A clean-up, not a user's destroy: an ephemeral sandbox is not saved.
            if let Err(e) = s.destroy_unsaved() {
                eprintln!("cleanup of {id} failed: {e}");
            }
        }
    }
}

pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(f)
}

pub fn sh(sb: &Sandbox, cmd: &str) -> ExecResult {
    block(sb.exec(ExecRequest::new(cmd))).unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"))
}

pub fn out(sb: &Sandbox, cmd: &str) -> String {
    let r = sh(sb, cmd);
    assert_eq!(
        r.exit_code,
        Some(0),
        "{cmd}: {}{}",
        r.stdout_text(),
        r.stderr_text()
    );
    r.stdout_text()
}

#[test]
fn exec_basics_stdin_and_a_clean_env() {
    if !privileged("exec_basics_stdin_and_a_clean_env") {
        return;
    }
    // cargo sets CARGO_PKG_NAME in this test process's environment: it must not leak.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let t = TestRuntime::new();
    let sb = t.create("basics");
    let r = sh(&sb, "echo hi");
    assert_eq!(
        (r.stdout_text().as_str(), r.exit_code, r.timed_out),
        ("hi\n", Some(0), false)
    );
    assert_eq!(sh(&sb, "exit 3").exit_code, Some(3));
    let mut req = ExecRequest::new("tr a-z A-Z");
    req.stdin = Some(b"piped in\n".to_vec());
    assert_eq!(
        block(sb.exec(req)).expect("stdin").stdout_text(),
        "PIPED IN\n"
    );
    let env = out(&sb, "env");
    assert!(!env.contains("CARGO_PKG_NAME"), "{env}");
    assert!(env.contains("PATH=/usr/local/sbin"), "{env}");
    let mut req = ExecRequest::new(Command::Argv(vec![
        "sh".into(),
        "-c".into(),
        "echo $A-$PWD".into(),
    ]));
    req.env.insert("A".into(), "x".into());
    req.workdir = Some("/tmp".into());
    assert_eq!(block(sb.exec(req)).expect("argv").stdout_text(), "x-/tmp\n");
    let r = sh(&sb, "echo err >&2; kill -9 $$");
    assert_eq!((r.signal, r.stderr_text().as_str()), (Some(9), "err\n"));
    // the history has every exec, numbered
    let logs = sb.logs();
    assert_eq!(logs.len(), 6);
    assert_eq!(
        logs.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(logs[1].exit_code, Some(3));
}

#[test]
fn processes_persist_between_execs() {
    if !privileged("processes_persist_between_execs") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("persist");
    let started = Instant::now();
    sh(&sb, "sleep 300 &");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a background process must not hold the exec"
    );
    assert!(out(&sb, "ps -o comm=").lines().any(|l| l == "sleep"));
    // a server started in one exec answers a client in the next
    sh(&sb, "busybox nc -l -p 9000 -e echo served-by-sandbox &");
    let mut answer = String::new();
    for _ in 0..50 {
        answer = sh(&sb, "busybox nc 127.0.0.1 9000 </dev/null").stdout_text();
        if !answer.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answer, "served-by-sandbox\n");
}

#[test]
fn isolation() {
    if !privileged("isolation") {
        return;
    }
    let marker = tempfile::Builder::new()
        .prefix("sqrx-host-marker-")
        .tempfile()
        .expect("marker");
    let t = TestRuntime::new();
    let sb = t.create("iso");
    assert_eq!(out(&sb, "hostname"), "iso\n");
    let ps = out(&sb, "ps -e -o pid=,comm=");
    let procs: Vec<(u32, String)> = ps
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.to_string()))
        })
        .collect();
    assert_eq!(procs[0], (1, "sqrx-init".to_string()), "{ps}");
    assert!(procs.len() <= 5, "only the sandbox's processes: {ps}");
    let r = sh(&sb, &format!("test -e {}", marker.path().display()));
    assert_eq!(r.exit_code, Some(1), "host files are invisible");
    let dev = out(&sb, "ls /dev");
    for disk in [
        "vda",
        "sda",
        "nvme0n1",
        "loop0",
        "loop-control",
        "kvm",
        "mem",
    ] {
        assert!(!dev.lines().any(|l| l == disk), "/dev/{disk} inside: {dev}");
    }
    assert_eq!(out(&sb, "cat /proc/1/comm"), "sqrx-init\n");
    let net = out(&sb, "cat /proc/net/dev");
    let ifaces: Vec<&str> = net
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{net}");
    let status = out(
        &sb,
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert!(status.contains("CapEff:\t00000000000005fb"), "{status}");
    assert!(status.contains("CapBnd:\t00000000000005fb"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert_ne!(
        sh(&sb, "mount -t tmpfs none /mnt").exit_code,
        Some(0),
        "mount must fail"
    );
    assert_ne!(sh(&sb, "mount /dev/vda /mnt").exit_code, Some(0));
    assert_ne!(sh(&sb, "busybox reboot -f").exit_code, Some(0));
    assert_eq!(
        out(&sb, "hostname"),
        "iso\n",
        "still alive after reboot attempt"
    );
}

#[test]
fn dangerous_syscalls_are_refused() {
    if !privileged("dangerous_syscalls_are_refused") {
        return;
    }
    let t = TestRuntime::new();
    t.python_layer();
    let mut spec = SandboxSpec::new("sys");
    spec.layers = vec!["000-base".into(), "100-py".into()];
    let sb = t.rt.create(spec).expect("create");
    // x86_64 numbers: kexec_load 246, init_module 175, finit_module 313, bpf 321,
    // perf_event_open 298, ptrace 101, reboot 169, keyctl 250, userfaultfd 323.
    let script = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, nr, args in [("kexec_load", 246, (0, 0, 0, 0)), ("init_module", 175, (0, 0, 0)),
                       ("finit_module", 313, (0, 0, 0)), ("bpf", 321, (0, 0, 0)),
                       ("perf_event_open", 298, (0, 0, -1, -1, 0)), ("ptrace_attach_pid1", 101, (16, 1, 0, 0)),
                       ("reboot", 169, (0xfee1dead, 672274793, 0x1234567, 0)), ("keyctl", 250, (0, 0, 0, 0)),
                       ("userfaultfd", 323, (0,))]:
    rc = libc.syscall(nr, *args)
    print(name, rc, os.strerror(ctypes.get_errno()) if rc < 0 else "")
"#;
    let mut req = ExecRequest::new(Command::Argv(vec![
        "python3".into(),
        "-c".into(),
        script.into(),
    ]));
    req.timeout = Some(Duration::from_secs(20));
    let r = block(sb.exec(req)).expect("python");
    let text = r.stdout_text();
    assert_eq!(r.exit_code, Some(0), "{text}{}", r.stderr_text());
    for line in text.lines() {
        assert!(line.contains(" -1 "), "{line} should fail");
        assert!(line.contains("Operation not permitted"), "{line}");
    }
    assert_eq!(text.lines().count(), 9, "{text}");
}

fn pids_current(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("pids.current"))
        .expect("pids.current")
        .trim()
        .parse()
        .expect("number")
}

#[test]
fn limits_memory_pids_cpu_and_disk() {
    if !privileged("limits_memory_pids_cpu_and_disk") {
        return;
    }
    let t = TestRuntime::new();
    t.python_layer();
    let mut spec = SandboxSpec::new("lim");
    spec.layers = vec!["000-base".into(), "100-py".into()];
    spec.memory_mb = Some(64);
    spec.pids_max = Some(40);
    spec.cpu = Some(0.5);
    spec.upper_mb = 16;
    let sb = t.rt.create(spec).expect("create");

    let r = sh(&sb, "python3 -c 'b = bytearray(300 << 20); print(len(b))'");
    assert!(r.oom_killed, "300 MB in a 64 MB sandbox: {r:?}");
    assert!(r.signal == Some(9) || r.exit_code == Some(137), "{r:?}");
    assert!(
        !sh(&sb, "python3 -c 'b = bytearray(8 << 20)'").oom_killed,
        "small allocations still work"
    );

    // A fork bomb: the cgroup caps it and counts the refused forks.
    let bomb = block(sb.spawn(ExecRequest::new(
        "for i in $(seq 200); do sleep 30 & done; wait",
    )))
    .expect("spawn bomb");
    std::thread::sleep(Duration::from_millis(1500));
    let pids_dir = cgroup_dirs("lim")
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
        .expect("pids cgroup");
    let current = pids_current(&pids_dir);
    assert!(current <= 40, "pids_max 40 but {current} tasks");
    let events = std::fs::read_to_string(pids_dir.join("pids.events")).expect("pids.events");
    assert!(
        !events.contains("max 0"),
        "the limit was never hit: {events}"
    );
    let started = Instant::now();
    let host = std::process::Command::new("true")
        .status()
        .expect("host still forks");
    assert!(host.success() && started.elapsed() < Duration::from_secs(1));
    block(bomb.kill(9)).expect("kill bomb");
    let _ = block(bomb.wait());
    // The shell is reaped first; its orphaned `sleep`s are reaped by init right after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids_current(&pids_dir) > 3 {
        assert!(
            Instant::now() < deadline,
            "the bomb's processes outlived kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let busy = "import time\ns=time.time(); c=time.process_time()\nwhile time.time()-s < 2: pass\nprint(time.process_time()-c)";
    let r = block(sb.exec(ExecRequest::new(Command::Argv(vec![
        "python3".into(),
        "-c".into(),
        busy.into(),
    ]))))
    .expect("busy");
    let cpu: f64 = r.stdout_text().trim().parse().unwrap_or(-1.0);
    assert!(
        (0.75..=1.25).contains(&cpu),
        "cpu 0.5 for 2 s should give ~1 s of CPU, got {cpu}"
    );

    let r = sh(&sb, "head -c 32000000 /dev/zero > /tmp/big");
    assert_ne!(r.exit_code, Some(0));
    assert!(
        r.stderr_text().contains("No space left on device"),
        "{}",
        r.stderr_text()
    );
}

#[test]
fn a_limit_that_cannot_be_applied_fails_create() {
    if !privileged("a_limit_that_cannot_be_applied_fails_create") {
        return;
    }
    // A v1 layout without a cpu hierarchy.
    let fake = tempfile::tempdir().expect("tempdir");
    for c in ["memory", "pids", "freezer"] {
        std::fs::create_dir_all(fake.path().join(c)).expect("mkdir");
    }
    let t = TestRuntime::with(|c| {
        c.cgroups = Some(sqrx_core::cgroup::CgroupRoot::new(
            sqrx_core::cgroup::CgroupVersion::V1,
            fake.path(),
        ))
    });
    let mut spec = SandboxSpec::new("nocpu");
    spec.cpu = Some(1.0);
    let e = t.rt.create(spec).expect_err("no cpu controller");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("cpu"), "{e}");
    assert!(t.rt.list().is_empty());
    assert!(
        !t.dir.path().join("sandboxes/nocpu").exists(),
        "rolled back"
    );
    assert_no_layer_mounts(t.dir.path());
}

#[test]
fn timeouts_kill_the_whole_exec() {
    if !privileged("timeouts_kill_the_whole_exec") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("timeout");
    let mut req = ExecRequest::new("sleep 100 & sleep 100; wait");
    req.timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let r = block(sb.exec(req)).expect("exec");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(r.timed_out);
    assert_eq!(out(&sb, "ps -e -o comm= | grep -c sleep || true"), "0\n");
}

#[test]
fn output_is_capped_and_drained() {
    if !privileged("output_is_capped_and_drained") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("cap");
    let mut req = ExecRequest::new("head -c 5000000 /dev/zero; echo done >&2");
    req.output_cap = Some(1000);
    let r = block(sb.exec(req)).expect("exec");
    assert_eq!(r.stdout.len(), 1000);
    assert!(r.truncated);
    assert_eq!(
        r.exit_code,
        Some(0),
        "the writer was drained, not killed by SIGPIPE"
    );
    assert_eq!(r.stderr_text(), "done\n");
}

fn assert_no_layer_mounts(data: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let data = data.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&data)),
        "mounts left under {data}"
    );
    assert!(
        sqrx_testkit::loop_devices_backed_by(&data).is_empty(),
        "loop devices left for {data}"
    );
}

/// The sqrx cgroup directories of the sandbox `id`, in every controller.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "cpu", "pids", "freezer", "cpuacct"]
        .iter()
        .filter_map(|c| std::fs::read_dir(Path::new("/sys/fs/cgroup").join(c).join("sqrx")).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-")))
        })
        .collect()
}

#[test]
fn destroy_leaves_nothing_behind() {
    if !privileged("destroy_leaves_nothing_behind") {
        return;
    }
    let t = TestRuntime::new();
    let a = t.create("leak-a");
    let b = t.create("leak-b");
    sh(&a, "sleep 1000 &");
    assert!(!cgroup_dirs("leak-a").is_empty());
    a.destroy().expect("destroy a");
    assert!(cgroup_dirs("leak-a").is_empty());
    assert!(!t.dir.path().join("sandboxes/leak-a").exists());
    // the shared base layer mount stays while b uses it
    assert_eq!(out(&b, "echo still"), "still\n");
    b.destroy().expect("destroy b");
    assert_no_layer_mounts(t.dir.path());
    assert!(matches!(
        t.rt.get("leak-a"),
        Err(SandboxError::NotFound { .. })
    ));
}

#[test]
fn sandboxes_survive_their_creator_and_dead_inits_are_cleaned_up() {
    if !privileged("sandboxes_survive_their_creator_and_dead_inits_are_cleaned_up") {
        return;
    }
    let t = TestRuntime::new();
    // A separate process creates the sandbox and is then killed with SIGKILL.
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_sqrx-init")).with_file_name("sqrx");
    if !cli.exists() {
        panic!(
            "{} missing: build the workspace (cargo build) before the tests",
            cli.display()
        );
    }
    let mut creator = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "SQRX_INIT={} {} --data-dir {} sandbox create orphan && exec sleep 60",
            env!("CARGO_BIN_EXE_sqrx-init"),
            cli.display(),
            t.dir.path().display()
        ))
        .spawn()
        .expect("spawn creator");
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.rt.get("orphan").is_err() {
        assert!(Instant::now() < deadline, "creator never made the sandbox");
        std::thread::sleep(Duration::from_millis(20));
    }
    creator.kill().expect("kill -9 creator");
    let _ = creator.wait();
    let rt2 = Runtime::open({
        let mut c = RuntimeConfig::new(t.dir.path());
        c.init_path = Some(PathBuf::from(env!("CARGO_BIN_EXE_sqrx-init")));
        c
    })
    .expect("reopen");
    assert_eq!(
        rt2.list()
            .iter()
            .map(|s| s.id().to_string())
            .collect::<Vec<_>>(),
        ["orphan"]
    );
    let sb = rt2.get("orphan").expect("get");
    assert_eq!(out(&sb, "echo alive"), "alive\n");

    // kill -9 of the sandbox's init: reported dead and cleaned up
    let pid = sb.info().init_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rt2.get("orphan") {
            Err(SandboxError::Dead { .. }) => break,
            Err(SandboxError::NotFound { .. }) => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "init death not noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!t.dir.path().join("sandboxes/orphan").exists());
    assert!(cgroup_dirs("orphan").is_empty());
    assert_no_layer_mounts(t.dir.path());
}

#[test]
fn many_sandboxes_concurrently_and_the_limit() {
    if !privileged("many_sandboxes_concurrently_and_the_limit") {
        return;
    }
    let t = TestRuntime::with(|c| c.max_sandboxes = 60);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let rt = t.rt.clone();
                s.spawn(move || {
                    let sb = rt.create(SandboxSpec::new(format!("many-{i}")))?;
                    let r = block(sb.exec(ExecRequest::new("echo $HOSTNAME")))?;
                    assert_eq!(r.stdout_text(), format!("many-{i}\n"));
                    sb.destroy()
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread").expect("create/exec/destroy");
        }
    });
    assert!(t.rt.list().is_empty());
    assert_no_layer_mounts(t.dir.path());

    let small = TestRuntime::with(|c| c.max_sandboxes = 3);
    for i in 0..3 {
        small.create(&format!("slot-{i}"));
    }
    let e = small
        .rt
        .create(SandboxSpec::new("slot-3"))
        .expect_err("over the limit");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert_eq!(RuntimeConfig::new("/x").max_sandboxes, 100, "default limit");
}

#[test]
fn bad_input_is_typed() {
    if !privileged("bad_input_is_typed") {
        return;
    }
    let t = TestRuntime::new();
    let kind = |r: Result<Sandbox, SandboxError>| r.map(|_| ()).expect_err("must fail").kind();
    assert_eq!(
        kind(t.rt.create(SandboxSpec::new("bad id!"))),
        ErrorKind::InvalidArgument
    );
    let mut spec = SandboxSpec::new("nolayer");
    spec.layers = vec!["000-base".into(), "555-missing".into()];
    let e = t.rt.create(spec).map(|_| ()).expect_err("unknown layer");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("555-missing"), "{e}");
    assert!(!t.dir.path().join("sandboxes/nolayer").exists());
    let sb = t.create("dup");
    assert_eq!(
        kind(t.rt.create(SandboxSpec::new("dup"))),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind(t.rt.get("missing")), ErrorKind::NotFound);
    let e = block(sb.exec(ExecRequest::new(""))).expect_err("empty");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = block(sb.exec(ExecRequest::new(Command::Argv(vec![
        "no-such-program".into(),
    ]))))
    .expect_err("missing program");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let mut req = ExecRequest::new("true");
    req.workdir = Some("/no/such/dir".into());
    assert_eq!(
        block(sb.exec(req)).expect_err("bad workdir").kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn spawn_wait_and_kill() {
    if !privileged("spawn_wait_and_kill") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("spawn");
    let h = block(sb.spawn(ExecRequest::new("sleep 0.2; exit 7"))).expect("spawn");
    assert!(h.pid > 1);
    assert_eq!(block(h.wait()).expect("wait"), (Some(7), None));
    let h = block(sb.spawn(ExecRequest::new("sleep 100"))).expect("spawn");
    // A wait that gives up is a Timeout and leaves the process waitable.
    let e = block(h.wait_timeout(Duration::from_millis(100))).expect_err("still running");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    block(h.kill(15)).expect("kill");
    assert_eq!(block(h.wait()).expect("wait").1, Some(15));
    let h = block(sb.spawn(ExecRequest::new("exit 3"))).expect("spawn");
    assert_eq!(
        block(h.wait_timeout(Duration::from_secs(5))).expect("in time"),
        (Some(3), None)
    );
}

#[test]
fn exec_stream_delivers_chunks_in_order() {
    if !privileged("exec_stream_delivers_chunks_in_order") {
        return;
    }
    use sqrx_core::ExecEvent;
    let t = TestRuntime::new();
    let sb = t.create("stream");
    let events = block(async {
        let mut s = sb
            .exec_stream(ExecRequest::new(
                "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c",
            ))
            .await
            .expect("stream");
        let mut events = Vec::new();
        while let Some(e) = s.next().await {
            events.push(e.expect("event"));
        }
        events
    });
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            ExecEvent::Stdout(d) => format!("out:{}", String::from_utf8_lossy(d)),
            ExecEvent::Stderr(d) => format!("err:{}", String::from_utf8_lossy(d)),
            ExecEvent::Exit(r) => format!("exit:{:?}", r.exit_code),
        })
        .collect();
    assert_eq!(kinds, ["out:a\n", "err:b\n", "out:c\n", "exit:Some(0)"]);
}

#[test]
fn the_reaper_destroys_expired_sandboxes() {
    if !privileged("the_reaper_destroys_expired_sandboxes") {
        return;
    }
    let t = TestRuntime::new();
    let mut spec = SandboxSpec::new("short");
    spec.max_lifetime = 1;
    t.rt.create(spec).expect("create");
    t.create("long");
    assert!(t.rt.reap().is_empty(), "nothing expired yet");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(t.rt.reap(), ["short"]);
    assert_eq!(
        t.rt.list()
            .iter()
            .map(|s| s.id().to_string())
            .collect::<Vec<_>>(),
        ["long"]
    );
    assert!(cgroup_dirs("short").is_empty());
}

#[test]
fn dropping_an_exec_stream_kills_the_exec() {
    if !privileged("dropping_an_exec_stream_kills_the_exec") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("drop");
    block(async {
        let s = sb
            .exec_stream(ExecRequest::new("sleep 100"))
            .await
            .expect("stream");
        drop(s);
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = out(&sb, "ps -e -o comm= | grep -c '^sleep$' || true");
        if n == "0\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sleep still running after the stream was dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dropping_a_silent_exec_stream_kills_the_exec_while_the_runtime_lives_on() {
    if !privileged("dropping_a_silent_exec_stream_kills_the_exec_while_the_runtime_lives_on") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("drop-live");
    // One runtime for the whole test, as in a long-lived host: the stream's reader task is
    // not torn down with the runtime, so only the dropped stream can end the exec.
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        let s = sb
            .exec_stream(ExecRequest::new("exec sleep 100"))
            .await
            .expect("stream");
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let r = sb
                .exec(ExecRequest::new(
                    "ps -e -o comm= | grep -c '^sleep$' || true",
                ))
                .await
                .expect("ps");
            if r.stdout == b"0\n" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep still running after the stream was dropped"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// CPU time (user + system ticks) of every process in the sandbox's freezer cgroup.
fn cpu_ticks(id: &str) -> u64 {
    let procs = cgroup_dirs(id)
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/freezer"))
        .expect("freezer cgroup");
    std::fs::read_to_string(procs.join("cgroup.procs"))
        .expect("procs")
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .filter_map(|stat| {
            let rest = stat[stat.rfind(')')? + 2..].to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

#[test]
fn pause_stops_everything_and_resume_continues() {
    if !privileged("pause_stops_everything_and_resume_continues") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("pause");
    sh(
        &sb,
        // Appended, never truncated: a read never catches the file empty (under load, a
        // truncating writer preempted between truncate and write made twenty reads in a row
        // see nothing).
        "i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; done &",
    );
    std::thread::sleep(Duration::from_millis(200));
    sb.pause().expect("pause");
    assert!(sb.is_paused());
    assert_eq!(t.rt.get("pause").expect("get").info().status, "paused");
    // The counter stands still while paused (the files API works on a paused sandbox).
    let read = || String::from_utf8(sb.read_file("/tmp/count").expect("read")).expect("utf8");
    let frozen = read();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(), frozen, "the counter advanced while paused");
    let e = block(sb.exec(ExecRequest::new("true"))).expect_err("paused");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let before = cpu_ticks("pause");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        cpu_ticks("pause") <= before + 1,
        "a paused sandbox used CPU"
    );
    sb.resume().expect("resume");
    let count = || -> u64 {
        let text = out(&sb, "tail -n 1 /tmp/count");
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a count, not {text:?}"))
    };
    let a = count();
    std::thread::sleep(Duration::from_millis(200));
    let b = count();
    assert!(b > a, "the loop continues after resume ({a} -> {b})");
    // a paused sandbox can still be destroyed
    sb.pause().expect("pause again");
    let id = sb.id().to_string();
    sb.destroy().expect("destroy paused");
    assert!(cgroup_dirs(&id).is_empty());
}

#[test]
fn stats_come_from_the_real_cgroup() {
    if !privileged("stats_come_from_the_real_cgroup") {
        return;
    }
    let t = TestRuntime::new();
    let mut spec = SandboxSpec::new("stats");
    spec.memory_mb = Some(128);
    let sb = t.rt.create(spec).expect("create");
    let before = sb.stats().expect("stats");
    assert_eq!(before.memory_limit_bytes, Some(128 << 20));
    assert!(before.pids >= 1, "init is in the cgroup: {before:?}");
    // Burn some CPU and hold some memory: both show up.
    sh(
        &sb,
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 8000000 /dev/zero > /tmp/blob",
    );
    let after = sb.stats().expect("stats");
    assert!(
        after.cpu_usage_usec > before.cpu_usage_usec + 10_000,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.memory_bytes >= 8_000_000,
        "the tmpfs blob is charged: {after:?}"
    );
    sb.pause().expect("pause");
    sb.stats().expect("stats while paused");
    sb.resume().expect("resume");
    let id = sb.id().to_string();
    sb.destroy().expect("destroy");
    assert!(cgroup_dirs(&id).is_empty());
}

#[test]
fn files_are_resolved_inside_the_sandbox() {
    if !privileged("files_are_resolved_inside_the_sandbox") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("files");
    sb.write_file("/data/deep/a.txt", b"hello files", 0o640)
        .expect("write");
    assert_eq!(
        out(&sb, "cat /data/deep/a.txt; stat -c %a /data/deep/a.txt"),
        "hello files640\n"
    );
    assert_eq!(
        sb.read_file("/data/deep/../deep/a.txt").expect("read"),
        b"hello files"
    );
    let st = sb.stat("/data/deep/a.txt").expect("stat");
    assert_eq!(
        (st.kind, st.size, st.mode, st.name.as_str()),
        ("file", 11, 0o640, "a.txt")
    );
    sb.mkdir("/data/empty/dir").expect("mkdir");
    let names: Vec<String> = sb
        .list("/data")
        .expect("list")
        .into_iter()
        .map(|f| format!("{}:{}", f.name, f.kind))
        .collect();
    assert_eq!(names, ["deep:dir", "empty:dir"]);

    // Symlinks resolve inside the sandbox: /etc/hostname here is the base layer's, not the host's.
    sh(
        &sb,
        "ln -s /etc /tmp/etc-link; ln -s ../../../../../../etc/hostname /tmp/climb; ln -s /proc/1/root /tmp/magic",
    );
    assert_eq!(
        sb.read_file("/tmp/etc-link/hostname").expect("abs link"),
        b"sqrx\n"
    );
    assert_eq!(
        sb.read_file("/tmp/climb").expect("relative climb"),
        b"sqrx\n"
    );
    assert!(
        sb.read_file("/tmp/magic/etc/hostname").is_err(),
        "magic links are refused"
    );
    // Writing through a symlink in the last component is refused.
    sh(&sb, "ln -s /etc/passwd /tmp/passwd-link");
    assert!(sb.write_file("/tmp/passwd-link", b"x", 0o644).is_err());
    assert!(out(&sb, "cat /etc/passwd").starts_with("root:"));

    let e = sb.read_file("/no/such/file").expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        sb.read_file("relative").expect_err("relative").kind(),
        ErrorKind::InvalidArgument
    );
    sb.remove("/data", true).expect("remove tree");
    assert_eq!(sh(&sb, "test -e /data").exit_code, Some(1));
}

/// A stand-in init program running the shell `script` (in a temporary directory that lives as
/// long as the returned guard).
fn fake_init(script: &str) -> (tempfile::TempDir, PathBuf) {
    let bin = tempfile::Builder::new()
        .prefix("sqrx-test-badinit-")
        .tempdir()
        .expect("tempdir");
    let path = bin.path().join("bad-init");
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).expect("write script");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    (bin, path)
}

#[test]
fn an_init_that_dies_before_it_is_ready_fails_the_create_at_once() {
    if !privileged("an_init_that_dies_before_it_is_ready_fails_the_create_at_once") {
        return;
    }
    // An "init" that reports the pid of a process it leaves behind, as the real launcher does
    // (a `forked` startup status), then exits without any server to say it is ready.
    let (_bin, script) = fake_init(
        r#"read config
sleep 60 </dev/null >/dev/null 2>&1 &
echo "{\"status\":\"forked\",\"pid\":$!}"
echo 'bad-init: no root for you' >&2
exit 0
"#,
    );
    let t = TestRuntime::with(|c| c.init_path = Some(script.clone()));
    let started = Instant::now();
    let e =
        t.rt.create(SandboxSpec::new("badinit"))
            .expect_err("an init that never gets ready");
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(e.to_string().contains("no root for you"), "{e}");
    // The pipe's end says it, not the 10 s deadline.
    assert!(took < Duration::from_secs(3), "the failure took {took:?}");
    assert!(t.rt.list().is_empty(), "a failed create left a sandbox");
}

#[test]
fn an_init_that_reports_missing_isolation_fails_create_with_isolation_unsupported() {
    if !privileged("an_init_that_reports_missing_isolation_fails_create_with_isolation_unsupported")
    {
        return;
    }
    // The typed startup status decides, not what the log says.
    let (_bin, script) = fake_init(
        r#"read config
echo '{"status":"failed","kind":"isolation_unsupported","message":"no idmapped mounts here"}'
echo 'bad-init: nothing to grep for' >&2
exit 1
"#,
    );
    let t = TestRuntime::with(|c| c.init_path = Some(script.clone()));
    let e =
        t.rt.create(SandboxSpec::new("noiso"))
            .expect_err("an init that cannot isolate");
    assert!(
        matches!(&e, SandboxError::IsolationUnsupported { reason, .. } if reason == "no idmapped mounts here"),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(t.rt.list().is_empty(), "a failed create left a sandbox");
}

/// Every init of a sandbox gets a control socket of its own: an init that a killed host left
/// starting (it binds its socket before the host lets it serve) can never take the socket of
/// the init that replaced it. Old sockets are removed.
#[test]
fn every_init_has_a_control_socket_of_its_own() {
    if !sqrx_testkit::privileged("every_init_has_a_control_socket_of_its_own") {
        return;
    }
    let t = TestRuntime::new();
    let mut sb = t.create("sockets");
    let sockets = |sb: &Sandbox| -> Vec<String> {
        let dir = t.dir.path().join("sandboxes").join(sb.id());
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("sandbox dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sock"))
            .collect();
        v.sort();
        v
    };
    let first = sockets(&sb);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("c-"), "{first:?}");
    sb.snapshot(Some("s")).expect("snapshot");
    sb.restore("s").expect("restore");
    let second = sockets(&sb);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second);
    assert_eq!(out(&sb, "echo ok"), "ok\n");
    // A stale socket file (an init a killed host left behind) is not the sandbox's and goes
    // at the next recovery.
    let stale = t.dir.path().join("sandboxes/sockets/c-00000000.sock");
    std::os::unix::net::UnixListener::bind(&stale).expect("a stale socket");
    let rt = Runtime::open({
        let mut c = RuntimeConfig::new(t.dir.path());
        c.init_path = Some(PathBuf::from(env!("CARGO_BIN_EXE_sqrx-init")));
        c
    })
    .expect("reopen");
    let again = rt.get("sockets").expect("get");
    assert_eq!(sockets(&again), second);
    assert_eq!(out(&again, "echo ok"), "ok\n");
}
