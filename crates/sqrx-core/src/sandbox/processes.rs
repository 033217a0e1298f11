//! Processes that outlive the call that started them: started with
//! [`Sandbox::start_tracked`], kept in the runtime's table by (sandbox, pid) until they exit,
//! listed, watched by any number of subscribers (each gets the output from when it subscribes
//! on, and the exit), written to, resized and signalled by pid. This is what an agent API such
//! as E2B's `commands` expects of a sandbox (a background command another client reconnects to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use super::SandboxError;
use super::exec::{ExecEvent, ExecStdin};
use super::pty::PtyInput;
use super::runtime::{Runtime, Sandbox};
use super::spec::ExecRequest;

/// What happened in a tracked process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// Bytes on stdout.
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// Bytes from its terminal (a pty process).
    Pty(Vec<u8>),
}

/// How a tracked process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEnd {
    /// Its exit code (`None` when a signal killed it).
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Whether it was killed by the timeout.
    pub timed_out: bool,
    /// A failure of the exec itself (not of the process), if any.
    pub error: Option<String>,
}

/// What a tracked process was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid inside the sandbox.
    pub pid: i32,
    /// The program.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The environment the request added.
    pub env: std::collections::BTreeMap<String, String>,
    /// Its working directory, if the request set one.
    pub cwd: Option<String>,
    /// A label the starter gave it.
    pub tag: Option<String>,
    /// Whether it runs on a terminal.
    pub pty: bool,
}

enum Input {
    None,
    Pipe(ExecStdin),
    Pty(PtyInput),
}

/// A process in the table.
pub struct TrackedProcess {
    /// What it was started with.
    pub info: ProcessInfo,
    /// Dropped when it ends, which closes every watcher's channel.
    events: Mutex<Option<broadcast::Sender<ProcessEvent>>>,
    end: watch::Receiver<Option<ProcessEnd>>,
    input: tokio::sync::Mutex<Input>,
    sandbox: Sandbox,
}

impl std::fmt::Debug for TrackedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedProcess")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Output and the end of a tracked process, from the moment of subscribing.
#[derive(Debug)]
pub struct ProcessWatch {
    events: broadcast::Receiver<ProcessEvent>,
    end: watch::Receiver<Option<ProcessEnd>>,
    done: bool,
}

/// One item of a [`ProcessWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// Output.
    Event(ProcessEvent),
    /// The process ended (the last item).
    End(ProcessEnd),
}

impl ProcessWatch {
    /// The next output, or the end; `None` after the end.
    pub async fn next(&mut self) -> Option<Watched> {
        if self.done {
            return None;
        }
        loop {
            match self.events.recv().await {
                Ok(e) => return Some(Watched::Event(e)),
                // A slow watcher loses output rather than holding the process back.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    // The end is set before the channel closes.
                    let end = self.end.borrow().clone();
                    return Some(Watched::End(end.unwrap_or(ProcessEnd {
                        exit_code: None,
                        signal: None,
                        timed_out: false,
                        error: Some("the process's end was lost".into()),
                    })));
                }
            }
        }
    }
}

impl TrackedProcess {
    /// Watch its output and end from now on.
    pub fn watch(&self) -> ProcessWatch {
        let events = match &*self.events.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.subscribe(),
            // Ended: a closed channel, so the watch yields the end at once.
            None => broadcast::channel(1).1,
        };
        ProcessWatch {
            events,
            end: self.end.clone(),
            done: false,
        }
    }

    /// Has it ended? How?
    pub fn ended(&self) -> Option<ProcessEnd> {
        self.end.borrow().clone()
    }

    /// Write to its stdin (or its terminal).
    pub async fn write(&self, data: Vec<u8>) -> Result<(), SandboxError> {
        match &mut *self.input.lock().await {
            Input::Pipe(stdin) => stdin.write(data).await,
            Input::Pty(pty) => pty.write(data).await,
            Input::None => Err(SandboxError::Invalid {
                field: "stdin",
                reason: format!("process {} was started without stdin", self.info.pid),
            }),
        }
    }

    /// Close its stdin (a terminal gets end-of-file, `^D`).
    pub async fn close_stdin(&self) -> Result<(), SandboxError> {
        match &mut *self.input.lock().await {
            Input::Pipe(stdin) => {
                stdin.close();
                Ok(())
            }
            Input::Pty(pty) => pty.eof().await,
            Input::None => Ok(()),
        }
    }

    /// Resize its terminal.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SandboxError> {
        match &*self.input.lock().await {
            Input::Pty(pty) => pty.resize(cols, rows).await,
            _ => Err(SandboxError::Invalid {
                field: "pty",
                reason: format!("process {} has no terminal", self.info.pid),
            }),
        }
    }

    /// Send `signal` to it and its process group.
    pub async fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        self.sandbox.signal(self.info.pid, signal).await
    }
}

/// The runtime's tracked processes, by sandbox and pid.
#[derive(Default)]
pub(crate) struct ProcessTable {
    map: Mutex<HashMap<(String, i32), Arc<TrackedProcess>>>,
}

