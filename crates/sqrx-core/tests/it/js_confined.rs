//! The confinement of `ConfinedJsExecutor`'s worker processes, checked from the host: who they
//! run as, what they hold, what they inherit, and that a worker killed, stuck or abandoned is
//! replaced. The behaviour of scripts under it is checked by every `js_x::confined` in `js.rs`.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqrx_core::js::{ConfinedJsExecutor, ExecutionStatus, JsLimits, JsRequest};
use sqrx_testkit::privileged;

use crate::js::{confined, heavy};

/// The fields of /proc/<pid>/status, by name.
fn status(pid: u32) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn open_fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn js_confined_worker_runs_as_nobody_without_capabilities_under_seccomp() {
    if !privileged("js_confined worker identity (the host must be root to switch users)") {
        return;
    }
    // A descriptor this process leaks without O_CLOEXEC, as a careless embedder would.
    let leaked = std::fs::File::open("/dev/null").expect("open");
    nix::fcntl::fcntl(
        &leaked,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear cloexec");

    let js = confined(JsLimits::default(), 2);
    let pids = js.worker_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for pid in pids {
        let s = status(pid);
        assert_eq!(s["Uid"], "65534\t65534\t65534\t65534", "pid {pid}: {s:?}");
        assert_eq!(s["Gid"], "65534\t65534\t65534\t65534", "pid {pid}");
        assert_eq!(s["Groups"], "", "pid {pid}: supplementary groups");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(s[set], "0000000000000000", "pid {pid}: {set}");
        }
        assert_eq!(s["NoNewPrivs"], "1", "pid {pid}");
        assert_eq!(s["Seccomp"], "2", "pid {pid}: seccomp filter mode");
        assert_eq!(s["PPid"], std::process::id().to_string(), "pid {pid}");
        // Not dumpable: its /proc files belong to root, not to the user it runs as.
        let owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .expect("stat")
            .uid();
        assert_eq!(owner, 0, "pid {pid}: /proc/<pid> of a dumpable process");
        // Only its channel, a socket, as fd 3; not the leaked descriptor, not stdio.
        assert_eq!(open_fds(pid), vec!["3".to_string()], "pid {pid}");
        let target = std::fs::read_link(format!("/proc/{pid}/fd/3")).expect("readlink");
        assert!(
            target.to_string_lossy().starts_with("socket:"),
            "{target:?}"
        );
        // A clean environment: only the variable that makes it a worker.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        assert_eq!(environ, b"SQRX_JS_WORKER=1\0", "pid {pid}");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
        assert_eq!(cwd, std::path::Path::new("/"));
    }
    // And it still runs scripts.
    let out = js.run_blocking(JsRequest::new("[1, 2, 3].map(x => x * 2)"));
    assert_eq!(out.result, serde_json::json!([2, 4, 6]), "{out:?}");
    drop(leaked);
}

#[test]
fn js_confined_worker_has_a_capped_address_space() {
    let limits = JsLimits {
        memory_bytes: 8 << 20,
        ..JsLimits::default()
    };
    let js = confined(limits, 1);
    let pid = js.worker_pids()[0];
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .expect("address space line");
    let soft: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a finite limit: {line}"));
    assert!(soft < 2 << 30, "{line}");
    for name in ["Max core file size", "Max file size"] {
        let l = text.lines().find(|l| l.starts_with(name)).expect(name);
        assert_eq!(l.split_whitespace().nth(4), Some("0"), "{l}");
    }
}

#[test]
fn js_confined_killed_idle_worker_is_replaced_unnoticed() {
    let js = confined(JsLimits::default(), 1);
    let before = js.worker_pids();
    assert_eq!(before.len(), 1);
    kill(Pid::from_raw(before[0] as i32), Signal::SIGKILL).expect("kill");
    wait_until("the killed worker is gone", || {
        std::fs::read_to_string(format!("/proc/{}/stat", before[0]))
            .map_or(true, |s| s.contains(") Z "))
    });
    for i in 0..5 {
        let out = js.run_blocking(JsRequest::new("input + 1").with_input(i.into()));
        assert_eq!(out.status, ExecutionStatus::Success, "{i}: {out:?}");
        assert_eq!(out.result, i + 1);
    }
    let after = js.worker_pids();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new worker process");
    assert!(!alive(before[0]), "the killed worker was reaped");
    assert_eq!(js.replaced_workers(), 1);
}

