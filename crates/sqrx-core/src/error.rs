//! The crate error: one variant per module's error. Its stable [`ErrorKind`] lives in
//! [`crate::kind`], which the modules' errors use without depending on this gathering.

use crate::cgroup::CgroupError;
#[cfg(feature = "js")]
use crate::js::JsError;
use crate::layer::LayerError;
use crate::sandbox::SandboxError;
use crate::session::SessionError;

pub use crate::kind::ErrorKind;

/// Every error sqrx-core returns: one variant per module, each with its own typed error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the layer model (building, storing, reading layers).
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An error from sandboxes (create, exec, destroy).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// An error from sessions.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// An error from control groups.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// An error from the JavaScript executor (configuration, worker threads).
    #[cfg(feature = "js")]
    #[error(transparent)]
    Js(#[from] JsError),
    /// An error from the layer store's copy in S3.
    #[cfg(feature = "s3")]
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
}

impl Error {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Layer(e) => e.kind(),
            Error::Sandbox(e) => e.kind(),
            Error::Cgroup(e) => e.kind(),
            Error::Session(e) => e.kind(),
            #[cfg(feature = "js")]
            Error::Js(e) => e.kind(),
            #[cfg(feature = "s3")]
            Error::Remote(e) => e.kind(),
        }
    }
}
