//! The escape suite: attacks on the host from inside a sandbox (the `sqrx-probe` program of
//! sqrx-testkit, run as the sandbox's root) and through the host-side files API, plus the id
//! mapping of root in a sandbox across every operation that moves files.
//!
//! `SQRX_PROBE_REPORT=FILE` (used by `scripts/weakened-probes.sh` with a deliberately weakened
//! build, see docs/security.md) creates the probe sandbox without limits, appends each probe's
//! verdict to FILE and asserts nothing: the script checks that every probe escapes under some
//! weakening, which shows each one can fail.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use sqrx_core::{ErrorKind, ExecRequest, Sandbox, SandboxSpec};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, out, sh};

/// The probe program, built by cargo next to the test binary's directory.
fn probe_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/it-<hash> -> target/<profile>/sqrx-probe
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("sqrx-probe"))
        .expect("target dir");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "sqrx-testkit", "--bin", "sqrx-probe"])
            .status()
            .expect("run cargo build for sqrx-probe");
        assert!(status.success(), "cannot build sqrx-probe");
    }
    assert!(bin.is_file(), "no sqrx-probe at {}", bin.display());
    bin
}

/// Where a weakened run reports verdicts instead of asserting them.
fn report_file() -> Option<PathBuf> {
    std::env::var_os("SQRX_PROBE_REPORT").map(PathBuf::from)
}

/// A runtime with the probe layer, and a sandbox on it with small limits.
struct ProbeBed {
    t: TestRuntime,
    probe: PathBuf,
}

const PIDS: u64 = 64;
const MEMORY_MB: u64 = 64;
const UPPER_MB: u64 = 32;

impl ProbeBed {
    fn new() -> Self {
        let t = TestRuntime::new();
        let probe = probe_program();
        let name = crate::name("100-probe");
        t.rt.layers()
            .from_host(&name, std::slice::from_ref(&probe), &Default::default())
            .expect("probe layer");
        ProbeBed { t, probe }
    }

    fn sandbox(&self, id: &str) -> Sandbox {
        let mut spec = SandboxSpec::new(id);
        spec.layers = vec!["000-base".into(), "100-probe".into()];
        if report_file().is_none() {
            spec.memory_mb = Some(MEMORY_MB);
            spec.pids_max = Some(PIDS);
            spec.upper_mb = UPPER_MB;
        } else {
            spec.pids_max = Some(100_000);
            spec.upper_mb = 1024;
        }
        self.t.rt.create(spec).expect("create probe sandbox")
    }

    /// Run probe `name` with `arg`; `Err` with its report when the verdict is not the expected
    /// one.
    fn run(&self, sb: &Sandbox, name: &str, arg: &str) -> Result<String, String> {
        let cmd = format!("{} {name} '{arg}'", self.probe.display());
        // A probe that stopped or killed the control server must fail, not hang the suite.
        let r = crate::sandbox::block(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                sb.exec(ExecRequest::new(cmd.as_str())),
            )
            .await
        });
        let r = match r {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("{name}: exec failed: {e}")),
            Err(_) => return Err(format!("{name}: no answer within 60 s")),
        };
        let text = format!("{}{}", r.stdout_text(), r.stderr_text())
            .trim()
            .to_string();
        if let Some(report) = report_file() {
            let line = format!("{name} {}\n", text.split(':').next().unwrap_or("error"));
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(report)
                .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
            return Ok(format!("{name}: {text}"));
        }
        if r.exit_code == Some(0) && (text.starts_with("blocked") || text.starts_with("n/a")) {
            Ok(format!("{name}: {text}"))
        } else {
            Err(format!("{name} (exit {:?}): {text}", r.exit_code))
        }
    }
}

