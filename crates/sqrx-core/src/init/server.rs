//! The control-socket server (PID 2 of the sandbox): one thread per connection.

use std::collections::HashMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::sync::{Arc, Mutex};

use super::exec;
use super::seccomp::Filters;
use crate::protocol::{self, Exit, Failure, FailureKind, Kind, Request};

/// Background processes started with `Spawn`, kept for `Wait`.
#[derive(Default)]
pub(super) struct Spawned {
    children: HashMap<i32, Child>,
    exited: HashMap<i32, Exit>,
}

impl Spawned {
    /// Collect the exit status of finished background processes (no zombies pile up).
    fn reap(&mut self) {
        let done: Vec<(i32, Exit)> = self
            .children
            .iter_mut()
            .filter_map(|(pid, c)| {
                c.try_wait()
                    .ok()
                    .flatten()
                    .map(|s| (*pid, exec::exit_of(s)))
            })
            .collect();
        for (pid, exit) in done {
            self.children.remove(&pid);
            self.exited.insert(pid, exit);
        }
    }
}

pub(super) struct State {
    pub spawned: Mutex<Spawned>,
    /// Numbers the execs of this sandbox, for the host's exec history.
    pub exec_seq: std::sync::atomic::AtomicU64,
}

/// Confine the server itself: everything it starts inherits this. With `setuid`, setuid
/// programs may raise privileges (no `no_new_privs`); the seccomp filter is then installed
/// while `CAP_SYS_ADMIN` is still held, as the kernel requires without `no_new_privs`.
fn confine(setuid: bool) -> Result<(), String> {
    use crate::weaken::off;
    let filters = Filters::build().map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    // The workload must be the OOM killer's choice: only PID 1 keeps its protection.
    let _ = crate::sys::caps::reset_oom_score_adj();
    // Not dumpable: the workload (same uid) cannot ptrace this server or reach its memory and
    // descriptors through /proc/<pid>/*; exec'd children are dumpable again.
    if !off("dumpable") {
        crate::sys::idmap::set_non_dumpable()
            .map_err(|e| format!("cannot make the server non-dumpable: {e}"))?;
    }
    let seccomp = || {
        if off("seccomp") {
            return Ok(());
        }
        if setuid {
            filters.apply_keeping_privs()
        } else {
            filters.apply()
        }
        .map_err(|e| format!("cannot install the seccomp filter: {e}"))
    };
    if setuid {
        seccomp()?;
    }
    if !off("caps") {
        crate::sys::caps::drop_to_default(crate::sys::caps::last_cap())
            .map_err(|e| format!("cannot drop capabilities: {e}"))?;
    }
    if setuid {
        return Ok(());
    }
    if !off("nnp") {
        crate::sys::caps::set_no_new_privs()
            .map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    }
    seccomp()
}

/// Serve forever (until the listener fails).
/// `exec_seq_base`: the number of the last exec of an earlier init of this sandbox; `setuid`:
/// see [`confine`].
pub(super) fn serve(listener: UnixListener, exec_seq_base: u64, setuid: bool) {
    if let Err(e) = confine(setuid) {
        super::setup::SetupError::from(e).report("sqrx-init");
        return;
    }
    super::setup::say_ready();
    // The host's pipe (stdin) and init.log (stderr) are host files: the server keeps neither.
    super::setup::release_stdio();
    let state = Arc::new(State {
        spawned: Mutex::new(Spawned::default()),
        exec_seq: std::sync::atomic::AtomicU64::new(exec_seq_base),
    });
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                // At the sandbox's task limit no thread can be started: serve the request on
                // this thread instead (signals and waits need no new task), never die.
                let slot = Arc::new(Mutex::new(Some(stream)));
                let (thread_slot, thread_state) = (Arc::clone(&slot), Arc::clone(&state));
                let spawned = std::thread::Builder::new().spawn(move || {
                    if let Some(s) = thread_slot.lock().ok().and_then(|mut g| g.take()) {
                        handle(s, &thread_state);
                    }
                });
                if spawned.is_err()
                    && let Some(s) = slot.lock().ok().and_then(|mut g| g.take())
                {
                    handle(s, &state);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("sqrx-init: accept: {e}");
                return;
            }
        }
    }
}

pub(super) fn fail(stream: &mut UnixStream, kind: FailureKind, message: String) {
    let _ = protocol::write_json(stream, Kind::Error, &Failure { kind, message });
}

