//! Running one process for the host: spawn, output streaming with caps, stdin, timeouts that
//! kill the whole process group.
//!
//! The server already runs with the sandbox's capability set, `no_new_privs` and seccomp
//! filters (see `server::serve`), so children inherit them and are started with
//! `posix_spawn` (vfork) instead of fork + pre-exec hooks: an exec costs well under a
//! millisecond.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::server::fail;
use crate::protocol::{self, ExecSpec, Exit, FailureKind, Kind, Started};

/// How long output may keep flowing after the process exits (from background processes that
/// inherited its stdout) before the exec is reported finished.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(30);
const CHUNK: usize = 64 * 1024;

pub(super) fn exit_of(status: ExitStatus) -> Exit {
    Exit {
        code: status.code(),
        signal: status.signal(),
        ..Exit::default()
    }
}

fn command(spec: &ExecSpec) -> Result<Command, (FailureKind, String)> {
    let Some(program) = spec.argv.first() else {
        return Err((FailureKind::Invalid, "empty command".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    super::user::apply(&mut cmd, spec)?;
    Ok(cmd)
}

pub(super) fn spawn_error(spec: &ExecSpec, e: std::io::Error) -> (FailureKind, String) {
    let program = spec.argv.first().map(String::as_str).unwrap_or("");
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            if spec.cwd.is_empty() || std::path::Path::new(&spec.cwd).is_dir() {
                (
                    FailureKind::NotFound,
                    format!("{program}: command not found"),
                )
            } else {
                (
                    FailureKind::NotFound,
                    format!("working directory {} does not exist", spec.cwd),
                )
            }
        }
        std::io::ErrorKind::PermissionDenied => (
            FailureKind::Permission,
            format!("{program}: permission denied"),
        ),
        // fork/clone fails with EAGAIN at the pids limit and ENOMEM at the memory limit.
        _ if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOMEM)) => (
            FailureKind::Limit,
            format!("cannot start {program}: {e} (the sandbox's pids or memory limit is reached)"),
        ),
        _ => (
            FailureKind::Internal,
            format!("cannot start {program}: {e}"),
        ),
    }
}

/// Start a background process with no stdio.
pub(super) fn spawn_background(spec: &ExecSpec) -> Result<Child, (FailureKind, String)> {
    let mut cmd = command(spec)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().map_err(|e| spawn_error(spec, e))
}

