//! Errors of the session module.

use crate::kind::ErrorKind;
use crate::sandbox::SandboxError;

/// What can go wrong with sessions.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No template with this name.
    #[error("no session template named {name:?}")]
    UnknownTemplate {
        /// The name asked for.
        name: String,
    },
    /// No session with this id (or token).
    #[error("session not found")]
    NotFound,
    /// Too many sessions are open.
    #[error("session limit reached ({max} sessions)")]
    LimitExceeded {
        /// The limit.
        max: usize,
    },
    /// A requested value is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The session's service never accepted a connection.
    #[error(
        "the session's service did not accept connections on port {port} within {secs} s (last: {last})"
    )]
    ServiceDidNotStart {
        /// The port it should listen on.
        port: u16,
        /// How long we waited.
        secs: u64,
        /// The last probe's error.
        last: String,
    },
    /// The sandbox underneath failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl SessionError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::UnknownTemplate { .. } | SessionError::NotFound => ErrorKind::NotFound,
            SessionError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            SessionError::Invalid { .. } => ErrorKind::InvalidArgument,
            SessionError::ServiceDidNotStart { .. } => ErrorKind::Unavailable,
            SessionError::Sandbox(e) => e.kind(),
        }
    }
}
