//! State operations are transactions: a snapshot, restore, activate or clone that fails at any
//! step leaves the sandbox as it was. Proven by fault injection (`sqrx_core::faults`): for
//! N = 1, 2, ... the N-th step point of the operation fails, and after each failure the
//! sandbox must be listed, running, not frozen, with the same files, its processes kept where
//! the operation keeps them, and nothing leaked; the first N past the last step is the
//! operation succeeding.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sqrx_core::{ErrorKind, Sandbox, SandboxError, faults};
use sqrx_testkit::privileged;

use crate::manifest::{Manifest, assert_same, manifest};
use crate::sandbox::{TestRuntime, cgroup_dirs, out, sh};

/// The directories whose files are compared.
const DIRS: &[&str] = &["/work", "/etc"];

/// Everything a failed operation must leave as it was.
#[derive(Debug, PartialEq)]
struct Observed {
    files: Manifest,
    sandboxes: Vec<String>,
    labels: Vec<String>,
    /// Files under `snapshots/` (images, labels, temporaries).
    snapshot_files: BTreeSet<PathBuf>,
    /// Mount points under the data directory.
    mounts: BTreeSet<String>,
    loop_devices: usize,
    cgroups: BTreeSet<PathBuf>,
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &Path) -> BTreeSet<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    walkdir(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p))
        .collect()
}

/// Every path under `dir`, depth first.
pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

/// The cgroup directories of the sandboxes `ids`.
fn cgroups_of(ids: &[&str]) -> BTreeSet<PathBuf> {
    ids.iter().flat_map(|id| cgroup_dirs(id)).collect()
}

fn observe(t: &TestRuntime, sb: &Sandbox, also: &[&str]) -> Observed {
    let data = t.dir.path();
    let mut ids: Vec<&str> = vec![sb.id()];
    ids.extend_from_slice(also);
    Observed {
        files: manifest(sb, DIRS),
        sandboxes: t.rt.list().iter().map(|s| s.id().to_string()).collect(),
        labels: sb
            .snapshots()
            .expect("snapshots")
            .into_iter()
            .map(|s| s.label)
            .collect(),
        snapshot_files: files_under(&data.join("sandboxes").join(sb.id()).join("snapshots")),
        mounts: mounts_under(data),
        loop_devices: sqrx_testkit::loop_devices_backed_by(&data.display().to_string()).len(),
        cgroups: cgroups_of(&ids),
    }
}

/// Start a process that the operations keeping processes must keep; its pid inside.
fn start_background(sb: &Sandbox) -> String {
    out(
        sb,
        "sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/bg.pid; cat /tmp/bg.pid",
    )
    .trim()
    .to_string()
}

fn background_alive(sb: &Sandbox, pid: &str) -> bool {
    sh(sb, &format!("grep -q sleep /proc/{pid}/cmdline")).exit_code == Some(0)
}

/// How one operation is driven through its steps.
struct Operation<'a> {
    /// Its name, for messages.
    name: &'a str,
    /// The step points at or after which the sandbox's processes are gone on failure (the
    /// old init was stopped); `None` when the operation keeps them whatever happens.
    stops_processes_at: Option<&'a str>,
    /// Other sandbox ids the operation may create (their cgroups must not leak).
    creates: &'a [&'a str],
}

impl<'a> Operation<'a> {
    /// An operation that restarts the sandbox's init (restore, activate).
    fn restarting(name: &'a str) -> Self {
        Operation {
            name,
            stops_processes_at: Some("restart.stop_old_init"),
            creates: &[],
        }
    }

    /// An operation that keeps the sandbox's processes (snapshot, clone).
    fn keeping(name: &'a str, creates: &'a [&'a str]) -> Self {
        Operation {
            name,
            stops_processes_at: None,
            creates,
        }
    }
}

/// Fail each step of `op` in turn on the sandbox `id`, checking after every failure that
/// nothing changed. Returns the step points of the successful run.
fn every_step(
    t: &TestRuntime,
    id: &str,
    spec: &Operation<'_>,
    mut op: impl FnMut(&mut Sandbox) -> Result<(), SandboxError>,
) -> Vec<&'static str> {
    let started = Instant::now();
    let mut background: Option<String> = None;
    for n in 1.. {
        let mut sb = t.rt.get(id).expect("the sandbox is there");
        let pid = match background.take() {
            Some(p) if background_alive(&sb, &p) => p,
            _ => start_background(&sb),
        };
        let init_before = sb.info().init_pid;
        let before = observe(t, &sb, spec.creates);

        faults::fail_at(n);
        let result = op(&mut sb);
        let (reached, fired) = faults::disarm();
        let Some(point) = fired else {
            result.unwrap_or_else(|e| panic!("{}: the run without a fault failed: {e}", spec.name));
            eprintln!(
                "{}: {} steps, each failed once, in {:.1} s: {}",
                spec.name,
                n - 1,
                started.elapsed().as_secs_f64(),
                reached.join(", ")
            );
            return reached;
        };
        let context = format!("{} failing at step {n} ({point})", spec.name);
        let e = match result {
            Ok(()) => panic!("{context}: succeeded although the step failed"),
            Err(e) => e,
        };
        assert!(
            matches!(&e, SandboxError::Injected(i) if i.point == point),
            "{context}: the error is not the injected one: {e}"
        );
        assert_eq!(e.kind(), ErrorKind::Internal, "{context}");

        let sb =
            t.rt.get(id)
                .unwrap_or_else(|e| panic!("{context}: the sandbox is gone: {e}"));
        let info = sb.info();
        assert_eq!(info.status, "running", "{context}");
        assert!(!sb.is_paused(), "{context}: left frozen");
        assert_eq!(out(&sb, "echo alive"), "alive\n", "{context}: exec");
        let after = observe(t, &sb, spec.creates);
        assert_same(&after.files, &before.files, &context);
        assert_eq!(after, before, "{context}: state or resources changed");

        let stopped = spec
            .stops_processes_at
            .is_some_and(|stop| reached[..reached.len() - 1].contains(&stop));
        if stopped {
            assert_ne!(info.init_pid, init_before, "{context}: restarted");
        } else {
            assert_eq!(info.init_pid, init_before, "{context}: init untouched");
            assert!(
                background_alive(&sb, &pid),
                "{context}: the background process died"
            );
            background = Some(pid);
        }
    }
    unreachable!("the loop returns once no fault fires")
}