fn set_nonblocking(fd: &impl AsFd) {
    if let Ok(flags) = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

/// Run `spec`, streaming its output on `stream` until it exits.
pub(super) fn run(mut stream: UnixStream, spec: ExecSpec, seq: &std::sync::atomic::AtomicU64) {
    if let Some(size) = spec.pty {
        return super::pty::run(stream, spec, size, seq);
    }
    let mut cmd = match command(&spec) {
        Ok(c) => c,
        Err((kind, msg)) => return fail(&mut stream, kind, msg),
    };
    cmd.stdin(if spec.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let (kind, msg) = spawn_error(&spec, e);
            return fail(&mut stream, kind, msg);
        }
    };
    let pid = child.id() as i32;
    let pgid = nix::unistd::Pid::from_raw(pid);
    let kill_group = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    if protocol::write_json(&mut stream, Kind::Started, &Started { pid }).is_err() {
        kill_group();
        let _ = child.wait();
        return;
    }

    // Frames from the host: stdin data, end of stdin, or the host going away.
    // Without stdin, the main loop below watches the connection itself (no extra thread).
    let host_gone = Arc::new(AtomicBool::new(false));
    let mut watch_socket = !spec.stdin;
    if !watch_socket && let Ok(mut reader) = stream.try_clone() {
        let mut stdin = child.stdin.take();
        let gone = Arc::clone(&host_gone);
        // Without a thread (task limit reached) stdin stays unfed and is closed.
        let _ = std::thread::Builder::new().spawn(move || {
            loop {
                match protocol::read_frame(&mut reader) {
                    Ok(Some((Kind::Stdin, data))) => {
                        // A child that closed its stdin early is not an error.
                        if let Some(s) = stdin.as_mut()
                            && s.write_all(&data).is_err()
                        {
                            stdin = None;
                        }
                    }
                    Ok(Some((Kind::StdinEof, _))) => stdin = None,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        gone.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
    }

    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group();
        let _ = child.wait();
        return fail(
            &mut stream,
            FailureKind::Internal,
            "child pipes missing".into(),
        );
    };
    set_nonblocking(&out);
    set_nonblocking(&err);
    let sock_fd = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => {
            kill_group();
            let _ = child.wait();
            return;
        }
    };
    let started = Instant::now();
    let deadline = spec
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut exit = Exit::default();
    let mut status: Option<ExitStatus> = None;
    let mut quiet_since: Option<Instant> = None;
    let (mut out_open, mut err_open) = (true, true);
    let (mut out_sent, mut err_sent) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];

    while out_open || err_open {
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
        let mut fds = Vec::with_capacity(3);
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
        }
        let sock_index = fds.len();
        if watch_socket && !host_gone.load(Ordering::Relaxed) {
            fds.push(PollFd::new(sock_fd.as_fd(), PollFlags::POLLIN));
        }
        let ready = poll(&mut fds, PollTimeout::from(10u8)).unwrap_or(0);
        let mut got_data = false;
        if ready > 0 {
            let revents: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            // The host sends nothing more on an exec without stdin: readable means it left.
            if revents.get(sock_index).copied().unwrap_or(false) {
                use nix::sys::socket::{MsgFlags, recv};
                let mut probe = [0u8; 1];
                match recv(
                    sock_fd.as_raw_fd(),
                    &mut probe,
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
                ) {
                    Err(nix::errno::Errno::EAGAIN) => {}
                    // Unexpected bytes: stop watching rather than spin on them.
                    Ok(n) if n > 0 => watch_socket = false,
                    _ => host_gone.store(true, Ordering::Relaxed),
                }
            }
            let mut idx = 0;
            for which in [Kind::Stdout, Kind::Stderr] {
                let open = if which == Kind::Stdout {
                    out_open
                } else {
                    err_open
                };
                if !open {
                    continue;
                }
                let readable = revents.get(idx).copied().unwrap_or(false);
                idx += 1;
                if !readable {
                    continue;
                }
                let res = if which == Kind::Stdout {
                    out.read(&mut buf)
                } else {
                    err.read(&mut buf)
                };
                match res {
                    Ok(0) => {
                        if which == Kind::Stdout {
                            out_open = false
                        } else {
                            err_open = false
                        }
                    }
                    Ok(n) => {
                        got_data = true;
                        let (sent, truncated) = if which == Kind::Stdout {
                            (&mut out_sent, &mut exit.stdout_truncated)
                        } else {
                            (&mut err_sent, &mut exit.stderr_truncated)
                        };
                        // Past the cap, keep reading (so the child never blocks or gets
                        // SIGPIPE) but send nothing more.
                        let room = spec.output_cap.saturating_sub(*sent) as usize;
                        let send = n.min(room);
                        if send < n {
                            *truncated = true;
                        }
                        if send > 0 {
                            *sent += send as u64;
                            if protocol::write_frame(&mut stream, which, &buf[..send]).is_err() {
                                host_gone.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        if which == Kind::Stdout {
                            out_open = false
                        } else {
                            err_open = false
                        }
                    }
                }
            }
        }
        if status.is_none()
            && let Ok(Some(s)) = child.try_wait()
        {
            status = Some(s);
        }
        if status.is_some() {
            // The process is gone; background processes may still hold the pipes open.
            if got_data {
                quiet_since = None;
            } else {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= DRAIN_AFTER_EXIT {
                    break;
                }
            }
        }
    }
    let status = match status {
        Some(s) => s,
        None => match child.wait() {
            Ok(s) => s,
            Err(_) => ExitStatus::from_raw(0),
        },
    };
    if exit.timed_out {
        // Stragglers of the group that were forked while the kill was under way.
        kill_group();
    }
    let base = exit_of(status);
    exit.code = base.code;
    exit.signal = base.signal;
    exit.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = protocol::write_json(&mut stream, Kind::Exit, &exit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &str) -> ExecSpec {
        ExecSpec {
            argv: vec![argv.into()],
            env: Vec::new(),
            cwd: "/".into(),
            timeout_ms: None,
            output_cap: 0,
            stdin: false,
            pty: None,
            user: None,
        }
    }

    #[test]
    fn spawn_errors_are_classified() {
        let kind = |raw| spawn_error(&spec("python3"), std::io::Error::from_raw_os_error(raw)).0;
        assert_eq!(kind(libc::EAGAIN), FailureKind::Limit);
        assert_eq!(kind(libc::ENOMEM), FailureKind::Limit);
        assert_eq!(kind(libc::ENOENT), FailureKind::NotFound);
        assert_eq!(kind(libc::EACCES), FailureKind::Permission);
        assert_eq!(kind(libc::EIO), FailureKind::Internal);
        let (_, message) =
            spawn_error(&spec("sh"), std::io::Error::from_raw_os_error(libc::EAGAIN));
        assert!(message.contains("pids or memory limit"), "{message}");
    }
}
