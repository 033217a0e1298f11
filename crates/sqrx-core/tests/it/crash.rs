//! Crash consistency: `kill -9` of the process running an operation, at any step of create,
//! snapshot, restore, activate, clone and destroy, leaves the old or the new state, and the
//! next runtime on the data directory recovers it.
//!
//! The operation runs in a child process (`sqrx-crash-driver`). For n = 1, 2, ... its n-th step
//! point sends SIGKILL to the child (`faults::kill_at`); then a few more runs are killed from
//! outside at seeded random times within the operation's measured duration (inside steps:
//! halfway through a pack, a mount, a write). After each kill a new `Runtime` opens the data
//! directory and the test checks: the sandbox is in its old or its new state (a manifest of
//! its files), running, not frozen, execs; no `rw.next`/`rw.old` is mounted, no `*.tmp` file
//! and no image without a label is left. At the end everything is destroyed and nothing may be
//! left: no mounts under the data directory, no loop devices on its files, no cgroups of its
//! sandboxes, no host id range naming it, no init that ran.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqrx_core::sandbox::process_start_time;
use sqrx_core::{Runtime, RuntimeConfig, Sandbox, SandboxError};
use sqrx_testkit::privileged;

use crate::manifest::{Manifest, manifest};
use crate::sandbox::{TestRuntime, cgroup_dirs, out};
use crate::transactions::{mounts_under, walkdir};