#[test]
fn no_probe_escapes_a_sandbox() {
    if !privileged("no_probe_escapes_a_sandbox") {
        return;
    }
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern");
    // A descriptor the embedding process leaks without O_CLOEXEC while it creates the sandbox.
    let leaked = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open a leaky descriptor");
    let bed = ProbeBed::new();
    let sb = bed.sandbox("probe");
    drop(leaked);
    // A second sandbox with a marked process and a file: the first must reach neither.
    let other = bed.sandbox("other");
    sh(&other, "echo secret > /tmp/other-secret");
    // The shell stays (its last command is not sleep), holding the marker on its command line.
    block_on_spawn(&other, "sleep 600; : sqrx-marker-other");
    assert!(
        out(&other, "ps -e -o args=").contains("sqrx-marker-other"),
        "the marked process runs in its own sandbox"
    );
    let host_secret = bed.t.dir.path().join("host-secret");
    std::fs::write(&host_secret, "host").expect("host secret");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port().to_string();
    let abstract_name = format!("sqrx-probe-{}", std::process::id());
    let _unix = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract addr");
        std::os::unix::net::UnixListener::bind_addr(&addr).expect("abstract listen")
    };
    let data_dir = bed.t.dir.path().display().to_string();

    let listed = out(&sb, &format!("{} list", bed.probe.display()));
    let with_arg: Vec<(&str, String)> = vec![
        ("mountinfo-host-paths", data_dir),
        ("host-loopback", port),
        ("abstract-unix", abstract_name),
        ("read-host-path", host_secret.display().to_string()),
        // Reversed: the marker itself must not be on the probe's own command line.
        ("see-process", "rehto-rekram-xrqs".into()),
        ("pids-limit", PIDS.to_string()),
        ("memory-limit", MEMORY_MB.to_string()),
        ("disk-limit", UPPER_MB.to_string()),
    ];
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for name in listed.lines() {
        let arg = with_arg
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        match bed.run(&sb, name, &arg) {
            Ok(line) => passed.push(line),
            Err(line) => failed.push(line),
        }
    }
    // The other sandbox's file is not reachable by any path the first one has.
    if sh(&sb, "cat /tmp/other-secret").exit_code == Some(0) {
        failed.push("other-sandbox-file: read /tmp/other-secret".into());
    }
    for line in &passed {
        eprintln!("{line}");
    }
    if report_file().is_some() {
        return;
    }
    assert!(passed.len() >= 40, "only {} probes ran", passed.len());
    assert!(
        failed.is_empty(),
        "probes with the wrong verdict:\n{}",
        failed.join("\n")
    );
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern"),
        core_pattern,
        "the host's core_pattern changed"
    );
}

/// Start `cmd` in the background of `sb`.
fn block_on_spawn(sb: &Sandbox, cmd: &str) {
    crate::sandbox::block(sb.spawn(ExecRequest::new(cmd))).expect("spawn");
}

#[test]
fn files_api_stays_on_the_sandbox_filesystem() {
    if !privileged("files_api_stays_on_the_sandbox_filesystem") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("files");
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern");
    let invalid = |r: Result<Vec<u8>, sqrx_core::SandboxError>, what: &str| match r {
        Ok(bytes) => panic!("{what}: read {} bytes", bytes.len()),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{what}: {e}"),
    };
    invalid(sb.read_file("/proc/sys/kernel/core_pattern"), "procfs");
    invalid(sb.read_file("/sys/kernel/uevent_seqnum"), "sysfs");
    invalid(sb.read_file("/dev/zero"), "a device");
    let w = sb.write_file("/proc/sys/kernel/core_pattern", b"|/tmp/evil", 0o644);
    assert_eq!(
        w.expect_err("write to procfs").kind(),
        ErrorKind::InvalidArgument
    );
    // Symlinks the sandbox plants point into its own kernel filesystems or at devices.
    out(
        &sb,
        "ln -s /proc /tmp/out && ln -s /dev/zero /tmp/result.txt",
    );
    sb.write_file(
        "/tmp/mkfifo.py",
        b"import os; os.mkfifo('/tmp/fifo')",
        0o644,
    )
    .expect("script");
    let mut sb = sb;
    t.python_layer();
    sb.activate("100-py").expect("python");
    out(&sb, "python3 /tmp/mkfifo.py");
    invalid(
        sb.read_file("/tmp/out/sys/kernel/core_pattern"),
        "symlink to /proc",
    );
    assert_eq!(
        sb.list("/tmp/out").expect_err("list via symlink").kind(),
        ErrorKind::InvalidArgument
    );
    invalid(sb.read_file("/tmp/result.txt"), "symlink to /dev/zero");
    // A FIFO is refused at once, never waited on (a reader would hang on open).
    let (tx, rx) = std::sync::mpsc::channel();
    let sb2 = sb.clone();
    std::thread::spawn(move || {
        let read = sb2.read_file("/tmp/fifo").map(|_| ());
        let write = sb2.write_file("/tmp/fifo", b"x", 0o644);
        let _ = tx.send((read, write));
    });
    let (read, write) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("files API hung on a FIFO");
    assert_eq!(
        read.expect_err("fifo read").kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        write.expect_err("fifo write").kind(),
        ErrorKind::InvalidArgument
    );
    // An archive of / holds no kernel file.
    let mut tar = Vec::new();
    sb.download_tar("/", &mut tar).expect("archive /");
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .expect("entries")
        .flatten()
        .filter_map(|e| e.path().ok().map(|p| p.display().to_string()))
        .collect();
    assert!(names.iter().any(|n| n.starts_with("bin")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("proc/") || n.starts_with("sys/") || n.starts_with("dev/")),
        "kernel files in the archive: {:?}",
        names
            .iter()
            .filter(|n| n.starts_with("proc/"))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").expect("core_pattern"),
        core_pattern
    );
}

