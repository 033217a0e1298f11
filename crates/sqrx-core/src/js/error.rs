//! Errors of the JavaScript executor.
//!
//! A script that throws, times out or runs out of memory is not an error here: it is an
//! [`Execution`](super::Execution) with that status. These are the failures of the executor
//! itself: bad configuration and a host that cannot start worker threads.

use crate::error::ErrorKind;

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
}

impl JsError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            JsError::InvalidLimit { .. }
            | JsError::InvalidWorkers { .. }
            | JsError::InvalidHostFunctionName { .. } => ErrorKind::InvalidArgument,
            JsError::DuplicateHostFunction { .. } => ErrorKind::AlreadyExists,
            JsError::SpawnWorker { .. } => ErrorKind::Unavailable,
        }
    }
}
