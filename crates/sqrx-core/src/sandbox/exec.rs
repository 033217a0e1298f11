//! Running processes in a sandbox: `exec` (buffered), `exec_stream` (chunks as they come) and
//! `spawn` (background, with a handle).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::SandboxError;
use super::logs::ExecLogEntry;
use super::runtime::Sandbox;
use super::spec::{DEFAULT_OUTPUT_CAP, ExecRequest, ExecResult};
use crate::protocol::tokio_io::{read_frame, write_frame, write_json};
use crate::protocol::{ExecSpec, Exit, Kind, Request, Started};

/// One event of a streaming exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes the process wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes the process wrote to stderr.
    Stderr(Vec<u8>),
    /// The process ended (the result's `stdout`/`stderr` hold what was streamed, up to the cap).
    Exit(ExecResult),
}

/// The events of a streaming exec; ends after [`ExecEvent::Exit`]. Dropping it before the
/// exit kills the exec's process group.
#[derive(Debug)]
pub struct ExecStream {
    rx: mpsc::Receiver<Result<ExecEvent, SandboxError>>,
    /// The process's pid inside the sandbox.
    pub pid: i32,
}

impl ExecStream {
    /// The next event, or `None` after the exit.
    pub async fn next(&mut self) -> Option<Result<ExecEvent, SandboxError>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for ExecStream {
    type Item = Result<ExecEvent, SandboxError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Where a process's stdin comes from.
enum StdinFeed {
    /// All of it up front, then end-of-file.
    Bytes(Vec<u8>),
    /// Chunks as the caller sends them; end-of-file when the sender is dropped.
    Channel(mpsc::Receiver<Vec<u8>>),
}

/// Largest stdin frame sent to init.
const STDIN_CHUNK: usize = 64 * 1024;

/// The stdin of a process started with [`Sandbox::exec_interactive`]. Dropping it (or
/// [`ExecStdin::close`]) closes the process's stdin.
#[derive(Debug)]
pub struct ExecStdin {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    id: String,
}

impl ExecStdin {
    /// Send bytes to the process. Fails once stdin is closed or the exec has ended.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), SandboxError> {
        let closed = || SandboxError::Invalid {
            field: "stdin",
            reason: format!("the stdin of this exec in sandbox {} is closed", self.id),
        };
        match &self.tx {
            Some(tx) => tx.send(data).await.map_err(|_| closed()),
            None => Err(closed()),
        }
    }

    /// Close the process's stdin (end-of-file). Bytes already sent are delivered first.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

/// A background process started with [`Sandbox::spawn`].
#[derive(Debug, Clone)]
pub struct SpawnHandle {
    sandbox: Sandbox,
    /// Its pid inside the sandbox.
    pub pid: i32,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Sandbox {
    pub(super) fn protocol_err(&self, e: impl std::fmt::Display) -> SandboxError {
        SandboxError::Protocol {
            id: self.id().to_string(),
            reason: e.to_string(),
        }
    }

    pub(super) fn command_err(&self, payload: &[u8]) -> SandboxError {
        SandboxError::from_failure(self.id(), payload)
    }

    /// Connect to init; a dead init is cleaned up and reported as [`SandboxError::Dead`], a
    /// paused sandbox (whose init is frozen too) as [`SandboxError::Paused`].
    pub(super) async fn control(&self) -> Result<UnixStream, SandboxError> {
        if self.is_paused() {
            return Err(SandboxError::Paused {
                id: self.id().to_string(),
            });
        }
        match UnixStream::connect(self.control_socket()).await {
            Ok(s) => Ok(s),
            Err(e) => {
                if !self.state.init_alive() {
                    let _ = self.cleanup();
                    return Err(SandboxError::Dead {
                        id: self.id().to_string(),
                    });
                }
                Err(self.protocol_err(e))
            }
        }
    }

    pub(super) fn spec_for(&self, req: &ExecRequest) -> ExecSpec {
        let mut env = std::collections::BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        // A named user's HOME comes from the sandbox's /etc/passwd, set by init.
        if req.user.is_none() {
            env.insert("HOME".to_string(), "/root".to_string());
        }
        env.insert("LANG".to_string(), "C.UTF-8".to_string());
        env.insert(
            "HOSTNAME".to_string(),
            self.state
                .spec
                .hostname
                .clone()
                .unwrap_or_else(|| self.id().to_string()),
        );
        env.extend(self.secret_env());
        env.extend(self.state.spec.env.clone());
        env.extend(req.env.clone());
        ExecSpec {
            argv: req.command.argv(),
            env: env.into_iter().collect(),
            // Empty: the named user's home, which init reads from the sandbox's /etc/passwd.
            cwd: req.workdir.clone().unwrap_or_else(|| match req.user {
                Some(_) => String::new(),
                None => "/".into(),
            }),
            timeout_ms: req
                .timeout
                .map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            output_cap: req.output_cap.unwrap_or(DEFAULT_OUTPUT_CAP),
            stdin: req.stdin.is_some(),
            pty: None,
            user: req.user.clone(),
        }
    }

    /// Run a process and return its output once it exits.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecResult, SandboxError> {
        let mut stream = self.exec_stream(req).await?;
        while let Some(event) = stream.next().await {
            if let ExecEvent::Exit(result) = event? {
                return Ok(result);
            }
        }
        Err(self.protocol_err("the connection closed before the process exited"))
    }

    /// Run a process and receive its output as it is written.
    pub async fn exec_stream(&self, req: ExecRequest) -> Result<ExecStream, SandboxError> {
        let feed = req.stdin.clone().map(StdinFeed::Bytes);
        self.start_exec(req, feed).await
    }

    /// Run a process whose stdin is fed while it runs: bytes sent through the returned
    /// [`ExecStdin`] reach the process as they come; closing or dropping it is end-of-file.
    /// `req.stdin`, if set, is ignored.
    pub async fn exec_interactive(
        &self,
        mut req: ExecRequest,
    ) -> Result<(ExecStream, ExecStdin), SandboxError> {
        let (tx, rx) = mpsc::channel(16);
        // Tells init to give the process a stdin pipe.
        req.stdin = Some(Vec::new());
        let stream = self.start_exec(req, Some(StdinFeed::Channel(rx))).await?;
        Ok((
            stream,
            ExecStdin {
                tx: Some(tx),
                id: self.id().to_string(),
            },
        ))
    }

    /// Ask init to start `spec`; returns the connection's halves and the process's pid.
    pub(super) async fn start_process(
        &self,
        spec: ExecSpec,
    ) -> Result<
        (
            tokio::net::unix::OwnedReadHalf,
            tokio::net::unix::OwnedWriteHalf,
            i32,
        ),
        SandboxError,
    > {
        let (mut rd, mut wr) = self.control().await?.into_split();
        write_json(&mut wr, Kind::Request, &Request::Exec(spec))
            .await
            .map_err(|e| self.protocol_err(e))?;
        let pid = match read_frame(&mut rd)
            .await
            .map_err(|e| self.protocol_err(e))?
        {
            Some((Kind::Started, p)) => {
                serde_json::from_slice::<Started>(&p)
                    .map_err(|e| self.protocol_err(e))?
                    .pid
            }
            Some((Kind::Error, p)) => return Err(self.command_err(&p)),
            other => {
                return Err(self.protocol_err(format!("unexpected reply {:?}", other.map(|f| f.0))));
            }
        };
        Ok((rd, wr, pid))
    }

    async fn start_exec(
        &self,
        req: ExecRequest,
        feed: Option<StdinFeed>,
    ) -> Result<ExecStream, SandboxError> {
        req.validate()?;
        let spec = self.spec_for(&req);
        let cap = spec.output_cap;
        let oom_before = self
            .state
            .cgroup
            .as_ref()
            .map(|c| c.oom_kills())
            .unwrap_or(0);
        let started = chrono::Utc::now();
        let clock = std::time::Instant::now();
        let (mut rd, mut wr, pid) = self.start_process(spec).await?;
        // stdin is written concurrently with reading output, so a child that produces output
        // before consuming its input never deadlocks.
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            match feed {
                Some(StdinFeed::Bytes(data)) => {
                    for chunk in data.chunks(STDIN_CHUNK) {
                        if write_frame(&mut wr, Kind::Stdin, chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = write_frame(&mut wr, Kind::StdinEof, &[]).await;
                }
                Some(StdinFeed::Channel(mut rx)) => loop {
                    tokio::select! {
                        data = rx.recv() => match data {
                            Some(data) => {
                                for chunk in data.chunks(STDIN_CHUNK) {
                                    if write_frame(&mut wr, Kind::Stdin, chunk).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            None => {
                                let _ = write_frame(&mut wr, Kind::StdinEof, &[]).await;
                                break;
                            }
                        },
                        // The exec ended (or its stream was dropped) while stdin was open.
                        _ = &mut done_rx => return,
                    }
                },
                None => {}
            }
            // Keep the write half open until the exec ends: closing it tells init that nobody
            // is listening any more, and init kills the exec's process group.
            let _ = done_rx.await;
        });

        let (tx, rx) = mpsc::channel(64);
        let sandbox = self.clone();
        let command = req.command.display();
        let workdir = req.workdir.clone();
        tokio::spawn(async move {
            // Dropped when this task ends (exit, error, or the stream was dropped), which
            // releases the write half.
            let _done = done_tx;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            // The host keeps the cap itself: init runs as the sandbox's root, and a workload
            // that took over its server could otherwise send without end.
            let mut host_truncated = false;
            loop {
                // A silent process sends nothing, so a dropped ExecStream is noticed here
                // rather than at the next send; the runtime may live on (a binding's does).
                let read = tokio::select! {
                    read = read_frame(&mut rd) => read,
                    () = tx.closed() => return,
                };
                let frame = match read {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        let _ = tx
                            .send(Err(sandbox.protocol_err("init closed the connection")))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(sandbox.protocol_err(e))).await;
                        return;
                    }
                };
                match frame {
                    // A dropped ExecStream ends the exec: init kills its process group.
                    (Kind::Stdout, data) => {
                        let data = cap_chunk(&out, data, cap, &mut host_truncated);
                        if data.is_empty() {
                            continue;
                        }
                        out.extend_from_slice(&data);
                        if tx.send(Ok(ExecEvent::Stdout(data))).await.is_err() {
                            return;
                        }
                    }
                    (Kind::Stderr, data) => {
                        let data = cap_chunk(&err, data, cap, &mut host_truncated);
                        if data.is_empty() {
                            continue;
                        }
                        err.extend_from_slice(&data);
                        if tx.send(Ok(ExecEvent::Stderr(data))).await.is_err() {
                            return;
                        }
                    }
                    (Kind::Exit, p) => {
                        let exit: Exit = serde_json::from_slice(&p).unwrap_or_default();
                        let oom_after = sandbox
                            .state
                            .cgroup
                            .as_ref()
                            .map(|c| c.oom_kills())
                            .unwrap_or(0);
                        let result = ExecResult {
                            seq: exit.seq,
                            exit_code: exit.code,
                            signal: exit.signal,
                            stdout: out,
                            stderr: err,
                            truncated: exit.stdout_truncated
                                || exit.stderr_truncated
                                || host_truncated,
                            timed_out: exit.timed_out,
                            // The OOM killer may pick any process of the exec (a child of
                            // the shell, say), so the cgroup's counter is the evidence.
                            oom_killed: oom_after > oom_before && !exit.timed_out,
                            started,
                            finished: chrono::Utc::now(),
                            duration_ms: clock.elapsed().as_millis() as u64,
                        };
                        sandbox.append_log(&ExecLogEntry::new(
                            exit.seq,
                            &command,
                            workdir.as_deref(),
                            &result,
                        ));
                        let _ = tx.send(Ok(ExecEvent::Exit(result))).await;
                        return;
                    }
                    (Kind::Error, p) => {
                        let _ = tx.send(Err(sandbox.command_err(&p))).await;
                        return;
                    }
                    (other, _) => {
                        let _ = tx
                            .send(Err(
                                sandbox.protocol_err(format!("unexpected frame {other:?}"))
                            ))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(ExecStream { rx, pid })
    }

    /// Start a background process (no stdio) and return a handle to wait for or signal it.
    pub async fn spawn(&self, req: ExecRequest) -> Result<SpawnHandle, SandboxError> {
        req.validate()?;
        let mut spec = self.spec_for(&req);
        spec.stdin = false;
        let mut stream = self.control().await?;
        write_json(&mut stream, Kind::Request, &Request::Spawn(spec))
            .await
            .map_err(|e| self.protocol_err(e))?;
        match read_frame(&mut stream)
            .await
            .map_err(|e| self.protocol_err(e))?
        {
            Some((Kind::Started, p)) => {
                let pid = serde_json::from_slice::<Started>(&p)
                    .map_err(|e| self.protocol_err(e))?
                    .pid;
                Ok(SpawnHandle {
                    sandbox: self.clone(),
                    pid,
                })
            }
            Some((Kind::Error, p)) => Err(self.command_err(&p)),
            other => Err(self.protocol_err(format!("unexpected reply {:?}", other.map(|f| f.0)))),
        }
    }

    pub(crate) async fn request(&self, req: Request) -> Result<(Kind, Vec<u8>), SandboxError> {
        let mut stream = self.control().await?;
        write_json(&mut stream, Kind::Request, &req)
            .await
            .map_err(|e| self.protocol_err(e))?;
        match read_frame(&mut stream)
            .await
            .map_err(|e| self.protocol_err(e))?
        {
            Some((Kind::Error, p)) => Err(self.command_err(&p)),
            Some(frame) => Ok(frame),
            None => Err(self.protocol_err("no reply")),
        }
    }
}

impl SpawnHandle {
    /// Wait for the process to exit. Returns its exit code and signal.
    pub async fn wait(&self) -> Result<(Option<i32>, Option<i32>), SandboxError> {
        self.wait_for(None).await
    }

    /// Like [`SpawnHandle::wait`], but give up after `timeout` with a `Timeout` error; the
    /// process keeps running and can be waited for again.
    pub async fn wait_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(Option<i32>, Option<i32>), SandboxError> {
        self.wait_for(Some(timeout.as_millis().min(u64::MAX as u128) as u64))
            .await
    }

    async fn wait_for(
        &self,
        timeout_ms: Option<u64>,
    ) -> Result<(Option<i32>, Option<i32>), SandboxError> {
        match self
            .sandbox
            .request(Request::Wait {
                pid: self.pid,
                timeout_ms,
            })
            .await?
        {
            (Kind::Exit, p) => {
                let exit: Exit = serde_json::from_slice(&p).unwrap_or_default();
                Ok((exit.code, exit.signal))
            }
            (k, _) => Err(self.sandbox.protocol_err(format!("unexpected frame {k:?}"))),
        }
    }

    /// Send `signal` to the process (and its process group).
    pub async fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        self.sandbox
            .request(Request::Signal {
                pid: self.pid,
                signal,
                group: true,
            })
            .await
            .map(|_| ())
    }
}

/// What of `data` still fits under `cap` after `buf`; sets `truncated` when something is cut.
fn cap_chunk(buf: &[u8], mut data: Vec<u8>, cap: u64, truncated: &mut bool) -> Vec<u8> {
    let room = usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .saturating_sub(buf.len());
    if data.len() > room {
        data.truncate(room);
        *truncated = true;
    }
    data
}

#[cfg(test)]
mod cap_tests {
    #[test]
    fn chunks_past_the_cap_are_cut_and_flagged() {
        let mut t = false;
        assert_eq!(super::cap_chunk(b"abc", b"de".to_vec(), 5, &mut t), b"de");
        assert!(!t);
        assert_eq!(super::cap_chunk(b"abcd", b"efg".to_vec(), 5, &mut t), b"e");
        assert!(t);
        let mut t = false;
        assert!(super::cap_chunk(b"abcde", b"f".to_vec(), 5, &mut t).is_empty());
        assert!(t);
    }
}
