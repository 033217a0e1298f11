//! [`JsExecutor`]: a pool of worker threads running scripts, and the watchdog that answers
//! for a worker stuck past its deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::host::{self, HostFn, HostFunction, HostFuture, HostResult};
use super::reply::{PendingExecution, Reply};
use super::worker::{self, Job, Slot};
use super::{Execution, ExecutionStatus, JsError, JsLimits, JsRequest};

/// How long after its deadline a worker may still answer for itself before the watchdog
/// answers `timeout` for it and replaces it. The interrupt handler normally stops a script
/// within a millisecond of its deadline; only a builtin that never polls the handler needs
/// the watchdog.
pub const ABANDON_GRACE: Duration = Duration::from_millis(25);

/// Extra stack for a worker thread beyond the script's own stack limit: the engine's C frames
/// outside the limit and the host-side conversion of results.
pub(crate) const THREAD_STACK_HEADROOM: usize = 8 << 20;

/// State shared by the executor handle, its workers and its watchdog.
pub(crate) struct Shared {
    pub(crate) limits: JsLimits,
    pub(crate) hosts: Vec<HostFunction>,
    pub(crate) queue: super::queue::JobQueue,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// When the watchdog looks at the workers next, in nanoseconds since `epoch`; `u64::MAX`
    /// while it sleeps until woken (no execution running).
    next_look: AtomicU64,
    epoch: Instant,
    watchdog: OnceLock<Thread>,
    /// How many times the watchdog looked (for tests).
    looks: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, even when it panics.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Have the watchdog look at the workers by `deadline` + [`ABANDON_GRACE`] (called when an
    /// execution with that deadline starts). Wakes it only when it would sleep past that.
    pub(crate) fn watch_until(&self, deadline: Instant) {
        let at = self.nanos(deadline + ABANDON_GRACE);
        if self.next_look.fetch_min(at, Ordering::SeqCst) > at
            && let Some(w) = self.watchdog.get()
        {
            w.unpark();
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The next job, or `None` once the executor shuts down.
    pub(crate) fn next_job(&self) -> Option<Job> {
        self.queue.next()
    }
}

/// Runs untrusted JavaScript with QuickJS, in-process, on a pool of worker threads.
///
/// Every execution gets a fresh context (its own global object and builtins) and runs under
/// the executor's [`JsLimits`]. See `docs/js.md` for the design.
///
/// ```
/// use sqrx_core::js::{JsExecutor, JsLimits, JsRequest, ExecutionStatus};
///
/// let js = JsExecutor::new(JsLimits::default())?;
/// let out = js.run_blocking(JsRequest::new("input.x * 2").with_input(serde_json::json!({"x": 21})));
/// assert_eq!(out.status, ExecutionStatus::Success);
/// assert_eq!(out.result, 42);
/// # Ok::<(), sqrx_core::js::JsError>(())
/// ```
pub struct JsExecutor {
    shared: Arc<Shared>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for JsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsExecutor")
            .field("limits", &self.shared.limits)
            .field("workers", &lock(&self.shared.slots).len())
            .field("hosts", &self.shared.hosts)
            .finish()
    }
}

/// Configures a [`JsExecutor`]: limits, pool size and host functions.
///
/// ```
/// use sqrx_core::js::{JsExecutor, JsRequest};
///
/// let js = JsExecutor::builder()
///     .workers(2)
///     .host_fn("add", |args| {
///         let a = args.first().and_then(|v| v.as_f64()).ok_or("add: need numbers")?;
///         let b = args.get(1).and_then(|v| v.as_f64()).ok_or("add: need numbers")?;
///         Ok(serde_json::json!(a + b))
///     })
///     .host_fn_async("lookup", |args| {
///         Box::pin(async move { Ok(serde_json::json!({"asked": args})) })
///     })
///     .build()?;
/// let out = js.run_blocking(JsRequest::new("add(1, 2) + (await lookup('k')).asked.length"));
/// assert_eq!(out.result, 4);
/// # Ok::<(), sqrx_core::js::JsError>(())
/// ```
#[derive(Debug, Default)]
pub struct JsExecutorBuilder {
    limits: JsLimits,
    workers: Option<usize>,
    hosts: Vec<HostFunction>,
}

impl JsExecutorBuilder {
    /// The limits every execution runs under.
    pub fn limits(mut self, limits: JsLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The number of worker threads (default: the number of CPUs).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Expose a sync host function to scripts as the global `name`.
    pub fn host_fn<F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Vec<serde_json::Value>) -> HostResult + Send + Sync + 'static,
    {
        self.hosts.push(HostFunction {
            name: name.into(),
            f: HostFn::Sync(Arc::new(f)),
        });
        self
    }

    /// Expose an async host function to scripts as the global `name`; scripts get a Promise.
    pub fn host_fn_async<F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Vec<serde_json::Value>) -> HostFuture + Send + Sync + 'static,
    {
        self.hosts.push(HostFunction {
            name: name.into(),
            f: HostFn::Async(Arc::new(f)),
        });
        self
    }

    /// Validate the configuration and start the workers.
    pub fn build(self) -> Result<JsExecutor, JsError> {
        self.limits.validate()?;
        let workers = self.workers.unwrap_or_else(default_workers);
        if workers == 0 {
            return Err(JsError::InvalidWorkers { workers });
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.hosts {
            host::validate_name(&h.name)?;
            if !seen.insert(h.name.as_str()) {
                return Err(JsError::DuplicateHostFunction {
                    name: h.name.clone(),
                });
            }
        }
        let shared = Arc::new(Shared {
            limits: self.limits,
            hosts: self.hosts,
            queue: super::queue::JobQueue::default(),
            slots: Mutex::new(Vec::with_capacity(workers)),
            next_look: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            watchdog: OnceLock::new(),
            looks: AtomicU64::new(0),
        });
        let mut executor = JsExecutor {
            shared: Arc::clone(&shared),
            watchdog: None,
        };
        // On an early return, dropping `executor` stops the workers already started.
        for index in 0..workers {
            let slot = spawn_worker(&shared, index)?;
            lock(&shared.slots).push(slot);
        }
        let s = Arc::clone(&shared);
        let watchdog = std::thread::Builder::new()
            .name("sqrx-js-watchdog".into())
            .spawn(move || watchdog(&s))
            .map_err(|source| JsError::SpawnWorker {
                index: workers,
                source,
            })?;
        let _ = shared.watchdog.set(watchdog.thread().clone());
        // Executions that started before the watchdog's thread was known.
        watchdog.thread().unpark();
        executor.watchdog = Some(watchdog);
        Ok(executor)
    }
}

pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn spawn_worker(shared: &Arc<Shared>, index: usize) -> Result<Arc<Slot>, JsError> {
    let slot = Arc::new(Slot::new(index));
    let (s, sl) = (Arc::clone(shared), Arc::clone(&slot));
    std::thread::Builder::new()
        .name(format!("sqrx-js-{index}"))
        .stack_size(shared.limits.stack_bytes + THREAD_STACK_HEADROOM)
        .spawn(move || worker::run(s, sl))
        .map_err(|source| JsError::SpawnWorker { index, source })?;
    Ok(slot)
}

/// Answers `timeout` for any worker still running ABANDON_GRACE after its deadline (a builtin
/// that never polls the interrupt handler), and replaces that worker with a new thread. The
/// stuck thread is left to finish on its own: its memory is bounded by the runtime's limit,
/// and it exits as soon as the engine returns.
///
/// It sleeps until the earliest running execution's deadline + ABANDON_GRACE, or until woken
/// when none runs: an idle executor costs no wake-ups. A look that an execution starting
/// meanwhile may have missed (`next_look` changed under it) is done again.
fn watchdog(shared: &Arc<Shared>) {
    while !shared.queue.is_stopped() {
        shared.next_look.store(u64::MAX, Ordering::SeqCst);
        let earliest = look(shared);
        if shared
            .next_look
            .compare_exchange(u64::MAX, earliest, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            continue;
        }
        if earliest == u64::MAX {
            std::thread::park();
        } else {
            let now = shared.nanos(Instant::now());
            std::thread::park_timeout(Duration::from_nanos(earliest.saturating_sub(now)));
        }
    }
}

/// Abandon the workers stuck past their deadline; returns when to look next (nanoseconds
/// since the epoch, `u64::MAX` when nothing runs).
fn look(shared: &Arc<Shared>) -> u64 {
    shared.looks.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let mut earliest = u64::MAX;
    let mut slots = lock(&shared.slots);
    for i in 0..slots.len() {
        let stuck = {
            let f = lock(&slots[i].in_flight);
            match f.as_ref() {
                Some(f) if now >= f.deadline + ABANDON_GRACE => {
                    Some((Arc::clone(&f.reply), f.started))
                }
                Some(f) => {
                    earliest = earliest.min(shared.nanos(f.deadline + ABANDON_GRACE));
                    None
                }
                None => None,
            }
        };
        let Some((reply, started)) = stuck else {
            continue;
        };
        let index = slots[i].index;
        slots[i].abandoned.store(true, Ordering::Release);
        let answered = reply.send(Execution {
            status: ExecutionStatus::Timeout,
            result: serde_json::Value::Null,
            error: Some(worker::timeout_error(shared.limits.timeout)),
            log: Vec::new(),
            execution_time_ms: Execution::millis(started.elapsed()),
        });
        tracing::warn!(
            worker = index,
            answered,
            "js worker stuck in a builtin past its deadline; abandoning it"
        );
        match spawn_worker(shared, index) {
            Ok(slot) => slots[i] = slot,
            Err(e) => {
                // Keep the old slot (marked abandoned, so it is not answered for twice);
                // the next look cannot retry it, so say so loudly.
                tracing::error!(error = %e, "cannot replace an abandoned js worker");
                lock(&slots[i].in_flight).take();
            }
        }
    }
    earliest
}

impl JsExecutor {
    /// An executor with these limits and one worker per CPU.
    pub fn new(limits: JsLimits) -> Result<Self, JsError> {
        Self::builder().limits(limits).build()
    }

    /// Configure limits, workers and host functions.
    pub fn builder() -> JsExecutorBuilder {
        JsExecutorBuilder::default()
    }

    /// The limits executions run under.
    pub fn limits(&self) -> &JsLimits {
        &self.shared.limits
    }

    /// Submit a script. The returned [`PendingExecution`] is a future of its [`Execution`]
    /// (it needs no particular async runtime) and can also be waited on with
    /// [`PendingExecution::wait`].
    pub fn run(&self, request: JsRequest) -> PendingExecution {
        let reply = Arc::new(Reply::default());
        let job = Job {
            request,
            reply: Arc::clone(&reply),
        };
        self.shared.queue.submit(job);
        PendingExecution { reply }
    }

    /// Run a script and block until it ends.
    pub fn run_blocking(&self, request: JsRequest) -> Execution {
        self.run(request).wait()
    }
}

impl super::JsRunner for JsExecutor {
    fn limits(&self) -> &JsLimits {
        JsExecutor::limits(self)
    }

    fn run(&self, request: JsRequest) -> PendingExecution {
        JsExecutor::run(self, request)
    }
}

impl Drop for JsExecutor {
    fn drop(&mut self) {
        // No job is handed out any more and queued ones answer with an error as they drop;
        // what is running is interrupted.
        self.shared.queue.stop();
        for slot in lock(&self.shared.slots).iter() {
            if let Some(f) = lock(&slot.in_flight).as_ref() {
                f.reply.cancelled.store(true, Ordering::Relaxed);
            }
        }
        if let Some(w) = self.watchdog.take() {
            w.thread().unpark();
            // The watchdog exits as soon as it wakes; workers finish on their own.
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_executor_has_a_sleeping_watchdog() {
        let js = JsExecutor::builder().workers(1).build().expect("executor");
        let out = js.run_blocking(JsRequest::new("1+2"));
        assert_eq!(out.status, ExecutionStatus::Success);
        std::thread::sleep(Duration::from_millis(300));
        let before = js.shared.looks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        let idle = js.shared.looks.load(Ordering::Relaxed) - before;
        // It wakes at most once more, at the finished execution's old deadline.
        assert!(idle <= 1, "the idle watchdog looked {idle} times in 500 ms");
    }
}
