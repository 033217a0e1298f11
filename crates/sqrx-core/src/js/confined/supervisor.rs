//! The host's side of one worker slot: a thread that starts a worker process, feeds it one
//! execution at a time from the executor's queue, enforces the deadline from outside (a worker
//! stuck past it is killed), and replaces a worker that died, was killed or misbehaved.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::protocol::{self, Bounded, CHANNEL_FD, FromWorker, PROTOCOL_VERSION, ToWorker};
use crate::js::executor::{ABANDON_GRACE, THREAD_STACK_HEADROOM};
use crate::js::worker::{Job, failed, timeout_error};
use crate::js::{Execution, ExecutionStatus, JsError, JsLimits, JsRequest};

/// How long a new worker may take to confine itself and say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The argument that makes `sqrx-init` a JavaScript worker.
pub const WORKER_ARG: &str = "js-worker";

/// The variable that makes a program calling [`crate::roles::run_role_if_any`] a JavaScript
/// worker (self-exec).
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

/// State shared by the executor handle, its supervisor threads and blocking callers.
pub(super) struct Shared {
    pub(super) spec: WorkerSpec,
    pool: Mutex<Pool>,
    /// Signalled when a worker becomes idle, a job is queued, a slot needs a worker, or the
    /// executor stops.
    changed: Condvar,
    /// Set once the executor stops (read without the lock while a supervisor waits on a worker).
    stopped: AtomicBool,
    /// The pid of each slot's current worker (`None` while it has none).
    pub(super) pids: Mutex<Vec<Option<u32>>>,
    /// How many workers were replaced (killed on a deadline or cancellation, or found dead).
    pub(super) replaced: AtomicU64,
}

/// The workers and the asynchronous executions waiting for them.
#[derive(Default)]
struct Pool {
    /// Idle workers, the longest idle first: a worker builds its next context after it
    /// answered, so the one idle longest is the one most likely to have it ready.
    idle: VecDeque<WorkerProcess>,
    /// Executions submitted with [`Shared::submit`], served by supervisor threads.
    jobs: VecDeque<Job>,
    /// Slots whose worker was killed or died: their supervisor starts a new one.
    vacant: Vec<usize>,
    /// Slots whose last start failed: started again when an execution finds no idle worker.
    broken: Vec<usize>,
    /// How many threads wait in [`Shared::take_idle`] for an idle worker.
    takers: usize,
    /// How many starts failed so far, and the last failure.
    failed_starts: u64,
    last_failure: String,
    stopped: bool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, even when it panics.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn new(spec: WorkerSpec, workers: usize) -> Self {
        Shared {
            spec,
            pool: Mutex::new(Pool::default()),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            pids: Mutex::new(vec![None; workers]),
            replaced: AtomicU64::new(0),
        }
    }