#[test]
fn root_in_a_sandbox_is_an_unprivileged_host_range_everywhere() {
    if !privileged("root_in_a_sandbox_is_an_unprivileged_host_range_everywhere") {
        return;
    }
    let t = TestRuntime::new();
    let a = t.create("ids-a");
    let base = a.info().id_base.expect("a user namespace by default");
    assert!(base >= 1 << 30, "{base}");
    assert_eq!(
        out(&a, "cat /proc/self/uid_map")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", &base.to_string(), "65536"]
    );
    assert_eq!(out(&a, "id -u; id -g").trim(), "0\n0");
    // Root inside may still bind a low port: the network namespace belongs to its namespace.
    assert_eq!(
        out(
            &a,
            "busybox nc -l -p 80 >/dev/null 2>&1 & sleep 0.3; kill $! && echo listening"
        ),
        "listening\n"
    );
    // Layers show as the sandbox's root; on the host the same files are the range's first id.
    assert_eq!(out(&a, "stat -c %u:%g /bin/sh").trim(), "0:0");
    let pid = a.info().init_pid;
    let host_view = |p: &str| std::fs::symlink_metadata(format!("/proc/{pid}/root{p}")).expect(p);
    assert_eq!(host_view("/bin/sh").uid(), base);
    // Exec, files API and tar upload create files owned as inside.
    out(
        &a,
        "touch /tmp/u1000 && chown 1000:1001 /tmp/u1000 && mkdir -p /work && touch /work/root",
    );
    a.write_file("/work/api.txt", b"api", 0o640).expect("write");
    a.mkdir("/work/apidir").expect("mkdir");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    h.set_uid(1234);
    h.set_gid(1235);
    h.set_cksum();
    tar.append_data(&mut h, "tarred", &b"tar"[..]).expect("tar");
    let bytes = tar.into_inner().expect("tar bytes");
    a.upload_tar("/work", &bytes[..]).expect("upload");
    let owners = "stat -c '%n %u:%g' /tmp/u1000 /work/root /work/api.txt /work/apidir /work/tarred";
    let expected = "/tmp/u1000 1000:1001\n/work/root 0:0\n/work/api.txt 0:0\n/work/apidir 0:0\n/work/tarred 1234:1235\n";
    assert_eq!(out(&a, owners), expected);
    assert_eq!(host_view("/tmp/u1000").uid(), base + 1000);
    assert_eq!(host_view("/work/api.txt").uid(), base);
    // A tar download shows the sandbox's ids, not the host's.
    let mut down = Vec::new();
    a.download_tar("/work", &mut down).expect("download");
    let ids: Vec<(String, u64)> = tar::Archive::new(&down[..])
        .entries()
        .expect("entries")
        .flatten()
        .map(|e| {
            (
                e.path().expect("path").display().to_string(),
                e.header().uid().expect("uid"),
            )
        })
        .collect();
    assert!(ids.contains(&("tarred".into(), 1234)), "{ids:?}");
    assert!(ids.contains(&("api.txt".into(), 0)), "{ids:?}");

    // Snapshot, then restore and clone into sandboxes with other host ranges.
    a.snapshot(Some("s1")).expect("snapshot");
    let b = t.rt.clone_sandbox("ids-a", "ids-b").expect("clone");
    let base_b = b.info().id_base.expect("range");
    assert_ne!(base_b, base);
    assert_eq!(out(&b, owners), expected);
    assert_eq!(
        std::fs::symlink_metadata(format!("/proc/{}/root/tmp/u1000", b.info().init_pid))
            .expect("b view")
            .uid(),
        base_b + 1000
    );
    out(&a, "rm /tmp/u1000 && touch /tmp/after");
    let mut a = a;
    a.restore("s1").expect("restore");
    assert_eq!(a.info().id_base, Some(base), "the range survives a restore");
    assert_eq!(out(&a, owners), expected);
    assert_eq!(sh(&a, "test -e /tmp/after").exit_code, Some(1));
    // Activate keeps the upper and the ids.
    t.python_layer();
    a.activate("100-py").expect("activate");
    assert_eq!(out(&a, owners), expected);
    assert_eq!(out(&a, "stat -c %u /usr/bin/python3").trim(), "0");
    // Each sandbox's root owns nothing of the other's: their processes run as other host uids.
    let pid_a = out(&a, "sleep 30 >/dev/null & echo $!");
    let _ = pid_a;
    let range_of = |sb: &Sandbox| sb.info().id_base;
    assert_ne!(range_of(&a), range_of(&b));
    // Destroy gives the ranges back.
    let registry = PathBuf::from("/run/sqrx/idmap");
    let slot = |base: u32| registry.join(((base - (1 << 30)) / 65536).to_string());
    assert!(slot(base).exists() && slot(base_b).exists());
    b.destroy().expect("destroy b");
    a.destroy().expect("destroy a");
    assert!(!slot(base).exists() && !slot(base_b).exists());
}

