//! The host's side of one worker slot: a thread that starts a worker process, feeds it one
//! execution at a time from the executor's queue, enforces the deadline from outside (a worker
//! stuck past it is killed), and replaces a worker that died, was killed or misbehaved.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::protocol::{self, Bounded, CHANNEL_FD, FromWorker, PROTOCOL_VERSION, ToWorker};
use crate::js::executor::{ABANDON_GRACE, THREAD_STACK_HEADROOM};
use crate::js::worker::{Job, failed, timeout_error};
use crate::js::{Execution, ExecutionStatus, JsError, JsLimits};

/// How long a new worker may take to confine itself and say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The argument that makes `sqrx-init` a JavaScript worker.
pub const WORKER_ARG: &str = "js-worker";

/// The variable that makes a program calling [`super::run_if_worker`] a JavaScript worker
/// (self-exec).
pub const WORKER_ENV: &str = "SQRX_JS_WORKER";

/// The program worker processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Program {
    pub(super) path: PathBuf,
    pub(super) self_exec: bool,
}

/// What every worker of one executor is started with.
#[derive(Debug, Clone)]
pub(super) struct WorkerSpec {
    pub(super) program: Program,
    pub(super) limits: JsLimits,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl WorkerSpec {
    /// The largest reply accepted from a worker: nothing a script can build under its heap
    /// limit, even escaped six-fold as JSON, is larger.
    fn max_reply(&self) -> usize {
        let l = &self.limits;
        l.memory_bytes
            .saturating_add(l.max_log_bytes)
            .saturating_add(l.max_result_bytes)
            .saturating_mul(8)
            .min(u32::MAX as usize)
    }
}

/// State shared by the executor handle and its supervisor threads.
pub(super) struct Shared {
    pub(super) spec: WorkerSpec,
    queue: crate::js::queue::JobQueue,
    /// The pid of each slot's current worker (`None` while it has none).
    pub(super) pids: Mutex<Vec<Option<u32>>>,
    /// How many workers were replaced (killed on a deadline or cancellation, or found dead).
    pub(super) replaced: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, even when it panics.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn new(spec: WorkerSpec, workers: usize) -> Self {
        Shared {
            spec,
            queue: crate::js::queue::JobQueue::default(),
            pids: Mutex::new(vec![None; workers]),
            replaced: AtomicU64::new(0),
        }
    }

    pub(super) fn submit(&self, job: Job) {
        self.queue.submit(job);
    }

    /// Stop: queued jobs answer with an error as they drop; supervisors exit when they wake.
    pub(super) fn stop(&self) {
        self.queue.stop();
    }

    fn next_job(&self) -> Option<Job> {
        self.queue.next()
    }

    fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Some(p) = lock(&self.pids).get_mut(index) {
            *p = pid;
        }
    }
}

/// A running worker process and the host's end of its channel.
struct WorkerProcess {
    child: Child,
    channel: UnixStream,
}

/// How one execution on a worker ended, as the host saw it.
enum RunOutcome {
    /// The worker answered.
    Done(Execution),
    /// The request could not be delivered (the worker was already gone): nothing ran.
    NotDelivered(std::io::Error),
    /// No answer by the deadline + grace: the worker was killed.
    TimedOut,
    /// The caller stopped waiting: the worker was killed.
    Cancelled,
    /// The worker died while running the script.
    Died(String),
    /// The worker sent something that is not a valid answer: it was killed.
    Protocol(String),
}

impl WorkerProcess {
    fn spawn(spec: &WorkerSpec) -> Result<Self, JsError> {
        let (channel, child_end) = UnixStream::pair().map_err(|source| JsError::WorkerChannel {
            op: "socketpair",
            source,
        })?;
        let mut cmd = Command::new(&spec.program.path);
        cmd.arg(WORKER_ARG)
            // A clean environment: nothing of the host's (tokens, credentials) reaches it.
            .env_clear()
            .env(WORKER_ENV, "1")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let stack = (spec.limits.stack_bytes + THREAD_STACK_HEADROOM) as u64;
        crate::sys::confine::hand_over_on_exec(&mut cmd, child_end.as_raw_fd(), CHANNEL_FD, stack);
        let child = cmd.spawn().map_err(|source| JsError::SpawnProcess {
            program: spec.program.path.clone(),
            source,
        })?;
        drop(child_end);
        let mut worker = WorkerProcess { child, channel };
        worker.handshake(spec)?;
        Ok(worker)
    }

