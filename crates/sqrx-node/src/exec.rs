//! Exec options and results, streamed events and background processes.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use sqrx_core::sandbox::SpawnHandle;
use sqrx_core::{Command, ExecRequest};
use tokio::sync::Mutex;

use crate::error::{invalid, to_napi};

/// How to run a command (every field optional).
#[napi(object)]
pub struct ExecOptions {
    /// Variables added to the sandbox's clean environment.
    pub env: Option<HashMap<String, String>>,
    /// Working directory inside the sandbox (absolute; default: the user's home, `/` for root).
    pub workdir: Option<String>,
    /// Run as this account of the sandbox's `/etc/passwd` (a name or a uid; default root).
    pub user: Option<String>,
    /// Fed to the process's stdin (a string as UTF-8), then closed.
    pub stdin: Option<Either<Buffer, String>>,
    /// Kill the command's whole process tree after this many milliseconds.
    pub timeout_ms: Option<f64>,
    /// Bytes kept per output stream (default 1 MiB); the rest is drained and dropped.
    pub output_cap: Option<f64>,
}

/// `string` → `/bin/sh -c`; `string[]` → argv.
pub(crate) fn request(
    command: Either<String, Vec<String>>,
    options: Option<ExecOptions>,
) -> napi::Result<ExecRequest> {
    let mut req = ExecRequest::new(match command {
        Either::A(line) => Command::Shell(line),
        Either::B(argv) => Command::Argv(argv),
    });
    let Some(o) = options else { return Ok(req) };
    req.env = o.env.unwrap_or_default().into_iter().collect();
    req.workdir = o.workdir;
    req.user = o.user;
    req.stdin = o.stdin.map(|s| match s {
        Either::A(buf) => buf.to_vec(),
        Either::B(text) => text.into_bytes(),
    });
    req.timeout = o
        .timeout_ms
        .map(|ms| {
            std::time::Duration::try_from_secs_f64(ms / 1000.0)
                .map_err(|_| invalid(format!("timeoutMs {ms} is not a number of ms >= 0")))
        })
        .transpose()?;
    req.output_cap = o
        .output_cap
        .map(|cap| {
            if cap.is_finite() && cap >= 0.0 {
                Ok(cap as u64)
            } else {
                Err(invalid(format!("outputCap {cap} is not a byte count")))
            }
        })
        .transpose()?;
    Ok(req)
}

/// How an exec ended.
#[napi(object)]
pub struct ExecResult {
    /// Exit code; absent when a signal killed the process.
    pub exit_code: Option<i32>,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// Captured stdout (at most the output cap).
    pub stdout: Buffer,
    /// Captured stderr (at most the output cap).
    pub stderr: Buffer,
    /// stdout decoded as UTF-8 (invalid bytes replaced).
    pub text: String,
    /// stderr decoded as UTF-8 (invalid bytes replaced).
    pub stderr_text: String,
    /// Output passed the cap and was cut.
    pub truncated: bool,
    /// The timeout fired and the exec's whole process tree was killed.
    pub timed_out: bool,
    /// The sandbox's memory limit was hit and the kernel killed the process.
    pub oom_killed: bool,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it finished.
    pub finished: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
}

impl From<sqrx_core::ExecResult> for ExecResult {
    fn from(r: sqrx_core::ExecResult) -> Self {
        ExecResult {
            exit_code: r.exit_code,
            signal: r.signal,
            text: r.stdout_text(),
            stderr_text: r.stderr_text(),
            stdout: r.stdout.into(),
            stderr: r.stderr.into(),
            truncated: r.truncated,
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            started: r.started,
            finished: r.finished,
            duration_ms: r.duration_ms as f64,
        }
    }
}

/// One event of a streaming exec: `"stdout"` and `"stderr"` chunks, then `"exit"` (with
/// `result`).
#[napi(object)]
pub struct ExecEvent {
    /// `"stdout"`, `"stderr"` or `"exit"`.
    pub kind: String,
    /// The bytes written (empty for `"exit"`).
    pub data: Buffer,
    /// The exec's result, on the `"exit"` event.
    pub result: Option<ExecResult>,
}

