//! [`ConfinedJsExecutor`]: QuickJS in confined worker processes instead of the host process.
//!
//! Each worker is a process started from the `sqrx-init` binary (`sqrx-init js-worker`) with a
//! clean environment and one descriptor, its channel to the host. Before it runs any script it
//! closes every other descriptor, caps its address space, and when started as root switches to
//! an unprivileged user (`nobody`, 65534, by default); it drops every capability, sets
//! `no_new_privs`, makes itself non-dumpable, dies with its supervisor thread
//! (`PR_SET_PDEATHSIG`), and installs a default-deny seccomp filter that leaves it `read` and
//! `write` on its channel, non-executable memory management, futexes and clocks. It then serves
//! many executions, one at a time, so the cost per execution is a round trip over a socket
//! pair, not a process start.
//!
//! The host keeps one worker per pool slot (default: one per CPU), each started by its slot's
//! supervisor thread. Idle workers wait in a pool, the longest idle first (the one most likely
//! to have built its next context); [`ConfinedJsExecutor::run_blocking`] sends the script to
//! one and reads the answer on the calling thread, [`ConfinedJsExecutor::run`] queues it for
//! the supervisor threads. A worker that does not answer by the deadline +
//! [`ABANDON_GRACE`](super::ABANDON_GRACE) is killed and replaced, and the execution reports
//! `timeout`; so is a worker whose caller stopped waiting. A worker
//! that dies (a crash, the seccomp filter, an outside kill) is replaced, the execution it was
//! running reports an error, and a worker found dead while idle is replaced before the next
//! execution without it noticing.
//!
//! ```no_run
//! use sqrx_core::js::{ConfinedJsExecutor, JsLimits, JsRequest, JsRunner};
//!
//! # fn main() -> Result<(), sqrx_core::js::JsError> {
//! let js = ConfinedJsExecutor::builder()
//!     .limits(JsLimits::default())
//!     .program("/usr/local/bin/sqrx-init")
//!     .build()?;
//! let out = js.run_blocking(JsRequest::new("1 + 2"));
//! assert_eq!(out.result, 3);
//! # Ok(())
//! # }
//! ```
//!
//! Host functions are not available to confined scripts (they would be calls back into the
//! host); use [`JsExecutor`](super::JsExecutor) for those.

mod process;
mod protocol;
mod seccomp;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use supervisor::{Program, Shared, WorkerSpec, lock};
pub use supervisor::{WORKER_ARG, WORKER_ENV};

use super::reply::{PendingExecution, Reply};
use super::worker::Job;
use super::{Execution, JsError, JsLimits, JsRequest, JsRunner};

/// The user confined workers switch to when started as root: `nobody`.
pub const DEFAULT_WORKER_UID: u32 = 65534;
/// The group confined workers switch to when started as root: `nogroup`.
pub const DEFAULT_WORKER_GID: u32 = 65534;

/// The worker process's main ([`crate::roles::Role::JsWorker`]: `sqrx-init js-worker`, or a
/// program re-executed with [`WORKER_ENV`]); returns the exit code.
pub(crate) fn worker_main() -> i32 {
    process::main()
}

/// Find the worker program the way the runtime finds `sqrx-init`: `explicit`, else `SQRX_INIT`,
/// else `sqrx-init` next to the current executable, else the current executable itself when
/// [`crate::roles::run_role_if_any`] was called.
fn locate(explicit: Option<PathBuf>) -> Result<Program, JsError> {
    if let Some(path) = explicit {
        return Ok(Program {
            path,
            self_exec: false,
        });
    }
    if let Some(p) = std::env::var_os("SQRX_INIT").filter(|p| !p.is_empty()) {
        return Ok(Program {
            path: PathBuf::from(p),
            self_exec: false,
        });
    }
    let exe = std::env::current_exe().unwrap_or_default();
    if let Some(sibling) = exe.parent().map(|d| d.join("sqrx-init"))
        && sibling.is_file()
    {
        return Ok(Program {
            path: sibling,
            self_exec: false,
        });
    }
    if crate::roles::self_exec_enabled() {
        return Ok(Program {
            path: exe,
            self_exec: true,
        });
    }
    Err(JsError::WorkerNotFound {
        exe: exe.display().to_string(),
    })
}

/// Runs untrusted JavaScript in a pool of confined worker processes, with the same limits,
/// semantics and [`Execution`] results as [`JsExecutor`](super::JsExecutor).
///
/// See the [module documentation](self) for the confinement.
pub struct ConfinedJsExecutor {
    shared: Arc<Shared>,
    supervisors: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ConfinedJsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfinedJsExecutor")
            .field("limits", &self.shared.spec.limits)
            .field("program", &self.shared.spec.program.path)
            .field("workers", &self.supervisors.len())
            .finish()
    }
}

/// Configures a [`ConfinedJsExecutor`].
#[derive(Debug, Clone)]
pub struct ConfinedJsExecutorBuilder {
    limits: JsLimits,
    workers: Option<usize>,
    program: Option<PathBuf>,
    uid: u32,
    gid: u32,
}

