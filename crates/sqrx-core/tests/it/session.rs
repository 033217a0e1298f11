//! Sessions end to end as root: the built-in info service over WebSocket through
//! `Sandbox::connect`, TTL expiry, stop by token, limits.

use std::time::Duration;

use sqrx_core::session::{SessionConfig, SessionManager, SessionStatus, SessionTemplate};
use sqrx_core::{ErrorKind, SandboxError};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, block};

fn manager(t: &TestRuntime, max: usize) -> SessionManager {
    SessionManager::new(
        t.rt.clone(),
        SessionConfig {
            max_sessions: max,
            reap_interval: Duration::from_millis(100),
            ..Default::default()
        },
    )
}

/// The first frame the session's WebSocket service sends, as JSON.
fn first_frame(t: &TestRuntime, sandbox_id: &str, port: u16) -> serde_json::Value {
    let sb = t.rt.get(sandbox_id).expect("sandbox");
    let tcp = sb
        .connect_tcp(port, Duration::from_secs(2))
        .expect("connect");
    let (mut ws, _) = tungstenite::client("ws://session/", tcp).expect("handshake");
    let msg = ws.read().expect("frame");
    let _ = ws.close(None);
    serde_json::from_str(msg.to_text().expect("text")).expect("json")
}

#[test]
fn a_session_serves_its_info_and_expires() {
    if !privileged("a_session_serves_its_info_and_expires") {
        return;
    }
    let t = TestRuntime::new();
    let m = manager(&t, 10);
    let s = block(m.open(None, Some("tester"), Some(Duration::from_secs(3)))).expect("open");
    assert_eq!(s.status, SessionStatus::Running);
    assert_eq!(s.id.len(), 32);
    assert_eq!(s.termination_token.len(), 32);
    assert_ne!(s.id, s.termination_token);
    let started = s.started_at.expect("started_at");
    assert!(started >= s.created_at && started <= s.valid_till);
    let info = first_frame(&t, &s.sandbox_id, s.port);
    assert_eq!(info["hostname"], s.sandbox_id.as_str());
    assert_eq!(info["layers"], serde_json::json!(["000-base"]));
    assert!(info["uptime_s"].is_u64(), "{info}");

    // Expiry: the status changes within a second of valid_till and the sandbox goes.
    let mut watch = m.watch(&s.id).expect("watch");
    block(async {
        tokio::time::timeout(Duration::from_secs(6), watch.wait_for(|st| st.is_over()))
            .await
            .expect("expired in time")
            .expect("watch");
    });
    let late = chrono::Utc::now() - s.valid_till;
    assert!(
        late < chrono::Duration::milliseconds(1000),
        "expired {late} late"
    );
    assert_eq!(
        m.status(&s.id).expect("status").status,
        SessionStatus::Expired
    );
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        matches!(t.rt.get(&s.sandbox_id), Err(SandboxError::NotFound { .. }))
    });
    assert!(gone, "the expired session's sandbox is still there");
}

#[test]
fn stop_by_token_limits_and_errors() {
    if !privileged("stop_by_token_limits_and_errors") {
        return;
    }
    let t = TestRuntime::new();
    let m = manager(&t, 1);
    let s = block(m.open(None, None, None)).expect("open");
    let e = block(m.open(None, None, None)).expect_err("limit");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let e = block(m.open(Some("nope"), None, None)).expect_err("template");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = block(m.open(None, None, Some(Duration::from_secs(100_000)))).expect_err("ttl");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    let wrong = "0".repeat(32);
    let e = block(m.stop(&wrong)).expect_err("wrong token");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        m.status(&s.id).expect("status").status,
        SessionStatus::Running
    );
    assert!(
        t.rt.get(&s.sandbox_id).is_ok(),
        "a wrong token had an effect"
    );

    let before = s.valid_till;
    let ext = m
        .extend(&s.termination_token, Duration::from_secs(60))
        .expect("extend");
    assert_eq!(ext.valid_till, before + chrono::Duration::seconds(60));

    let stopped = block(m.stop(&s.termination_token)).expect("stop");
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(matches!(
        t.rt.get(&s.sandbox_id),
        Err(SandboxError::NotFound { .. })
    ));
    // Idempotent, and the slot is free again.
    assert_eq!(
        block(m.stop(&s.termination_token)).expect("again").status,
        SessionStatus::Stopped
    );
    let custom = SessionTemplate {
        name: "shell".into(),
        command: Some("sleep 1000".into()),
        start_timeout: 1,
        ..SessionTemplate::builtin()
    };
    m.add_template(custom).expect("template");
    let e = block(m.open(Some("shell"), None, None)).expect_err("no service");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(m.active(), 0);
    assert!(t.rt.list().is_empty(), "a failed open left its sandbox");
}