fn handle(mut stream: UnixStream, state: &State) {
    let request = match protocol::read_frame(&mut stream) {
        Ok(Some((Kind::Request, payload))) => match serde_json::from_slice::<Request>(&payload) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    &mut stream,
                    FailureKind::Invalid,
                    format!("bad request: {e}"),
                );
            }
        },
        Ok(_) => {
            return fail(
                &mut stream,
                FailureKind::Invalid,
                "expected a request frame".into(),
            );
        }
        Err(_) => return,
    };
    let mut spawned = state.spawned.lock().unwrap_or_else(|p| p.into_inner());
    spawned.reap();
    match request {
        Request::Ping => {
            drop(spawned);
            let _ =
                protocol::write_json(&mut stream, Kind::Reply, &serde_json::json!({"ok": true}));
        }
        Request::Exec(spec) => {
            drop(spawned);
            exec::run(stream, spec, &state.exec_seq);
        }
        Request::Spawn(spec) => match exec::spawn_background(&spec) {
            Ok(child) => {
                let pid = child.id() as i32;
                spawned.children.insert(pid, child);
                drop(spawned);
                let _ =
                    protocol::write_json(&mut stream, Kind::Started, &protocol::Started { pid });
            }
            Err((kind, message)) => fail(&mut stream, kind, message),
        },
        Request::Wait { pid, timeout_ms } => {
            if let Some(exit) = spawned.exited.remove(&pid) {
                drop(spawned);
                let _ = protocol::write_json(&mut stream, Kind::Exit, &exit);
                return;
            }
            let Some(mut child) = spawned.children.remove(&pid) else {
                drop(spawned);
                return fail(
                    &mut stream,
                    FailureKind::NotFound,
                    format!("no background process {pid}"),
                );
            };
            drop(spawned);
            let exit = match timeout_ms {
                None => child.wait().map(exec::exit_of).unwrap_or_default(),
                Some(ms) => {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                    loop {
                        match child.try_wait() {
                            Ok(Some(status)) => break exec::exit_of(status),
                            Ok(None) if std::time::Instant::now() < deadline => {
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                            Ok(None) => {
                                // Still running: put it back so a later wait finds it.
                                let mut spawned =
                                    state.spawned.lock().unwrap_or_else(|p| p.into_inner());
                                spawned.children.insert(pid, child);
                                drop(spawned);
                                return fail(
                                    &mut stream,
                                    FailureKind::Timeout,
                                    format!("process {pid} still runs after {ms} ms"),
                                );
                            }
                            Err(_) => break Exit::default(),
                        }
                    }
                }
            };
            let _ = protocol::write_json(&mut stream, Kind::Exit, &exit);
        }
        Request::Connect { port, timeout_ms } => {
            drop(spawned);
            connect(&mut stream, port, timeout_ms);
        }
        Request::Signal { pid, signal, group } => {
            drop(spawned);
            let sig = match nix::sys::signal::Signal::try_from(signal) {
                Ok(s) => s,
                Err(_) => {
                    return fail(
                        &mut stream,
                        FailureKind::Invalid,
                        format!("bad signal {signal}"),
                    );
                }
            };
            let target = nix::unistd::Pid::from_raw(pid);
            let sent = if group {
                nix::sys::signal::killpg(target, sig)
            } else {
                nix::sys::signal::kill(target, sig)
            };
            match sent {
                Ok(()) => {
                    let _ = protocol::write_json(
                        &mut stream,
                        Kind::Reply,
                        &serde_json::json!({"ok": true}),
                    );
                }
                Err(e) => fail(
                    &mut stream,
                    FailureKind::NotFound,
                    format!("signal {pid}: {e}"),
                ),
            }
        }
    }
}

/// Connect to `127.0.0.1:port` in this network namespace and hand the socket to the host.
fn connect(stream: &mut UnixStream, port: u16, timeout_ms: u64) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_millis(timeout_ms.clamp(1, 60_000));
    match std::net::TcpStream::connect_timeout(&addr, timeout) {
        Ok(tcp) => {
            let reply = protocol::encode_frame(Kind::Reply, br#"{"ok":true}"#);
            if let Ok(bytes) = reply {
                let _ = crate::sys::fdpass::send_with_fd(stream, &bytes, &tcp);
            }
        }
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut => {
                    FailureKind::Refused
                }
                _ => FailureKind::Internal,
            };
            fail(stream, kind, format!("cannot connect to port {port}: {e}"));
        }
    }
}
