//! `Sandbox::exec_pty`: an interactive process on a pseudo-terminal (a shell for a web
//! terminal, say). Its terminal output arrives as [`ExecEvent::Stdout`]; keystrokes and window
//! size changes go through the returned [`PtyInput`].

use tokio::sync::mpsc;

use super::SandboxError;
use super::exec::ExecEvent;
use super::runtime::Sandbox;
use super::spec::{ExecRequest, ExecResult};
use crate::protocol::tokio_io::{read_frame, write_frame, write_json};
use crate::protocol::{Exit, Kind, PtySize};

enum Input {
    Data(Vec<u8>),
    Resize(PtySize),
    Eof,
}

/// The keyboard and window of a pty exec. Dropping it leaves the process running until it
/// exits by itself or the event receiver is dropped.
#[derive(Debug, Clone)]
pub struct PtyInput {
    tx: mpsc::Sender<Input>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

impl PtyInput {
    fn closed() -> SandboxError {
        SandboxError::Invalid {
            field: "pty",
            reason: "the terminal's process has ended".into(),
        }
    }

    /// Type `data` into the terminal.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), SandboxError> {
        self.tx
            .send(Input::Data(data))
            .await
            .map_err(|_| Self::closed())
    }

    /// Change the terminal's size (the process gets `SIGWINCH`).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SandboxError> {
        if cols == 0 || rows == 0 {
            return Err(SandboxError::Invalid {
                field: "pty",
                reason: format!("{cols}x{rows} is not a terminal size"),
            });
        }
        self.tx
            .send(Input::Resize(PtySize { cols, rows }))
            .await
            .map_err(|_| Self::closed())
    }

    /// Send end-of-file (`^D`).
    pub async fn eof(&self) -> Result<(), SandboxError> {
        self.tx.send(Input::Eof).await.map_err(|_| Self::closed())
    }
}

impl Sandbox {
    /// Start `req` on a new pseudo-terminal of `cols` x `rows`. Returns the terminal's output
    /// (stdout events, then the exit; dropping the receiver kills the terminal's whole
    /// session) and its input. `req.stdin` and `req.output_cap` are ignored.
    pub async fn exec_pty(
        &self,
        req: ExecRequest,
        cols: u16,
        rows: u16,
    ) -> Result<
        (
            mpsc::Receiver<Result<ExecEvent, SandboxError>>,
            PtyInput,
            i32,
        ),
        SandboxError,
    > {
        req.validate()?;
        if cols == 0 || rows == 0 {
            return Err(SandboxError::Invalid {
                field: "pty",
                reason: format!("{cols}x{rows} is not a terminal size"),
            });
        }
        let mut spec = self.spec_for(&req);
        spec.stdin = true;
        spec.output_cap = u64::MAX;
        spec.pty = Some(PtySize { cols, rows });
        let started = chrono::Utc::now();
        let clock = std::time::Instant::now();
        let (mut rd, mut wr, pid) = self.start_process(spec).await?;

        let (in_tx, mut in_rx) = mpsc::channel::<Input>(64);
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    input = in_rx.recv() => {
                        let sent = match input {
                            Some(Input::Data(d)) => write_frame(&mut wr, Kind::Stdin, &d).await,
                            Some(Input::Resize(s)) => write_json(&mut wr, Kind::Resize, &s).await,
                            Some(Input::Eof) => write_frame(&mut wr, Kind::StdinEof, &[]).await,
                            // Every PtyInput is gone: keep the connection until the exit.
                            None => {
                                let _ = (&mut done_rx).await;
                                return;
                            }
                        };
                        if sent.is_err() {
                            return;
                        }
                    }
                    // The exec ended or its receiver was dropped: closing the write half tells
                    // init nobody listens any more, which kills the terminal's session.
                    _ = &mut done_rx => return,
                }
            }
        });

        let (tx, rx) = mpsc::channel(64);
        let sandbox = self.clone();
        let command = req.command.display();
        let workdir = req.workdir.clone();
        tokio::spawn(async move {
            let _done = done_tx;
            let mut out = Vec::new();
            loop {
                let frame = tokio::select! {
                    f = read_frame(&mut rd) => f,
                    _ = tx.closed() => return,
                };
                match frame {
                    Ok(Some((Kind::Stdout, data))) => {
                        if out.len() < 64 * 1024 {
                            out.extend_from_slice(&data[..data.len().min(64 * 1024 - out.len())]);
                        }
                        if tx.send(Ok(ExecEvent::Stdout(data))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some((Kind::Exit, p))) => {
                        let exit: Exit = serde_json::from_slice(&p).unwrap_or_default();
                        let result = ExecResult {
                            seq: exit.seq,
                            exit_code: exit.code,
                            signal: exit.signal,
                            stdout: out,
                            stderr: Vec::new(),
                            truncated: false,
                            timed_out: exit.timed_out,
                            oom_killed: false,
                            started,
                            finished: chrono::Utc::now(),
                            duration_ms: clock.elapsed().as_millis() as u64,
                        };
                        sandbox.append_log(&super::logs::ExecLogEntry::new(
                            exit.seq,
                            &command,
                            workdir.as_deref(),
                            &result,
                        ));
                        let _ = tx.send(Ok(ExecEvent::Exit(result))).await;
                        return;
                    }
                    Ok(Some((Kind::Error, p))) => {
                        let _ = tx.send(Err(sandbox.command_err(&p))).await;
                        return;
                    }
                    Ok(Some((other, _))) => {
                        let _ = tx
                            .send(Err(
                                sandbox.protocol_err(format!("unexpected frame {other:?}"))
                            ))
                            .await;
                        return;
                    }
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
                }
            }
        });
        Ok((rx, PtyInput { tx: in_tx }, pid))
    }
}