    fn handshake(&mut self, spec: &WorkerSpec) -> Result<(), JsError> {
        let configure = ToWorker::Configure {
            protocol: PROTOCOL_VERSION,
            limits: (&spec.limits).into(),
            uid: spec.uid,
            gid: spec.gid,
        };
        let buf =
            protocol::encode(&configure).map_err(|reason| JsError::WorkerProtocol { reason })?;
        let program = spec.program.path.display().to_string();
        if let Err(source) = protocol::send_all(&self.channel, &buf) {
            return Err(self.start_failure(&program, Some(source)));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        match protocol::read_bounded::<FromWorker>(&self.channel, 1 << 20, deadline, &|| false) {
            Ok(Bounded::Frame(FromWorker::Ready { protocol })) if protocol == PROTOCOL_VERSION => {
                Ok(())
            }
            Ok(Bounded::Frame(FromWorker::Ready { protocol })) => Err(JsError::WorkerProtocol {
                reason: format!(
                    "{program} speaks protocol {protocol}, this library {PROTOCOL_VERSION}"
                ),
            }),
            Ok(Bounded::Frame(FromWorker::Failed { step, message })) => {
                Err(JsError::WorkerSetup { step, message })
            }
            Ok(Bounded::Frame(FromWorker::Done(_))) => Err(JsError::WorkerProtocol {
                reason: "an answer before any request".into(),
            }),
            Ok(Bounded::Closed) => Err(self.start_failure(&program, None)),
            Ok(Bounded::Expired | Bounded::Cancelled) => Err(JsError::WorkerProtocol {
                reason: format!("{program} was not ready within {START_TIMEOUT:?}"),
            }),
            Err(reason) => Err(JsError::WorkerProtocol {
                reason: format!("{program}: {reason}"),
            }),
        }
    }

    /// The worker ended before it was ready: say how (an old `sqrx-init` without the worker
    /// role runs its init, which fails on the missing config).
    fn start_failure(&mut self, program: &str, io: Option<std::io::Error>) -> JsError {
        let _ = self.child.kill();
        let status = match self.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        JsError::WorkerExited {
            program: program.to_string(),
            status: match io {
                Some(e) => format!("{status}; channel: {e}"),
                None => status,
            },
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn run(&mut self, job: &Job, spec: &WorkerSpec, shutdown: &AtomicBool) -> RunOutcome {
        let buf = match protocol::encode(&ToWorker::Run(job.request.clone())) {
            Ok(b) => b,
            Err(reason) => return RunOutcome::Protocol(reason),
        };
        let started = Instant::now();
        if let Err(e) = protocol::send_all(&self.channel, &buf) {
            return RunOutcome::NotDelivered(e);
        }
        // The worker's own interrupt handler answers at the deadline; only a builtin that
        // never polls it (or a hostile worker) needs the kill.
        let deadline = started + spec.limits.timeout + ABANDON_GRACE;
        // A caller that stopped waiting, or an executor shutting down, stops the execution.
        let cancelled =
            || job.reply.cancelled.load(Ordering::Relaxed) || shutdown.load(Ordering::Acquire);
        match protocol::read_bounded::<FromWorker>(
            &self.channel,
            spec.max_reply(),
            deadline,
            &cancelled,
        ) {
            Ok(Bounded::Frame(FromWorker::Done(e))) => RunOutcome::Done(e),
            Ok(Bounded::Frame(other)) => {
                RunOutcome::Protocol(format!("unexpected frame {:?}", frame_name(&other)))
            }
            Ok(Bounded::Expired) => RunOutcome::TimedOut,
            Ok(Bounded::Cancelled) => RunOutcome::Cancelled,
            Ok(Bounded::Closed) => RunOutcome::Died(self.reap()),
            Err(reason) => RunOutcome::Protocol(reason),
        }
    }

    /// Wait for a worker whose channel closed, and describe how it ended.
    fn reap(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait() {
            Ok(s) => match s.signal() {
                Some(libc::SIGSYS) => {
                    "killed by SIGSYS: a system call outside its seccomp allow-list".into()
                }
                Some(libc::SIGKILL) => "killed by SIGKILL".into(),
                Some(sig) => format!("killed by signal {sig}"),
                None => format!("exited with {s}"),
            },
            Err(e) => format!("cannot be waited for: {e}"),
        }
    }
}

fn frame_name(f: &FromWorker) -> &'static str {
    match f {
        FromWorker::Ready { .. } => "ready",
        FromWorker::Failed { .. } => "failed",
        FromWorker::Done(_) => "done",
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Killed, not asked: a worker may be stuck in a builtin. Reaped so no zombie stays.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start slot `index`'s first worker; the result goes to `started` so that `build` fails
/// early with the reason when workers cannot start at all.
fn first_worker(shared: &Shared, index: usize) -> Result<WorkerProcess, JsError> {
    let w = WorkerProcess::spawn(&shared.spec)?;
    shared.set_pid(index, Some(w.pid()));
    Ok(w)
}

/// A supervisor thread's body.
pub(super) fn supervise(
    shared: &Shared,
    index: usize,
    started: std::sync::mpsc::Sender<Result<(), JsError>>,
) {
    let mut worker = match first_worker(shared, index) {
        Ok(w) => {
            let _ = started.send(Ok(()));
            Some(w)
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    drop(started);
    while let Some(job) = shared.next_job() {
        if job.reply.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        // One retry: a worker that died while idle is noticed when the request cannot be
        // delivered, and nothing ran yet.
        let mut outcome = None;
        for _attempt in 0..2 {
            let w = match worker.take() {
                Some(w) => w,
                None => match WorkerProcess::spawn(&shared.spec) {
                    Ok(w) => {
                        shared.set_pid(index, Some(w.pid()));
                        w
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a confined js worker");
                        outcome = Some(failed(
                            "InternalError",
                            format!("cannot start a confined JavaScript worker: {e}"),
                            Duration::ZERO,
                        ));
                        break;
                    }
                },
            };
            let mut w = w;
            let started = Instant::now();
            match w.run(&job, &shared.spec, shared.queue.stop_flag()) {
                RunOutcome::Done(e) => {
                    worker = Some(w);
                    outcome = Some(e);
                }
                RunOutcome::NotDelivered(e) => {
                    tracing::warn!(pid = w.pid(), error = %e, "js worker gone; replacing it");
                    replace(shared, index, w);
                    continue;
                }
                RunOutcome::TimedOut => {
                    tracing::warn!(pid = w.pid(), "js worker past its deadline; killing it");
                    replace(shared, index, w);
                    outcome = Some(Execution {
                        status: ExecutionStatus::Timeout,
                        result: serde_json::Value::Null,
                        error: Some(timeout_error(shared.spec.limits.timeout)),
                        log: Vec::new(),
                        execution_time_ms: Execution::millis(started.elapsed()),
                    });
                }
                RunOutcome::Cancelled => {
                    replace(shared, index, w);
                    outcome = Some(failed(
                        "InternalError",
                        "the execution was cancelled".into(),
                        started.elapsed(),
                    ));
                }
                RunOutcome::Died(how) => {
                    tracing::warn!(pid = w.pid(), how, "js worker died during an execution");
                    replace(shared, index, w);
                    outcome = Some(failed(
                        "InternalError",
                        format!("the JavaScript worker process {how}"),
                        started.elapsed(),
                    ));
                }
                RunOutcome::Protocol(reason) => {
                    tracing::error!(pid = w.pid(), reason, "js worker broke the protocol");
                    replace(shared, index, w);
                    outcome = Some(failed(
                        "InternalError",
                        format!("the JavaScript worker process sent an invalid answer: {reason}"),
                        started.elapsed(),
                    ));
                }
            }
            break;
        }
        let outcome = outcome.unwrap_or_else(|| {
            failed(
                "InternalError",
                "the JavaScript worker process is gone".into(),
                Duration::ZERO,
            )
        });
        job.reply.send(outcome);
        drop(job);
        // Keep a worker ready for the next execution.
        if worker.is_none() && !shared.queue.is_stopped() {
            match WorkerProcess::spawn(&shared.spec) {
                Ok(w) => {
                    shared.set_pid(index, Some(w.pid()));
                    worker = Some(w);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a confined js worker"),
            }
        }
    }
    shared.set_pid(index, None);
}

/// Kill and reap `w`; the slot gets a new worker before its next execution.
fn replace(shared: &Shared, index: usize, w: WorkerProcess) {
    drop(w);
    shared.set_pid(index, None);
    shared.replaced.fetch_add(1, Ordering::Relaxed);
}
