//! Errors of the layer store's remote copy.

use crate::ErrorKind;
use crate::layer::LayerError;

/// What went wrong talking to the bucket or with what came back from it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The settings are wrong.
    #[error("S3 settings: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// No credentials were found in the standard AWS chain.
    #[error(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \
         run with an instance role ({detail})"
    )]
    NoCredentials {
        /// The SDK's words.
        detail: String,
    },
    /// The service refused the credentials or the request.
    #[error("S3 refused {op} of s3://{bucket}/{key}: {detail}")]
    Denied {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
        /// The service's words.
        detail: String,
    },
    /// The layer or object is not in the bucket.
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
    },
    /// An object's bytes are not what its index says.
    #[error("s3://{bucket}/{key} is corrupt: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
        /// What differs (digest, size).
        reason: String,
    },
    /// The local layer of that name is another image than the remote one.
    #[error(
        "layer {name} differs here ({local}) and in the bucket ({remote}); pass force to replace the local one"
    )]
    Diverged {
        /// The layer.
        name: String,
        /// The local digest.
        local: String,
        /// The remote digest.
        remote: String,
    },
    /// The service could not be reached or answered an error.
    #[error("S3 {op} of s3://{bucket}/{key} failed: {detail}")]
    Service {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
        /// The SDK's words.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The local store refused the layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A test stopped the operation at a step point.
    #[error(transparent)]
    Injected(#[from] crate::faults::Injected),
}

impl RemoteError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::Config { .. } | RemoteError::Corrupt { .. } => ErrorKind::InvalidArgument,
            RemoteError::NoCredentials { .. } | RemoteError::Denied { .. } => {
                ErrorKind::PermissionDenied
            }
            RemoteError::NotFound { .. } => ErrorKind::NotFound,
            RemoteError::Diverged { .. } => ErrorKind::Conflict,
            RemoteError::Service { .. } => ErrorKind::Unavailable,
            RemoteError::Io { source, .. } => crate::kind::io_kind(source),
            RemoteError::Layer(e) => e.kind(),
            RemoteError::Injected(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RemoteError::Io { op, path, source }
    }
}