/// Write a session file as a manager would.
fn save_session(t: &TestRuntime, s: &sqrx_core::session::Session) {
    let dir = t.rt.data_dir().join("sessions");
    std::fs::create_dir_all(&dir).expect("sessions dir");
    std::fs::write(
        dir.join(format!("{}.json", s.id)),
        serde_json::to_vec(s).expect("json"),
    )
    .expect("write session");
}

#[test]
fn a_new_manager_takes_over_the_sessions_of_the_last() {
    if !privileged("a_new_manager_takes_over_the_sessions_of_the_last") {
        return;
    }
    let t = TestRuntime::new();
    let m = manager(&t, 10);
    let kept = block(m.open(None, None, Some(Duration::from_secs(60)))).expect("open");
    let kept = m
        .extend(&kept.termination_token, Duration::from_secs(30))
        .expect("extend");
    let stopped = block(m.open(None, None, None)).expect("open");
    let stopped = block(m.stop(&stopped.termination_token)).expect("stop");
    // What a manager that died at the wrong moment leaves: a session it was starting (its
    // sandbox made), one whose sandbox has gone since, and one that ended long ago.
    let now = chrono::Utc::now();
    let starting = sqrx_core::session::Session {
        id: "a".repeat(32),
        termination_token: "b".repeat(32),
        sandbox_id: format!("session-{}", "a".repeat(32)),
        status: SessionStatus::Starting,
        started_at: None,
        ..kept.clone()
    };
    t.create(&starting.sandbox_id);
    let orphan = sqrx_core::session::Session {
        id: "c".repeat(32),
        termination_token: "d".repeat(32),
        sandbox_id: format!("session-{}", "c".repeat(32)),
        ..kept.clone()
    };
    let ancient = sqrx_core::session::Session {
        id: "e".repeat(32),
        termination_token: "f".repeat(32),
        sandbox_id: format!("session-{}", "e".repeat(32)),
        status: SessionStatus::Expired,
        created_at: now - chrono::Duration::hours(3),
        valid_till: now - chrono::Duration::hours(2),
        ..kept.clone()
    };
    for s in [&starting, &orphan, &ancient] {
        save_session(&t, s);
    }
    drop(m);

    let m = manager(&t, 10);
    assert_eq!(
        m.status(&kept.id).expect("kept"),
        kept,
        "taken over as it was"
    );
    assert_eq!(
        m.status(&stopped.id).expect("stopped").status,
        SessionStatus::Stopped
    );
    assert!(
        m.status(&ancient.id).is_err(),
        "an old ended session is forgotten"
    );
    let sessions_dir = t.rt.data_dir().join("sessions");
    assert!(!sessions_dir.join(format!("{}.json", ancient.id)).exists());
    // The half-started and the orphaned session end at the next reap; the sandbox goes.
    for id in [&starting.id, &orphan.id] {
        let mut watch = m.watch(id).expect("watch");
        block(async {
            tokio::time::timeout(Duration::from_secs(5), watch.wait_for(|st| st.is_over()))
                .await
                .expect("ended in time")
                .expect("watch");
        });
        assert_eq!(m.status(id).expect("status").status, SessionStatus::Expired);
    }
    // Watchers learn of the end first; the sandbox goes right after.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !matches!(
        t.rt.get(&starting.sandbox_id),
        Err(SandboxError::NotFound { .. })
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the half-started session's sandbox stayed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kept session's service still answers, and its token still stops it.
    let info = first_frame(&t, &kept.sandbox_id, kept.port);
    assert_eq!(info["hostname"], kept.sandbox_id.as_str());
    assert_eq!(m.active(), 1);
    let ended = block(m.stop(&kept.termination_token)).expect("stop");
    assert_eq!(ended.status, SessionStatus::Stopped);
    assert!(t.rt.get(&kept.sandbox_id).is_err(), "the sandbox stayed");
    let saved: sqrx_core::session::Session = serde_json::from_slice(
        &std::fs::read(sessions_dir.join(format!("{}.json", kept.id))).expect("file"),
    )
    .expect("json");
    assert_eq!(saved.status, SessionStatus::Stopped, "the end is saved too");
}