#[test]
fn js_confined_killed_idle_worker_is_replaced_unnoticed_by_queued_executions() {
    // The same through `run` (a supervisor thread serves it): the supervisor that finds the
    // dead worker starts its replacement itself.
    let js = confined(JsLimits::default(), 1);
    let before = js.worker_pids();
    kill(Pid::from_raw(before[0] as i32), Signal::SIGKILL).expect("kill");
    wait_until("the killed worker is gone", || {
        std::fs::read_to_string(format!("/proc/{}/stat", before[0]))
            .map_or(true, |s| s.contains(") Z "))
    });
    let out = js.run(JsRequest::new("6 * 7")).wait();
    assert_eq!(out.status, ExecutionStatus::Success, "{out:?}");
    assert_eq!(out.result, 42);
    assert_ne!(js.worker_pids(), before, "a new worker process");
    assert_eq!(js.replaced_workers(), 1);
}

#[test]
fn js_confined_worker_killed_mid_execution_reports_an_error_and_is_replaced() {
    let _g = heavy();
    let js = confined(JsLimits::default(), 1);
    let pid = js.worker_pids()[0];
    let pending = js.run(JsRequest::new("for (;;) {}"));
    std::thread::sleep(Duration::from_millis(100));
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
    let out = pending.wait();
    assert_eq!(out.status, ExecutionStatus::Error, "{out:?}");
    let e = out.error.expect("error");
    assert!(e.message.contains("SIGKILL"), "{e:?}");
    let out = js.run_blocking(JsRequest::new("6 * 7"));
    assert_eq!(out.result, 42, "{out:?}");
    assert_ne!(js.worker_pids(), vec![pid]);
}

#[test]
fn js_confined_stuck_worker_is_killed_at_the_deadline() {
    let _g = heavy();
    let limits = JsLimits {
        timeout: Duration::from_millis(100),
        memory_bytes: 1 << 30,
        ..JsLimits::default()
    };
    let js = confined(limits, 1);
    let pid = js.worker_pids()[0];
    // replaceAll over 20 MB never polls the interrupt handler: only the kill stops it.
    let out = js.run_blocking(JsRequest::new(
        "const s = 'a'.repeat(2e7); s.replaceAll('a', 'bb').length",
    ));
    assert_eq!(out.status, ExecutionStatus::Timeout, "{out:?}");
    assert!(!alive(pid), "the stuck worker was killed and reaped");
    assert_eq!(js.replaced_workers(), 1);
    assert_eq!(js.run_blocking(JsRequest::new("1")).result, 1);
}

#[test]
fn js_confined_dropped_execution_kills_its_worker() {
    let _g = heavy();
    let js = confined(JsLimits::default(), 1);
    let pid = js.worker_pids()[0];
    let pending = js.run(JsRequest::new("for (;;) {}"));
    std::thread::sleep(Duration::from_millis(50));
    drop(pending);
    // Well before the 5 s timeout.
    wait_until("the worker of the dropped execution is killed", || {
        !alive(pid)
    });
    assert_eq!(js.run_blocking(JsRequest::new("2")).result, 2);
}

#[test]
fn js_confined_dropping_the_executor_ends_its_workers() {
    let js = confined(JsLimits::default(), 2);
    let pids = js.worker_pids();
    assert_eq!(pids.len(), 2);
    drop(js);
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived its executor");
    }
}

#[test]
fn js_confined_missing_or_wrong_program_is_a_clear_error() {
    let err = ConfinedJsExecutor::builder()
        .program("/nonexistent/sqrx-init")
        .workers(1)
        .build()
        .expect_err("no such program");
    assert_eq!(err.kind(), sqrx_core::ErrorKind::Unavailable);
    assert!(err.to_string().contains("/nonexistent/sqrx-init"), "{err}");
    // A program that is not a worker: it ends before saying it is ready.
    let err = ConfinedJsExecutor::builder()
        .program("/bin/true")
        .workers(1)
        .build()
        .expect_err("not a worker");
    assert!(err.to_string().contains("before it was ready"), "{err}");
    let err = ConfinedJsExecutor::builder()
        .identity(0, 0)
        .build()
        .expect_err("root");
    assert_eq!(err.kind(), sqrx_core::ErrorKind::InvalidArgument);
}
