//! Errors of the JavaScript executor.
//!
//! A script that throws, times out or runs out of memory is not an error here: it is an
//! [`Execution`](super::Execution) with that status. These are the failures of the executor
//! itself: bad configuration, and a host that cannot start worker threads or processes.

use crate::kind::ErrorKind;

/// What can go wrong while configuring or starting a [`JsExecutor`](super::JsExecutor).
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// A limit is out of range.
    #[error("invalid js limit {name}: {reason}")]
    InvalidLimit {
        /// The limit (`memory_bytes`, `timeout`, ...).
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A limit a caller asked for is outside what the [`JsLimitsPolicy`](super::JsLimitsPolicy)
    /// allows.
    #[error("invalid {field}: {value} is outside {min}..={max}")]
    LimitOutOfRange {
        /// The field asked for.
        field: super::JsLimitField,
        /// The value asked for.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// The worker count is zero.
    #[error("invalid js worker count {workers}: need at least one worker")]
    InvalidWorkers {
        /// The rejected count.
        workers: usize,
    },
    /// A host function name is not a plain JavaScript identifier.
    #[error("invalid host function name {name:?}: {reason}")]
    InvalidHostFunctionName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Two host functions share a name.
    #[error("host function {name:?} is registered twice")]
    DuplicateHostFunction {
        /// The name.
        name: String,
    },
    /// The operating system refused to start a worker thread.
    #[error("cannot start js worker thread {index}: {source}")]
    SpawnWorker {
        /// The worker's index in the pool.
        index: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The worker identity would be root.
    #[error("invalid js worker identity {uid}:{gid}: workers never run as root")]
    InvalidIdentity {
        /// The user.
        uid: u32,
        /// The group.
        gid: u32,
    },
    /// No program to start confined workers from.
    #[error(
        "cannot find sqrx-init to start confined JavaScript workers: set SQRX_INIT, put sqrx-init next to this program ({exe}), or call sqrx_core::roles::run_role_if_any() first thing in main"
    )]
    WorkerNotFound {
        /// The current executable.
        exe: String,
    },
    /// A channel operation with a worker failed while starting it.
    #[error("js worker channel: {op}: {source}")]
    WorkerChannel {
        /// The operation (`socketpair`, ...).
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The worker program could not be started.
    #[error("cannot start js worker {program}: {source}", program = program.display())]
    SpawnProcess {
        /// The program.
        program: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A worker ended before it said it was ready.
    #[error(
        "js worker {program} ended before it was ready ({status}); is it an sqrx-init of this version?"
    )]
    WorkerExited {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
    },
    /// A worker could not confine itself.
    #[error("js worker confinement failed at {step}: {message}")]
    WorkerSetup {
        /// The step (`setresuid`, `seccomp`, ...).
        step: String,
        /// The error the worker reported.
        message: String,
    },
    /// A worker broke the channel protocol.
    #[error("js worker protocol: {reason}")]
    WorkerProtocol {
        /// What was wrong.
        reason: String,
    },
}

impl JsError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            JsError::InvalidLimit { .. }
            | JsError::LimitOutOfRange { .. }
            | JsError::InvalidWorkers { .. }
            | JsError::InvalidHostFunctionName { .. }
            | JsError::InvalidIdentity { .. } => ErrorKind::InvalidArgument,
            JsError::DuplicateHostFunction { .. } => ErrorKind::AlreadyExists,
            JsError::SpawnWorker { .. }
            | JsError::WorkerNotFound { .. }
            | JsError::WorkerChannel { .. }
            | JsError::SpawnProcess { .. }
            | JsError::WorkerExited { .. }
            | JsError::WorkerSetup { .. }
            | JsError::WorkerProtocol { .. } => ErrorKind::Unavailable,
        }
    }
}