impl Default for ConfinedJsExecutorBuilder {
    fn default() -> Self {
        ConfinedJsExecutorBuilder {
            limits: JsLimits::default(),
            workers: None,
            program: None,
            uid: DEFAULT_WORKER_UID,
            gid: DEFAULT_WORKER_GID,
        }
    }
}

impl ConfinedJsExecutorBuilder {
    /// The limits every execution runs under.
    pub fn limits(mut self, limits: JsLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The number of worker processes (default: the number of CPUs).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The `sqrx-init` binary to start workers from (default: found like the runtime finds
    /// it: `SQRX_INIT`, next to the current executable, or self-exec after
    /// [`crate::roles::run_role_if_any`]).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// The user and group workers switch to when the host runs as root (default 65534:65534).
    /// Root (0) is refused.
    pub fn identity(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Validate, start the workers and wait until each is confined and ready.
    pub fn build(self) -> Result<ConfinedJsExecutor, JsError> {
        self.limits.validate()?;
        let workers = self
            .workers
            .unwrap_or_else(super::executor::default_workers);
        if workers == 0 {
            return Err(JsError::InvalidWorkers { workers });
        }
        if self.uid == 0 || self.gid == 0 {
            return Err(JsError::InvalidIdentity {
                uid: self.uid,
                gid: self.gid,
            });
        }
        let spec = WorkerSpec {
            program: locate(self.program)?,
            limits: self.limits,
            uid: self.uid,
            gid: self.gid,
        };
        let shared = Arc::new(Shared::new(spec, workers));
        let mut executor = ConfinedJsExecutor {
            shared: Arc::clone(&shared),
            supervisors: Vec::with_capacity(workers),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        for index in 0..workers {
            let (s, tx) = (Arc::clone(&shared), tx.clone());
            // Each worker is started by its supervisor thread, which lives as long as the
            // executor: PR_SET_PDEATHSIG fires when the thread that started a worker ends.
            let handle = std::thread::Builder::new()
                .name(format!("sqrx-jsw-{index}"))
                .spawn(move || supervisor::supervise(&s, index, tx))
                .map_err(|source| JsError::SpawnWorker { index, source })?;
            executor.supervisors.push(handle);
        }
        drop(tx);
        // On an early return, dropping `executor` stops the workers already started.
        for _ in 0..workers {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(JsError::WorkerProtocol {
                        reason: "a supervisor thread ended before its worker started".into(),
                    });
                }
            }
        }
        Ok(executor)
    }
}

impl ConfinedJsExecutor {
    /// An executor with these limits, one worker per CPU, and the worker program found like
    /// the runtime finds `sqrx-init`.
    pub fn new(limits: JsLimits) -> Result<Self, JsError> {
        Self::builder().limits(limits).build()
    }

    /// Configure limits, workers, the worker program and identity.
    pub fn builder() -> ConfinedJsExecutorBuilder {
        ConfinedJsExecutorBuilder::default()
    }

    /// The limits executions run under.
    pub fn limits(&self) -> &JsLimits {
        &self.shared.spec.limits
    }

    /// The pids of the current worker processes (a slot between a dead worker and its
    /// replacement has none), for monitoring and confinement checks.
    pub fn worker_pids(&self) -> Vec<u32> {
        lock(&self.shared.pids).iter().flatten().copied().collect()
    }

    /// How many workers were replaced so far: killed past a deadline or on cancellation, or
    /// found dead.
    pub fn replaced_workers(&self) -> u64 {
        self.shared.replaced.load(Ordering::Relaxed)
    }

    /// Submit a script; the returned [`PendingExecution`] is a future of its [`Execution`].
    /// Dropping it before the answer kills the worker running it (a new one takes its place).
    pub fn run(&self, request: JsRequest) -> PendingExecution {
        let reply = Arc::new(Reply::default());
        self.shared.submit(Job {
            request,
            reply: Arc::clone(&reply),
        });
        PendingExecution { reply }
    }

    /// Run a script and block until it ends. The calling thread hands the script to an idle
    /// worker and reads its answer itself (the deadline still applies: a worker past it is
    /// killed).
    pub fn run_blocking(&self, request: JsRequest) -> Execution {
        self.shared.run_here(&request)
    }
}

impl JsRunner for ConfinedJsExecutor {
    fn limits(&self) -> &JsLimits {
        ConfinedJsExecutor::limits(self)
    }

    fn run(&self, request: JsRequest) -> PendingExecution {
        ConfinedJsExecutor::run(self, request)
    }

    fn run_blocking(&self, request: JsRequest) -> Execution {
        ConfinedJsExecutor::run_blocking(self, request)
    }
}

impl Drop for ConfinedJsExecutor {
    fn drop(&mut self) {
        self.shared.stop();
        // A supervisor waiting on a worker finishes that execution (bounded by its deadline
        // + grace) and exits; its worker is killed as it drops.
        for s in self.supervisors.drain(..) {
            let _ = s.join();
        }
    }
}