/// Append a terminal's output to `screen` until it shows `needle` (10 s at most).
async fn read_until(
    events: &mut tokio::sync::mpsc::Receiver<Result<sqrx_core::ExecEvent, SandboxError>>,
    needle: &str,
    screen: &mut String,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !screen.contains(needle) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {screen:?}"))
            .expect("open")
            .expect("event");
        if let sqrx_core::ExecEvent::Stdout(d) = ev {
            screen.push_str(&String::from_utf8_lossy(&d));
        }
    }
}

#[test]
fn a_pty_exec_is_a_terminal() {
    if !privileged("a_pty_exec_is_a_terminal") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("tty");
    block(async {
        let req = sqrx_core::ExecRequest::new(sqrx_core::Command::Argv(vec!["/bin/sh".into()]));
        let (mut events, input, _pid) = sb.exec_pty(req, 80, 24).await.expect("pty");
        let mut screen = String::new();
        let mut wait_for =
            async |needle: &str, screen: &mut String| read_until(&mut events, needle, screen).await;
        input
            .write(b"readlink /proc/self/fd/0; echo $((6*7))\n".to_vec())
            .await
            .expect("type");
        wait_for("42", &mut screen).await;
        assert!(screen.contains("/dev/pts/"), "{screen}");
        input.write(b"stty size\n".to_vec()).await.expect("type");
        wait_for("24 80", &mut screen).await;
        input.resize(100, 40).await.expect("resize");
        input.write(b"stty size\n".to_vec()).await.expect("type");
        wait_for("40 100", &mut screen).await;
        input.write(b"exit 3\n".to_vec()).await.expect("type");
        loop {
            match events.recv().await {
                Some(Ok(sqrx_core::ExecEvent::Exit(r))) => {
                    assert_eq!(r.exit_code, Some(3));
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("no exit: {other:?}"),
            }
        }
        assert!(input.resize(0, 1).await.is_err());
    });
}

#[test]
fn a_terminal_whose_host_left_takes_its_jobs_along() {
    if !privileged("a_terminal_whose_host_left_takes_its_jobs_along") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("ttyjobs");
    block(async {
        let req = sqrx_core::ExecRequest::new(sqrx_core::Command::Argv(vec!["/bin/sh".into()]));
        let (mut events, input, _pid) = sb.exec_pty(req, 80, 24).await.expect("pty");
        // Job control: the background job gets a process group of its own.
        input
            .write(b"set -m; sleep 1000 & sleep 1001 & echo JOBS=$((1+1))\n".to_vec())
            .await
            .expect("type");
        read_until(&mut events, "JOBS=2", &mut String::new()).await;
        // The shell has forked both jobs; a child may not have exec'd `sleep` yet.
        let started = std::time::Instant::now();
        loop {
            let groups = sb
                .exec(sqrx_core::ExecRequest::new(
                    "for p in /proc/[0-9]*; do read -r l < $p/stat 2>/dev/null && case $l in *'(sleep)'*) echo \"$l\";; esac; done",
                ))
                .await
                .expect("ps");
            let text = groups.stdout_text();
            if text.lines().count() == 2 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "two jobs running: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The host goes away.
        drop(events);
        drop(input);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = sb
                .exec(sqrx_core::ExecRequest::new(
                    "for p in /proc/[0-9]*; do read -r l < $p/stat 2>/dev/null && case $l in *'(sleep)'*) echo \"$l\";; esac; done",
                ))
                .await
                .expect("ps");
            if left.stdout_text().trim().is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "jobs outlived their terminal: {}",
                left.stdout_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