#[test]
fn no_host_process_stays_in_a_sandbox_user_namespace() {
    if !privileged("no_host_process_stays_in_a_sandbox_user_namespace") {
        return;
    }
    let t = TestRuntime::new();
    let a = t.create("holder-a");
    let b = t.create("holder-b");
    for sb in [&a, &b] {
        // The server (PID 2) is in the sandbox's user namespace; every process of the host in
        // that namespace must be one of the sandbox's own (the host's namespace holder is gone).
        let ns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let init = sb.info().init_pid.to_string();
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
            .expect("init's children");
        let server = children
            .split_whitespace()
            .next()
            .expect("a server")
            .to_string();
        let userns = ns_of(&server).expect("the server's user namespace");
        assert_ne!(
            ns_of("self"),
            Some(userns.clone()),
            "the server is in a namespace of its own"
        );
        let members: Vec<String> = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
            .filter(|p| ns_of(p).as_ref() == Some(&userns))
            .collect();
        let own: Vec<i32> = crate::sandbox::cgroup_dirs(sb.id())
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        for p in &members {
            assert!(
                own.contains(&p.parse().expect("a pid")),
                "host process {p} is in {}'s user namespace: {}",
                sb.id(),
                std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default()
            );
        }
    }
}

#[test]
fn a_layer_whose_mount_target_is_a_symlink_is_refused() {
    if !privileged("a_layer_whose_mount_target_is_a_symlink_is_refused") {
        return;
    }
    let t = TestRuntime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/etc", dir.path().join("proc")).expect("symlink");
    let name = crate::name("100-evil");
    t.rt.layers()
        .build_from_dir(&name, dir.path(), &Default::default())
        .expect("layer");
    let mut spec = SandboxSpec::new("evil");
    spec.layers = vec!["000-base".into(), "100-evil".into()];
    let e = t.rt.create(spec).expect_err("a symlinked /proc is refused");
    assert!(e.to_string().contains("symlink"), "{e}");
    assert!(t.rt.list().is_empty(), "nothing left behind");
}

/// A cgroup v2 directory made for one test, removed when dropped.
struct V2Cgroup(PathBuf);

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn the_v2_device_program_denies_devices_off_the_list() {
    if !privileged("the_v2_device_program_denies_devices_off_the_list") {
        return;
    }
    // The unified hierarchy: the whole tree on a v2 host, `unified/` on a hybrid one (device
    // programs work there even when no controller is enabled).
    let cgroup2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").is_file() && p.join("cgroup.controllers").is_file())
        .expect("a cgroup v2 hierarchy");
    let cg = V2Cgroup(cgroup2.join(format!("sqrx-test-devbpf-{}", std::process::id())));
    std::fs::create_dir(&cg.0).expect("mkdir cgroup");
    // Only /dev/null (1:3).
    sqrx_core::cgroup::attach_device_program(&cg.0, &[(1, Some(3))])
        .expect("load and attach the device program");
    let script = format!(
        "echo $$ > {}/cgroup.procs || exit 9; \
         cat /dev/null && echo null-ok; \
         if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-open; else echo zero-denied; fi",
        cg.0.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run sh");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "null-ok\nzero-denied\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Outside the cgroup the same device opens.
    assert!(std::fs::File::open("/dev/zero").is_ok());
}