const DIRS: &[&str] = &["/work", "/etc", "/opt"];
const DRIVER: &str = env!("CARGO_BIN_EXE_sqrx-crash-driver");
const INIT: &str = env!("CARGO_BIN_EXE_sqrx-init");
/// Kills at random times per operation, after the kills at every step (`SQRX_CRASH_RANDOM`
/// sets another count).
fn random_kills() -> usize {
    std::env::var("SQRX_CRASH_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// How a driver run ended.
#[derive(Debug)]
enum Outcome {
    /// The operation finished; the step points it passed.
    Done(Vec<String>),
    /// The process was killed with SIGKILL.
    Killed,
}

/// When the driver is killed.
#[derive(Clone, Copy)]
enum Kill {
    /// At its n-th step point.
    AtStep(usize),
    /// From outside, after this long.
    After(Duration),
}

fn drive(data: &Path, kill: Kill, op: &[String]) -> Outcome {
    let step = match kill {
        Kill::AtStep(n) => n.to_string(),
        Kill::After(_) => "run".to_string(),
    };
    let mut child = Command::new(DRIVER)
        .arg(data)
        .arg(INIT)
        .arg(step)
        .args(op)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the driver");
    if let Kill::After(delay) = kill {
        std::thread::sleep(delay);
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait for the driver");
    if output.status.signal() == Some(9) {
        return Outcome::Killed;
    }
    assert!(
        output.status.success(),
        "{op:?}: the driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Outcome::Done(
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// A runtime opened afresh on the data directory: it recovers what the killed process left.
fn reopen(data: &Path) -> Runtime {
    let mut config = RuntimeConfig::new(data);
    config.init_path = Some(PathBuf::from(INIT));
    Runtime::open(config).expect("reopen the data directory")
}

/// Files whose name ends in `.tmp` under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walkdir(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp") && p.is_file())
        .collect()
}

/// Snapshot images of `sb` that no label names (left by a snapshot killed before its label).
fn unlabelled_images(data: &Path, sb: &Sandbox) -> Vec<PathBuf> {
    let snapshots = data.join("sandboxes").join(sb.id()).join("snapshots");
    let mut named: BTreeSet<String> = sb
        .snapshots()
        .expect("snapshots")
        .into_iter()
        .map(|s| s.digest.trim_start_matches("sha256:").to_string())
        .collect();
    // Images under the stack (a clone's packed upper) are named by the state.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("sandboxes").join(sb.id()).join("state.json")).expect("state"),
    )
    .expect("state json");
    for l in state["layers"].as_array().into_iter().flatten() {
        if let Some(d) = l["digest"].as_str() {
            named.insert(d.trim_start_matches("sha256:").to_string());
        }
    }
    std::fs::read_dir(snapshots.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_stem()
                .is_none_or(|s| !named.contains(&*s.to_string_lossy()))
        })
        .collect()
}

/// Inits seen during the test: none may outlive it.
#[derive(Default)]
struct Inits(BTreeSet<(i32, u64)>);

impl Inits {
    fn saw(&mut self, sb: &Sandbox) {
        let pid = sb.info().init_pid;
        if let Some(start) = process_start_time(pid) {
            self.0.insert((pid, start));
        }
    }
}

/// Everything a recovered sandbox must be: running, not frozen, execs, nothing of a restart
/// left mounted, no temporaries or unlabelled images. Returns its files.
fn check_usable(t: &TestRuntime, rt: &Runtime, id: &str, context: &str) -> Manifest {
    let data = t.dir.path();
    let sb = rt
        .get(id)
        .unwrap_or_else(|e| panic!("{context}: {id} is not there: {e}"));
    let info = sb.info();
    assert_eq!(info.status, "running", "{context}: {id}");
    assert!(!sb.is_paused(), "{context}: {id} left frozen");
    assert_eq!(out(&sb, "echo alive"), "alive\n", "{context}: {id} execs");
    let dir = data.join("sandboxes").join(id);
    for m in ["rw.next", "rw.old"] {
        assert!(
            !mounts_under(data).contains(&dir.join(m).display().to_string()),
            "{context}: {id}/{m} is still mounted"
        );
    }
    assert_eq!(
        temporaries(data),
        Vec::<PathBuf>::new(),
        "{context}: temporaries"
    );
    assert_eq!(
        unlabelled_images(data, &sb),
        Vec::<PathBuf>::new(),
        "{context}: images without a label"
    );
    manifest(&sb, DIRS)
}

/// How one operation is crashed and what its old and new states are.
struct Crash<'a> {
    name: &'a str,
    /// The driver's arguments for run `n`.
    op: &'a dyn Fn(usize) -> Vec<String>,
    /// Bring the data directory to the state before the operation (with a runtime that has
    /// just recovered it).
    prepare: &'a dyn Fn(&Runtime, usize),
    /// Check the recovered state: old or new (`done`: the operation finished).
    check: &'a dyn Fn(&Runtime, &str, bool),
}

/// Kill `crash` at every step, then at random times; check after each. Returns the number of
/// step points and of kills.
fn crash_everywhere(t: &TestRuntime, inits: &mut Inits, crash: &Crash<'_>, seed: u64) -> usize {
    let data = t.dir.path();
    let started = Instant::now();
    for n in 1.. {
        if n > 200 {
            panic!("{}: more than 200 steps", crash.name);
        }
        let rt = reopen(data);
        (crash.prepare)(&rt, n);
        drop(rt);
        let run = Instant::now();
        let outcome = drive(data, Kill::AtStep(n), &(crash.op)(n));
        let took = run.elapsed();
        let rt = reopen(data);
        let context = format!("{} killed at step {n}", crash.name);
        match outcome {
            Outcome::Killed => (crash.check)(&rt, &context, false),
            Outcome::Done(points) => {
                (crash.check)(&rt, &format!("{} finished", crash.name), true);
                for id in rt.list() {
                    inits.saw(&id);
                }
                // Random kills within the measured run, inside steps.
                let mut x = seed | 1;
                for i in 0..random_kills() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let delay = took.mul_f64((x % 1000) as f64 / 1000.0);
                    let rt = reopen(data);
                    (crash.prepare)(&rt, n + 1 + i);
                    drop(rt);
                    let outcome = drive(data, Kill::After(delay), &(crash.op)(n + 1 + i));
                    let rt = reopen(data);
                    let context = format!("{} killed after {delay:?}", crash.name);
                    (crash.check)(&rt, &context, matches!(outcome, Outcome::Done(_)));
                    for id in rt.list() {
                        inits.saw(&id);
                    }
                }
                eprintln!(
                    "{}: killed at each of {} steps and {} random times in {:.1} s: {}",
                    crash.name,
                    n - 1,
                    random_kills(),
                    started.elapsed().as_secs_f64(),
                    points.join(", ")
                );
                return n - 1;
            }
        }
        for id in rt.list() {
            inits.saw(&id);
        }
    }
    unreachable!("the loop returns once the operation finishes")
}

/// The sandbox `id`'s files, asserted to be one of `states`.
fn assert_one_of(files: &Manifest, states: &[(&str, &Manifest)], context: &str) {
    if states.iter().any(|(_, s)| s == &files) {
        return;
    }
    let names: Vec<&str> = states.iter().map(|(n, _)| *n).collect();
    panic!("{context}: the files are none of the states {names:?}: {files:#?}");
}