    fn wait<'a>(&self, g: MutexGuard<'a, Pool>) -> MutexGuard<'a, Pool> {
        self.changed.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue an execution for the supervisor threads (the path of [`JsRunner::run`]'s future).
    ///
    /// [`JsRunner::run`]: crate::js::JsRunner::run
    pub(super) fn submit(&self, job: Job) {
        let mut p = lock(&self.pool);
        if p.stopped {
            // Dropped unanswered: it answers with an error.
            return;
        }
        p.jobs.push_back(job);
        drop(p);
        self.changed.notify_all();
    }

    /// Stop: queued jobs answer with an error as they drop, idle workers are killed, and
    /// supervisors exit when they wake.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let (jobs, idle) = {
            let mut p = lock(&self.pool);
            p.stopped = true;
            (std::mem::take(&mut p.jobs), std::mem::take(&mut p.idle))
        };
        drop(jobs);
        drop(idle);
        self.changed.notify_all();
    }

    fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Some(p) = lock(&self.pids).get_mut(index) {
            *p = pid;
        }
    }

    /// Give a worker back after an execution it answered.
    fn release(&self, w: WorkerProcess) {
        let mut p = lock(&self.pool);
        if p.stopped {
            drop(p);
            drop(w);
            return;
        }
        p.idle.push_back(w);
        // Supervisors with nothing queued sleep on: waking them for every execution would
        // take CPU from the workers building their next contexts.
        let wanted = p.takers > 0 || !p.jobs.is_empty();
        drop(p);
        if wanted {
            self.changed.notify_all();
        }
    }

    /// Kill and reap `w`; its slot's supervisor starts a new worker.
    fn replace(&self, w: WorkerProcess) {
        let slot = w.slot;
        drop(w);
        self.set_pid(slot, None);
        self.replaced.fetch_add(1, Ordering::Relaxed);
        lock(&self.pool).vacant.push(slot);
        self.changed.notify_all();
    }

    /// The idle worker that has waited longest, blocking until one is idle. Slots whose
    /// worker could not be started are tried once more; the error says why none could be.
    /// A supervisor passes its slot as `own`: it starts that slot's worker itself when it is
    /// missing (nobody else may, and it would otherwise wait for itself).
    fn take_idle(&self, own: Option<usize>) -> Result<WorkerProcess, String> {
        let mut p = lock(&self.pool);
        let mut retried_after: Option<u64> = None;
        loop {
            if p.stopped {
                return Err("the js executor stopped before this execution finished".into());
            }
            if let Some(w) = p.idle.pop_front() {
                return Ok(w);
            }
            if let Some(index) = own {
                let vacant = p.vacant.iter().position(|&s| s == index);
                let broken = p.broken.iter().position(|&s| s == index);
                if vacant.is_some() || broken.is_some() {
                    if let Some(at) = vacant {
                        p.vacant.swap_remove(at);
                    }
                    if let Some(at) = broken {
                        p.broken.swap_remove(at);
                    }
                    let failures = p.failed_starts;
                    drop(p);
                    self.start(index);
                    p = lock(&self.pool);
                    if p.failed_starts > failures && p.idle.is_empty() {
                        return Err(format!(
                            "cannot start a confined JavaScript worker: {}",
                            p.last_failure
                        ));
                    }
                    continue;
                }
            }
            if !p.broken.is_empty() {
                match retried_after {
                    None => {
                        let broken = std::mem::take(&mut p.broken);
                        p.vacant.extend(broken);
                        retried_after = Some(p.failed_starts);
                        self.changed.notify_all();
                    }
                    Some(g) if p.failed_starts > g && p.vacant.is_empty() => {
                        return Err(format!(
                            "cannot start a confined JavaScript worker: {}",
                            p.last_failure
                        ));
                    }
                    Some(_) => {}
                }
            }
            p.takers += 1;
            p = self.wait(p);
            p.takers -= 1;
        }
    }

    /// Start slot `index`'s worker and make it idle (from that slot's supervisor thread).
    fn start(&self, index: usize) {
        match WorkerProcess::spawn(&self.spec, index) {
            Ok(w) => {
                self.set_pid(index, Some(w.pid()));
                self.release(w);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a confined js worker");
                let mut p = lock(&self.pool);
                p.broken.push(index);
                p.failed_starts += 1;
                p.last_failure = e.to_string();
                drop(p);
                self.changed.notify_all();
            }
        }
    }

    /// Run `request` on an idle worker from the calling thread: it writes the request and
    /// reads the answer itself, so an execution costs the worker's wake-up and the caller's,
    /// and no hand-off to a supervisor thread.
    pub(super) fn run_here(&self, request: &JsRequest) -> Execution {
        let stopped = || self.stopped.load(Ordering::Acquire);
        self.execute(request, &stopped, &|| self.take_idle(None))
    }

    /// Run `request` on workers from `take`, mapping every way it can end to an [`Execution`]
    /// and giving the worker back (or replacing it).
    fn execute(
        &self,
        request: &JsRequest,
        cancelled: &dyn Fn() -> bool,
        take: &dyn Fn() -> Result<WorkerProcess, String>,
    ) -> Execution {
        // One retry: a worker that died while idle is noticed when the request cannot be
        // delivered, and nothing ran yet.
        for _attempt in 0..2 {
            let mut w = match take() {
                Ok(w) => w,
                Err(reason) => return failed("InternalError", reason, Duration::ZERO),
            };
            let started = Instant::now();
            return match w.run(request, &self.spec, cancelled) {
                RunOutcome::Done(e) => {
                    self.release(w);
                    e
                }
                RunOutcome::NotDelivered(e) => {
                    tracing::warn!(pid = w.pid(), error = %e, "js worker gone; replacing it");
                    self.replace(w);
                    continue;
                }
                RunOutcome::TimedOut => {
                    tracing::warn!(pid = w.pid(), "js worker past its deadline; killing it");
                    self.replace(w);
                    Execution {
                        status: ExecutionStatus::Timeout,
                        result: serde_json::Value::Null,
                        error: Some(timeout_error(self.spec.limits.timeout)),
                        log: Vec::new(),
                        execution_time_ms: Execution::millis(started.elapsed()),
                    }
                }
                RunOutcome::Cancelled => {
                    self.replace(w);
                    failed(
                        "InternalError",
                        "the execution was cancelled".into(),
                        started.elapsed(),
                    )
                }
                RunOutcome::Died(how) => {
                    tracing::warn!(pid = w.pid(), how, "js worker died during an execution");
                    self.replace(w);
                    failed(
                        "InternalError",
                        format!("the JavaScript worker process {how}"),
                        started.elapsed(),
                    )
                }
                RunOutcome::Protocol(reason) => {
                    tracing::error!(pid = w.pid(), reason, "js worker broke the protocol");
                    self.replace(w);
                    failed(
                        "InternalError",
                        format!("the JavaScript worker process sent an invalid answer: {reason}"),
                        started.elapsed(),
                    )
                }
            };
        }
        failed(
            "InternalError",
            "the JavaScript worker process is gone".into(),
            Duration::ZERO,
        )
    }
}