impl ProcessTable {
    fn insert(&self, p: Arc<TrackedProcess>) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((p.sandbox.id().to_string(), p.info.pid), p);
    }

    fn remove(&self, sandbox: &str, pid: i32) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(sandbox.to_string(), pid));
    }
}

impl Runtime {
    /// The tracked processes of sandbox `id` that are still running.
    pub fn processes(&self, id: &str) -> Vec<Arc<TrackedProcess>> {
        let map = self
            .inner
            .processes
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Arc<TrackedProcess>> = map
            .iter()
            .filter(|((s, _), _)| s == id)
            .map(|(_, p)| p.clone())
            .collect();
        v.sort_by_key(|p| p.info.pid);
        v
    }

    /// The tracked process `pid` of sandbox `id`, while it runs.
    pub fn process(&self, id: &str, pid: i32) -> Option<Arc<TrackedProcess>> {
        self.inner
            .processes
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(id.to_string(), pid))
            .cloned()
    }
}

/// How to start a tracked process.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A label for it.
    pub tag: Option<String>,
    /// Give it a stdin pipe (written with [`TrackedProcess::write`]).
    pub stdin: bool,
    /// Run it on a terminal of (cols, rows).
    pub pty: Option<(u16, u16)>,
}

impl Sandbox {
    /// Send `signal` to the process `pid` inside (and its process group).
    pub async fn signal(&self, pid: i32, signal: i32) -> Result<(), SandboxError> {
        self.request(crate::protocol::Request::Signal {
            pid,
            signal,
            group: true,
        })
        .await
        .map(|_| ())
    }

    /// Start `req` as a tracked process: it runs until it exits (or its timeout), whoever
    /// watches it; returns it and a watch taken before its first output.
    pub async fn start_tracked(
        &self,
        req: ExecRequest,
        options: StartOptions,
    ) -> Result<(Arc<TrackedProcess>, ProcessWatch), SandboxError> {
        let argv = req.command.argv();
        let (cmd, args) = match argv.split_first() {
            Some((c, a)) => (c.clone(), a.to_vec()),
            None => (String::new(), Vec::new()),
        };
        let env = req.env.clone();
        let cwd = req.workdir.clone();
        let (tx, _) = broadcast::channel(1024);
        let (end_tx, end_rx) = watch::channel(None);
        enum Source {
            Stream(super::exec::ExecStream),
            Pty(tokio::sync::mpsc::Receiver<Result<ExecEvent, SandboxError>>),
        }
        let (source, input, pid) = match options.pty {
            Some((cols, rows)) => {
                let (rx, input, pid) = self.exec_pty(req, cols, rows).await?;
                (Source::Pty(rx), Input::Pty(input), pid)
            }
            None if options.stdin => {
                let (stream, stdin) = self.exec_interactive(req).await?;
                let pid = stream.pid;
                (Source::Stream(stream), Input::Pipe(stdin), pid)
            }
            None => {
                let stream = self.exec_stream(req).await?;
                let pid = stream.pid;
                (Source::Stream(stream), Input::None, pid)
            }
        };
        let tracked = Arc::new(TrackedProcess {
            info: ProcessInfo {
                pid,
                cmd,
                args,
                env,
                cwd,
                tag: options.tag,
                pty: options.pty.is_some(),
            },
            events: Mutex::new(Some(tx.clone())),
            end: end_rx,
            input: tokio::sync::Mutex::new(input),
            sandbox: self.clone(),
        });
        let first = tracked.watch();
        self.rt.inner.processes.insert(tracked.clone());
        let rt = self.rt.clone();
        let id = self.id().to_string();
        let is_pty = options.pty.is_some();
        let handle = tracked.clone();
        tokio::spawn(async move {
            let mut source = source;
            let end = loop {
                let next = match &mut source {
                    Source::Stream(s) => s.next().await,
                    Source::Pty(rx) => rx.recv().await,
                };
                match next {
                    Some(Ok(ExecEvent::Stdout(b))) => {
                        let _ = tx.send(if is_pty {
                            ProcessEvent::Pty(b)
                        } else {
                            ProcessEvent::Stdout(b)
                        });
                    }
                    Some(Ok(ExecEvent::Stderr(b))) => {
                        let _ = tx.send(ProcessEvent::Stderr(b));
                    }
                    Some(Ok(ExecEvent::Exit(r))) => {
                        break ProcessEnd {
                            exit_code: r.exit_code,
                            signal: r.signal,
                            timed_out: r.timed_out,
                            error: None,
                        };
                    }
                    Some(Err(e)) => {
                        break ProcessEnd {
                            exit_code: None,
                            signal: None,
                            timed_out: false,
                            error: Some(e.to_string()),
                        };
                    }
                    None => {
                        break ProcessEnd {
                            exit_code: None,
                            signal: None,
                            timed_out: false,
                            error: Some("the exec ended without an exit".into()),
                        };
                    }
                }
            };
            rt.inner.processes.remove(&id, pid);
            let _ = end_tx.send(Some(end));
            // Closing the channel tells watchers to read the end.
            drop(tx);
            handle
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        });
        Ok((tracked, first))
    }
}