/// A sandbox with files of every kind in /work, a deleted base file, and a snapshot `s1`
/// taken before more changes; and the files of `s1`.
fn prepared(t: &TestRuntime, id: &str) -> (Sandbox, Manifest) {
    let sb = t.create(id);
    out(
        &sb,
        "mkdir -p /work/d/sub && cd /work && echo one > a && echo two > d/sub/b && \
         chmod 640 a && ln -s a link && rm /etc/hostname",
    );
    sb.snapshot(Some("s1")).expect("s1");
    let s1 = manifest(&sb, DIRS);
    out(
        &sb,
        "cd /work && echo changed > a && rm -r d && mkdir d && echo new > d/c && chmod 700 d",
    );
    (sb, s1)
}

/// [`prepared`], restored to `s1` and changed again: the stack holds a snapshot.
fn prepared_on_s1(t: &TestRuntime, id: &str) -> Sandbox {
    let (mut sb, _) = prepared(t, id);
    sb.restore("s1").expect("restore");
    out(&sb, "echo more > /work/more");
    sb
}

#[test]
fn a_restore_failing_at_any_step_changes_nothing() {
    if !privileged("a_restore_failing_at_any_step_changes_nothing") {
        return;
    }
    let t = TestRuntime::new();
    let (_, s1) = prepared(&t, "tx-restore");

    let spec = Operation::restarting("restore");
    let steps = every_step(&t, "tx-restore", &spec, |sb| sb.restore("s1"));
    for step in [
        "restart.mount_upper",
        "restart.stop_old_init",
        "init.ready",
        "upper.swap_bind_next",
        "restart.save_state",
    ] {
        assert!(
            steps.contains(&step),
            "{step} is a step of restore: {steps:?}"
        );
    }
    let sb = t.rt.get("tx-restore").expect("get");
    assert_same(&manifest(&sb, DIRS), &s1, "after the restore");
    assert_eq!(sb.info().active_snapshot.as_deref(), Some("s1"));
}

#[test]
fn an_activate_failing_at_any_step_changes_nothing() {
    if !privileged("an_activate_failing_at_any_step_changes_nothing") {
        return;
    }
    let t = TestRuntime::new();
    t.layer_of_files("200-tool", &[("opt/tool/hello", "from the layer\n")]);
    // Activate on a restored stack: the snapshot's layer stays under the new one.
    let sb = prepared_on_s1(&t, "tx-activate");

    let spec = Operation::restarting("activate");
    let before = manifest(&sb, &["/work"]);
    every_step(&t, "tx-activate", &spec, |sb| sb.activate("200-tool"));
    let sb = t.rt.get("tx-activate").expect("get");
    assert_eq!(out(&sb, "cat /opt/tool/hello"), "from the layer\n");
    assert_same(&manifest(&sb, &["/work"]), &before, "after the activate");
    assert_eq!(sb.info().layers, ["000-base", "200-tool"]);
}

#[test]
fn a_snapshot_failing_at_any_step_changes_nothing() {
    if !privileged("a_snapshot_failing_at_any_step_changes_nothing") {
        return;
    }
    let t = TestRuntime::new();
    prepared_on_s1(&t, "tx-snapshot");
    let spec = Operation::keeping("snapshot", &[]);
    let steps = every_step(&t, "tx-snapshot", &spec, |sb| {
        sb.snapshot(Some("s2")).map(|_| ())
    });
    assert!(steps.contains(&"pause.wait_frozen"), "{steps:?}");
    let mut sb = t.rt.get("tx-snapshot").expect("get");
    let files = manifest(&sb, DIRS);
    out(&sb, "rm /work/more");
    sb.restore("s2").expect("restore s2");
    assert_same(&manifest(&sb, DIRS), &files, "s2 restored");
}

#[test]
fn a_clone_failing_at_any_step_changes_nothing() {
    if !privileged("a_clone_failing_at_any_step_changes_nothing") {
        return;
    }
    let t = TestRuntime::new();
    prepared_on_s1(&t, "tx-clone");
    let spec = Operation::keeping("clone", &["tx-copy"]);
    let rt = t.rt.clone();
    let steps = every_step(&t, "tx-clone", &spec, |_| {
        rt.clone_sandbox("tx-clone", "tx-copy").map(|_| ())
    });
    assert!(steps.contains(&"create.save_state"), "{steps:?}");
    let src = t.rt.get("tx-clone").expect("source");
    let copy = t.rt.get("tx-copy").expect("copy");
    assert_same(&manifest(&copy, DIRS), &manifest(&src, DIRS), "the clone");
}