/// A running worker process and the host's end of its channel.
struct WorkerProcess {
    child: Child,
    channel: UnixStream,
    /// The slot whose supervisor thread started it (and starts its replacement).
    slot: usize,
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
    fn spawn(spec: &WorkerSpec, slot: usize) -> Result<Self, JsError> {
        let (channel, child_end) = UnixStream::pair().map_err(|source| JsError::WorkerChannel {
            op: "socketpair",
            source,
        })?;
        // A request larger than the socket buffer is written while the worker reads it; a
        // worker that stopped reading (stuck, or hostile after an exploit) must not hold the
        // calling thread forever: the write fails past the deadline and the worker is replaced.
        channel
            .set_write_timeout(Some(spec.limits.timeout + ABANDON_GRACE))
            .map_err(|source| JsError::WorkerChannel {
                op: "setsockopt(SO_SNDTIMEO)",
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
        let mut worker = WorkerProcess {
            child,
            channel,
            slot,
        };
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

    fn run(
        &mut self,
        request: &JsRequest,
        spec: &WorkerSpec,
        cancelled: &dyn Fn() -> bool,
    ) -> RunOutcome {
        let buf = match protocol::encode(&protocol::RunRef::Run(request)) {
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
        match protocol::read_bounded::<FromWorker>(
            &self.channel,
            spec.max_reply(),
            deadline,
            cancelled,
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

/// A supervisor thread's body: it starts slot `index`'s worker (and every replacement: a
/// worker dies with the thread that started it), and serves queued executions on whichever
/// worker is idle. The first start's result goes to `started`, so that `build` fails early
/// with the reason when workers cannot start at all.
pub(super) fn supervise(
    shared: &Shared,
    index: usize,
    started: std::sync::mpsc::Sender<Result<(), JsError>>,
) {
    match WorkerProcess::spawn(&shared.spec, index) {
        Ok(w) => {
            shared.set_pid(index, Some(w.pid()));
            shared.release(w);
            let _ = started.send(Ok(()));
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    }
    drop(started);
    let mut p = lock(&shared.pool);
    loop {
        if p.stopped {
            break;
        }
        if let Some(at) = p.vacant.iter().position(|&s| s == index) {
            p.vacant.swap_remove(at);
            drop(p);
            // Keep a worker ready for the next execution.
            shared.start(index);
            p = lock(&shared.pool);
            continue;
        }
        if !p.jobs.is_empty() && !p.idle.is_empty() {
            let (Some(job), Some(w)) = (p.jobs.pop_front(), p.idle.pop_front()) else {
                continue;
            };
            drop(p);
            serve(shared, index, job, w);
            p = lock(&shared.pool);
            continue;
        }
        if !p.jobs.is_empty()
            && let Some(at) = p.broken.iter().position(|&s| s == index)
        {
            // A queued execution and no idle worker: try this slot's start again, and when
            // it fails, that execution reports why.
            p.broken.swap_remove(at);
            let failures = p.failed_starts;
            drop(p);
            shared.start(index);
            p = lock(&shared.pool);
            if p.failed_starts > failures
                && p.idle.is_empty()
                && let Some(job) = p.jobs.pop_front()
            {
                let reason = p.last_failure.clone();
                drop(p);
                job.reply.send(failed(
                    "InternalError",
                    format!("cannot start a confined JavaScript worker: {reason}"),
                    Duration::ZERO,
                ));
                p = lock(&shared.pool);
            }
            continue;
        }
        p = shared.wait(p);
    }
    drop(p);
    shared.set_pid(index, None);
}

/// Run a queued job on `w`, answer it, and give the worker back.
fn serve(shared: &Shared, index: usize, job: Job, w: WorkerProcess) {
    if job.reply.cancelled.load(Ordering::Relaxed) {
        shared.release(w);
        return;
    }
    // A caller that stopped waiting, or an executor shutting down, stops the execution.
    let cancelled =
        || job.reply.cancelled.load(Ordering::Relaxed) || shared.stopped.load(Ordering::Acquire);
    let first = std::cell::Cell::new(Some(w));
    let outcome = shared.execute(&job.request, &cancelled, &|| {
        first
            .take()
            .map_or_else(|| shared.take_idle(Some(index)), Ok)
    });
    job.reply.send(outcome);
}