impl From<sqrx_core::ExecEvent> for ExecEvent {
    fn from(event: sqrx_core::ExecEvent) -> Self {
        let (kind, data, result) = match event {
            sqrx_core::ExecEvent::Stdout(d) => ("stdout", d, None),
            sqrx_core::ExecEvent::Stderr(d) => ("stderr", d, None),
            sqrx_core::ExecEvent::Exit(r) => ("exit", Vec::new(), Some(r.into())),
        };
        ExecEvent {
            kind: kind.to_string(),
            data: data.into(),
            result,
        }
    }
}

enum StreamState {
    /// Started by the first `next()`, so `execStream()` can return an iterable at once.
    NotStarted(Box<(sqrx_core::Sandbox, ExecRequest)>),
    Running(sqrx_core::sandbox::ExecStream),
    Done,
}

/// The events of an exec, in order: `for await (const ev of sb.execStream(cmd))`. The exec
/// starts with the first `next()`; leaving the loop early (or `close()`) stops it.
#[napi]
pub struct ExecStream {
    state: Arc<Mutex<StreamState>>,
}

impl ExecStream {
    pub(crate) fn new(sandbox: sqrx_core::Sandbox, req: ExecRequest) -> Self {
        ExecStream {
            state: Arc::new(Mutex::new(StreamState::NotStarted(Box::new((
                sandbox, req,
            ))))),
        }
    }
}

#[napi]
impl ExecStream {
    /// The next event, or `null` after the `"exit"` event.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<ExecEvent>> {
        let mut state = self.state.lock().await;
        if let StreamState::NotStarted(start) = &*state {
            let (sb, req) = &**start;
            let stream = sb.exec_stream(req.clone()).await;
            *state = match stream {
                Ok(s) => StreamState::Running(s),
                Err(e) => {
                    *state = StreamState::Done;
                    return Err(to_napi(e));
                }
            };
        }
        let StreamState::Running(stream) = &mut *state else {
            return Ok(None);
        };
        match stream.next().await {
            Some(Ok(event)) => {
                if matches!(event, sqrx_core::ExecEvent::Exit(_)) {
                    *state = StreamState::Done;
                }
                Ok(Some(event.into()))
            }
            Some(Err(e)) => {
                *state = StreamState::Done;
                Err(to_napi(e))
            }
            None => {
                *state = StreamState::Done;
                Ok(None)
            }
        }
    }

    /// Stop the exec (its process group is killed) and end the iteration.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        *self.state.lock().await = StreamState::Done;
        Ok(())
    }
}

/// A background process started with `sandbox.spawn()`.
#[napi]
pub struct Process {
    handle: SpawnHandle,
}

impl Process {
    pub(crate) fn new(handle: SpawnHandle) -> Self {
        Process { handle }
    }
}

/// How a background process ended.
#[napi(object)]
pub struct ProcessExit {
    /// Exit code; absent when a signal killed it.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

#[napi]
impl Process {
    /// Its pid inside the sandbox.
    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.handle.pid
    }

    /// Wait for the process to exit; with `timeoutMs`, reject with code `Timeout` if it still
    /// runs by then (it keeps running and can be waited for again).
    #[napi]
    pub async fn wait(&self, timeout_ms: Option<u32>) -> napi::Result<ProcessExit> {
        let waited = match timeout_ms {
            Some(ms) => {
                self.handle
                    .wait_timeout(std::time::Duration::from_millis(u64::from(ms)))
                    .await
            }
            None => self.handle.wait().await,
        };
        let (exit_code, signal) = waited.map_err(to_napi)?;
        Ok(ProcessExit { exit_code, signal })
    }

    /// Send `signal` (default 15, SIGTERM) to the process and its process group.
    #[napi]
    pub async fn kill(&self, signal: Option<i32>) -> napi::Result<()> {
        self.handle
            .kill(signal.unwrap_or(15))
            .await
            .map_err(to_napi)
    }
}