#[test]
fn a_kill_at_any_point_leaves_the_old_or_the_new_state() {
    if !privileged("a_kill_at_any_point_leaves_the_old_or_the_new_state") {
        return;
    }
    let started = Instant::now();
    let t = TestRuntime::new();
    let data = t.dir.path().to_path_buf();
    t.layer_of_files("200-tool", &[("opt/tool/hello", "from the layer\n")]);
    let mut inits = Inits::default();
    let id = "crash";
    {
        let sb = t.create(id);
        out(
            &sb,
            "mkdir -p /work/d && echo one > /work/a && echo two > /work/d/b && rm /etc/hostname",
        );
        sb.snapshot(Some("s1")).expect("s1");
        inits.saw(&sb);
    }
    let rt0 = reopen(&data);
    let s1 = {
        let mut sb = rt0.get(id).expect("get");
        sb.restore("s1").expect("restore s1");
        manifest(&sb, DIRS)
    };
    // Before each run the sandbox is on s1 with one more file (`/work/iter`): its old state.
    let on_s1_plus = |rt: &Runtime, n: usize| -> Manifest {
        let mut sb = rt.get(id).expect("get");
        if sb.info().layers.len() > 1 || n == 0 {
            sb.restore("s1").expect("back to s1");
        }
        out(&sb, &format!("rm -f /work/iter; echo {n} > /work/iter"));
        manifest(&sb, DIRS)
    };
    let old = std::cell::RefCell::new(Manifest::new());
    let mut steps = Vec::new();

    // restore: old = s1 + /work/iter, new = s1.
    let prepare = |rt: &Runtime, n: usize| {
        let mut sb = rt.get(id).expect("get");
        sb.restore("s1").expect("back to s1");
        *old.borrow_mut() = on_s1_plus(rt, n);
    };
    let check = |rt: &Runtime, context: &str, done: bool| {
        let files = check_usable(&t, rt, id, context);
        let old = old.borrow();
        if done {
            assert_one_of(&files, &[("new", &s1)], context);
        } else {
            assert_one_of(&files, &[("old", &old), ("new", &s1)], context);
        }
    };
    let restore = Crash {
        name: "restore",
        op: &|_| vec!["restore".into(), id.into(), "s1".into()],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("restore", crash_everywhere(&t, &mut inits, &restore, 11)));

    // activate: old = s1 + /work/iter, new = that + /opt/tool/hello.
    let prepare = |rt: &Runtime, n: usize| {
        *old.borrow_mut() = on_s1_plus(rt, n);
    };
    let outside_opt = |m: &Manifest| -> Manifest {
        m.iter()
            .filter(|(p, _)| !p.starts_with("/opt"))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect()
    };
    let check = |rt: &Runtime, context: &str, done: bool| {
        let files = check_usable(&t, rt, id, context);
        let old = old.borrow();
        assert_eq!(
            outside_opt(&files),
            outside_opt(&old),
            "{context}: files kept"
        );
        let sb = rt.get(id).expect("get");
        if files.contains_key(Path::new("/opt/tool/hello")) {
            assert_eq!(
                out(&sb, "cat /opt/tool/hello"),
                "from the layer\n",
                "{context}"
            );
            assert_eq!(sb.info().layers, ["000-base", "200-tool"], "{context}");
        } else {
            assert!(
                !done,
                "{context}: the layer is missing after the activate finished"
            );
            assert_one_of(&files, &[("old", &old)], context);
        }
    };
    let activate = Crash {
        name: "activate",
        op: &|_| vec!["activate".into(), id.into(), "200-tool".into()],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("activate", crash_everywhere(&t, &mut inits, &activate, 23)));

    // snapshot: the files never change; the label is there or not, and restores its files.
    let prepare = |rt: &Runtime, n: usize| {
        *old.borrow_mut() = on_s1_plus(rt, n);
    };
    let label = |n: usize| format!("s2-{n}");
    let check = |rt: &Runtime, context: &str, done: bool| {
        let files = check_usable(&t, rt, id, context);
        assert_one_of(&files, &[("old = new", &old.borrow())], context);
        let mut sb = rt.get(id).expect("get");
        let iter = out(&sb, "cat /work/iter");
        let taken = label(iter.trim().parse().expect("iteration"));
        let has = sb
            .snapshots()
            .expect("snapshots")
            .iter()
            .any(|s| s.label == taken);
        assert!(
            !done || has,
            "{context}: {taken} missing after the snapshot finished"
        );
        if has {
            sb.restore(&taken).expect("restore the snapshot");
            assert_one_of(
                &manifest(&sb, DIRS),
                &[("snapshot", &old.borrow())],
                context,
            );
        }
    };
    let snapshot = Crash {
        name: "snapshot",
        op: &|n| vec!["snapshot".into(), id.into(), label(n)],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("snapshot", crash_everywhere(&t, &mut inits, &snapshot, 37)));

    // clone: the source keeps its files; the copy is there with them, or not at all.
    let copy = "crash-copy";
    let prepare = |rt: &Runtime, n: usize| {
        if let Ok(c) = rt.get(copy) {
            c.destroy().expect("destroy the copy");
        }
        *old.borrow_mut() = on_s1_plus(rt, n);
    };
    let check = |rt: &Runtime, context: &str, done: bool| {
        let files = check_usable(&t, rt, id, context);
        assert_one_of(&files, &[("source", &old.borrow())], context);
        match rt.get(copy) {
            Ok(_) => {
                let files = check_usable(&t, rt, copy, context);
                assert_one_of(&files, &[("copy", &old.borrow())], context);
            }
            Err(SandboxError::NotFound { .. }) if !done => {}
            Err(e) => panic!("{context}: the copy: {e}"),
        }
    };
    let clone = Crash {
        name: "clone",
        op: &|_| vec!["clone".into(), id.into(), copy.into()],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("clone", crash_everywhere(&t, &mut inits, &clone, 41)));

    // create: the sandbox is there and works, or not at all.
    let fresh = "crash-new";
    let prepare = |rt: &Runtime, _: usize| {
        if let Ok(c) = rt.get(fresh) {
            c.destroy().expect("destroy the new sandbox");
        }
        if let Ok(c) = rt.get(copy) {
            c.destroy().expect("destroy the copy");
        }
    };
    let check = |rt: &Runtime, context: &str, done: bool| match rt.get(fresh) {
        Ok(_) => {
            check_usable(&t, rt, fresh, context);
        }
        Err(SandboxError::NotFound { .. }) if !done => {}
        Err(e) => panic!("{context}: {e}"),
    };
    let create = Crash {
        name: "create",
        op: &|_| vec!["create".into(), fresh.into()],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("create", crash_everywhere(&t, &mut inits, &create, 53)));

    // destroy: the sandbox is there as it was, or gone without a trace.
    let victim = "crash-victim";
    let prepare = |rt: &Runtime, n: usize| {
        if let Ok(c) = rt.get(fresh) {
            c.destroy().expect("destroy the new sandbox");
        }
        let sb = match rt.get(victim) {
            Ok(sb) => sb,
            Err(_) => rt
                .create(sqrx_core::SandboxSpec::new(victim))
                .expect("create the victim"),
        };
        out(&sb, &format!("mkdir -p /work; echo {n} > /work/iter"));
        *old.borrow_mut() = manifest(&sb, DIRS);
    };
    let check = |rt: &Runtime, context: &str, done: bool| match rt.get(victim) {
        Ok(_) if !done => {
            let files = check_usable(&t, rt, victim, context);
            assert_one_of(&files, &[("old", &old.borrow())], context);
        }
        Ok(_) => panic!("{context}: destroyed, yet there"),
        Err(SandboxError::NotFound { .. } | SandboxError::Dead { .. }) => {
            assert!(!data.join("sandboxes").join(victim).exists(), "{context}");
            assert!(cgroup_dirs(victim).is_empty(), "{context}: cgroups left");
        }
        Err(e) => panic!("{context}: {e}"),
    };
    let destroy = Crash {
        name: "destroy",
        op: &|_| vec!["destroy".into(), victim.into()],
        prepare: &prepare,
        check: &check,
    };
    steps.push(("destroy", crash_everywhere(&t, &mut inits, &destroy, 67)));

    // Everything destroyed: nothing may be left.
    let rt = reopen(&data);
    for sb in rt.list() {
        inits.saw(&sb);
        sb.destroy().expect("destroy");
    }
    drop(rt0);
    assert_eq!(mounts_under(&data), BTreeSet::new(), "mounts left");
    assert_eq!(
        sqrx_testkit::loop_devices_backed_by(&data.display().to_string()),
        Vec::<String>::new(),
        "loop devices left"
    );
    for id in [id, copy, fresh, victim] {
        assert_eq!(
            cgroup_dirs(id),
            Vec::<PathBuf>::new(),
            "cgroups of {id} left"
        );
    }
    let ranges: Vec<PathBuf> = std::fs::read_dir("/run/sqrx/idmap")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|h| h.starts_with(&*data.to_string_lossy()))
        })
        .collect();
    assert_eq!(ranges, Vec::<PathBuf>::new(), "host id ranges left");
    let alive: Vec<&(i32, u64)> = inits
        .0
        .iter()
        .filter(|(pid, start)| process_start_time(*pid) == Some(*start))
        .collect();
    assert!(alive.is_empty(), "inits left running: {alive:?}");
    // Nothing a killed driver started outlives it (a namespace holder it had just cloned, say):
    // such a process still has the driver's command line, which names the data directory.
    let data_arg = data.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(2);
    let left = loop {
        let left = processes_with_arg(&data_arg);
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(left.is_empty(), "driver processes left: {left:?}");
    assert_eq!(
        walkdir(&data.join("sandboxes"))
            .into_iter()
            .filter(|p| !p.ends_with(".lock"))
            .collect::<Vec<_>>(),
        Vec::<PathBuf>::new(),
        "files left"
    );
    eprintln!(
        "crash test: {steps:?} steps, {} inits, {:.1} s",
        inits.0.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Pids of the processes with `arg` among their arguments (zombies have none).
fn processes_with_arg(arg: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}
