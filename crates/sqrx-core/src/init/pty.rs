//! Running one process on a pseudo-terminal for the host: the terminal's output streams as
//! stdout frames; the host sends keystrokes (stdin frames) and size changes (resize frames).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::server::fail;
use crate::protocol::{self, ExecSpec, Exit, FailureKind, Kind, PtySize, Started};

const CHUNK: usize = 64 * 1024;

fn winsize(size: PtySize) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Run `spec` on a new pty of `size`, relaying until the process exits.
pub(super) fn run(
    mut stream: UnixStream,
    spec: ExecSpec,
    size: PtySize,
    seq: &std::sync::atomic::AtomicU64,
) {
    let Some(program) = spec.argv.first() else {
        return fail(&mut stream, FailureKind::Invalid, "empty command".into());
    };
    let pty = match nix::pty::openpty(Some(&winsize(size)), None) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                &mut stream,
                FailureKind::Internal,
                format!("cannot open a pty: {e}"),
            );
        }
    };
    let stdio = |what: &str| -> Result<Stdio, String> {
        pty.slave
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("cannot set up the pty {what}: {e}"))
    };
    let (stdin, stdout, stderr) = match (stdio("stdin"), stdio("stdout"), stdio("stderr")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return fail(&mut stream, FailureKind::Internal, e);
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(
            "TERM",
            spec.env
                .iter()
                .find(|(k, _)| k == "TERM")
                .map_or("xterm-256color", |(_, v)| v),
        )
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    if let Err((kind, msg)) = super::user::apply(&mut cmd, &spec) {
        return fail(&mut stream, kind, msg);
    }
    crate::sys::pty::controlling_terminal(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let (kind, msg) = super::exec::spawn_error(&spec, e);
            return fail(&mut stream, kind, msg);
        }
    };
    drop(cmd);
    drop(pty.slave);
    let pid = child.id() as i32;
    // The process leads a session of its own (its terminal's): a shell with job control puts
    // each job in a process group of its own, so the whole session is what goes.
    let kill_group = || kill_session(pid);
    if protocol::write_json(&mut stream, Kind::Started, &Started { pid }).is_err() {
        kill_group();
        let _ = child.wait();
        return;
    }
    let master = std::fs::File::from(pty.master);

    // Keystrokes and resizes from the host, on their own thread.
    let host_gone = Arc::new(AtomicBool::new(false));
    if let (Ok(mut reader), Ok(mut input)) = (stream.try_clone(), master.try_clone()) {
        let gone = Arc::clone(&host_gone);
        let _ = std::thread::Builder::new().spawn(move || {
            loop {
                match protocol::read_frame(&mut reader) {
                    Ok(Some((Kind::Stdin, data))) => {
                        let _ = input.write_all(&data);
                    }
                    // End of input on a terminal is ^D.
                    Ok(Some((Kind::StdinEof, _))) => {
                        let _ = input.write_all(&[4]);
                    }
                    Ok(Some((Kind::Resize, data))) => {
                        if let Ok(size) = serde_json::from_slice::<PtySize>(&data) {
                            let _ = crate::sys::pty::set_window_size(&input, size.cols, size.rows);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        gone.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
    }

    let started = Instant::now();
    let deadline = spec
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut exit = Exit::default();
    let mut status: Option<ExitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut master = master;
    loop {
        if host_gone.load(Ordering::Relaxed) && status.is_none() {
            kill_group();
        }
        if let Some(d) = deadline
            && status.is_none()
            && Instant::now() >= d
        {
            exit.timed_out = true;
            kill_group();
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(10u8)).unwrap_or(0);
        let hup = fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        if ready > 0 {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if protocol::write_frame(&mut stream, Kind::Stdout, &buf[..n]).is_err() {
                        host_gone.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
                // EIO: every slave fd is closed (the process and its children are gone).
                Err(_) if hup || status.is_some() => break,
                Err(_) => {}
            }
        }
        if status.is_none()
            && let Ok(Some(s)) = child.try_wait()
        {
            status = Some(s);
            exited_at = Some(Instant::now());
        }
        // Background processes may keep the terminal open: stop relaying shortly after exit.
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(30)) {
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => match child.wait() {
            Ok(s) => s,
            Err(_) => std::os::unix::process::ExitStatusExt::from_raw(0),
        },
    };
    let base = super::exec::exit_of(status);
    exit.code = base.code;
    exit.signal = base.signal;
    exit.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = protocol::write_json(&mut stream, Kind::Exit, &exit);
}

/// SIGKILL every process of session `sid` (this pid namespace's `/proc` lists only the
/// sandbox's processes). Run twice: a process may fork while the first pass runs.
fn kill_session(sid: i32) {
    for _ in 0..2 {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if session_of(&stat) == Some(sid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The session id in a `/proc/<pid>/stat` line (its sixth field; the command name before it
/// may hold spaces and parentheses, so fields are counted from the last `)`).
fn session_of(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::session_of;

    #[test]
    fn session_ids_are_read_past_odd_names() {
        assert_eq!(session_of("42 (sh) S 1 42 42 34816 42 4194560"), Some(42));
        assert_eq!(session_of("7 (a) b (c)) R 1 5 9 0 -1"), Some(9));
        assert_eq!(session_of("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert_eq!(
            session_of(&own),
            Some(nix::unistd::getsid(None).expect("sid").as_raw())
        );
    }
}
