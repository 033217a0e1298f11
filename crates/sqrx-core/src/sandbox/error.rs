//! Errors of the sandbox module.

use std::path::PathBuf;

use crate::cgroup::CgroupError;
use crate::kind::{ErrorKind, io_kind};
use crate::layer::LayerError;
use crate::protocol::{Failure, FailureKind};

/// What can go wrong creating, using or destroying sandboxes.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox id breaks the naming rule.
    #[error("invalid sandbox id {id:?}: {reason}")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A field of the spec or request is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A sandbox with this id exists.
    #[error("sandbox {id} already exists")]
    AlreadyExists {
        /// The id.
        id: String,
    },
    /// No sandbox with this id.
    #[error("sandbox {id} not found")]
    NotFound {
        /// The id.
        id: String,
    },
    /// No such user in the sandbox's `/etc/passwd`.
    #[error("user {user:?} is not in the /etc/passwd of sandbox {id}")]
    UserNotFound {
        /// The sandbox id.
        id: String,
        /// The user asked for.
        user: String,
    },
    /// The sandbox's init is gone (killed or crashed); it has been cleaned up.
    #[error("sandbox {id} is dead (its init exited); it has been cleaned up")]
    Dead {
        /// The id.
        id: String,
    },
    /// The runtime's sandbox limit is reached.
    #[error("sandbox limit reached ({max} sandboxes)")]
    LimitExceeded {
        /// The limit.
        max: usize,
    },
    /// No init program was found.
    #[error(
        "cannot find sqrx-init: set RuntimeConfig::init_path or SQRX_INIT, put sqrx-init next to this program ({exe}), or call sqrx_core::roles::run_role_if_any() first thing in main"
    )]
    InitNotFound {
        /// The current executable.
        exe: String,
    },
    /// The init failed to start the sandbox.
    #[error("sandbox {id} failed to start: {reason}")]
    InitFailed {
        /// The id.
        id: String,
        /// What init reported.
        reason: String,
    },
    /// The kernel cannot isolate the sandbox with a user namespace and idmapped mounts.
    #[error(
        "sandbox {id} cannot be isolated on this kernel: {reason} (needs Linux 6.3+ with idmapped mounts on squashfs, tmpfs and overlayfs; an operator may opt into isolation = \"host-root\", where root in a sandbox is root on the host)"
    )]
    IsolationUnsupported {
        /// The id.
        id: String,
        /// What init reported.
        reason: String,
    },
    /// The sandbox's network (link, address or nftables rules) could not be set up or
    /// changed.
    #[error("sandbox {id}: network: {reason}")]
    Network {
        /// The id.
        id: String,
        /// What failed.
        reason: String,
    },
    /// A pause whose freeze did not take effect within 5 s (it was undone).
    #[error("sandbox {id}: its processes did not freeze within 5 s; the pause was undone")]
    FreezeTimeout {
        /// The id.
        id: String,
    },
    /// Talking to the sandbox's init failed.
    #[error("sandbox {id}: control connection failed: {reason}")]
    Protocol {
        /// The id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// Init refused the command (program not found, bad working directory, ...).
    #[error("sandbox {id}: {message}")]
    Command {
        /// The id.
        id: String,
        /// What kind of refusal init reported.
        kind: FailureKind,
        /// Init's message.
        message: String,
    },
    /// Attaching or mounting a layer failed.
    #[error("cannot mount layer {layer} at {target}: {source}")]
    Mount {
        /// The layer.
        layer: String,
        /// The mount point.
        target: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file operation on the sandbox's state failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox's state file is unreadable.
    #[error("sandbox state {path} is invalid: {source}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The sandbox is paused: resume it first.
    #[error("sandbox {id} is paused; resume it first")]
    Paused {
        /// The id.
        id: String,
    },
    /// A layer cannot be removed while sandboxes use it.
    #[error("layer {layer} is used by sandbox(es) {sandboxes}; destroy them first")]
    LayerInUse {
        /// The layer.
        layer: String,
        /// The sandboxes using it, comma-separated.
        sandboxes: String,
    },
    /// A snapshot with this label exists.
    #[error("sandbox {id} already has a snapshot labelled {label}")]
    SnapshotExists {
        /// The sandbox.
        id: String,
        /// The label.
        label: String,
    },
    /// No snapshot with this label.
    #[error("sandbox {id} has no snapshot labelled {label}")]
    SnapshotNotFound {
        /// The sandbox.
        id: String,
        /// The label.
        label: String,
    },
    /// The layer is already part of the sandbox.
    #[error("layer {layer} is already active in sandbox {id}")]
    LayerActive {
        /// The sandbox.
        id: String,
        /// The layer.
        layer: String,
    },
    /// A layer that a snapshot was taken on was removed or replaced in the store.
    #[error(
        "snapshot {label} was taken on layer {layer}, which has been {what} since; it cannot be restored"
    )]
    LayerChanged {
        /// The snapshot.
        label: String,
        /// The layer.
        layer: String,
        /// `removed` or `replaced`.
        what: &'static str,
    },
    /// Nothing accepts connections on this port inside the sandbox.
    #[error("sandbox {id}: port {port} is closed: {reason}")]
    PortClosed {
        /// The sandbox.
        id: String,
        /// The port.
        port: u16,
        /// What init saw.
        reason: String,
    },
    /// The sandbox's stack has more layers than overlayfs can stack, even with its snapshot
    /// layers merged (too many store layers).
    #[error(
        "sandbox {id} would stack {layers} lower layers; at most {max} are allowed (max_lower_layers)"
    )]
    StackTooDeep {
        /// The sandbox.
        id: String,
        /// The layers it would stack.
        layers: usize,
        /// The limit.
        max: usize,
    },
    /// A layer problem (unknown layer, corrupt image).
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A cgroup problem (a limit that cannot be applied).
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A test injected a fault at this step (only with the test-only `fault-injection`
    /// feature; never returned otherwise).
    #[error(transparent)]
    Injected(#[from] crate::faults::Injected),
    /// A layer missing here could not be pulled from the store's bucket.
    #[cfg(feature = "s3")]
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
}

impl SandboxError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::InvalidId { .. } | SandboxError::Invalid { .. } => {
                ErrorKind::InvalidArgument
            }
            SandboxError::AlreadyExists { .. }
            | SandboxError::SnapshotExists { .. }
            | SandboxError::LayerActive { .. } => ErrorKind::AlreadyExists,
            SandboxError::NotFound { .. }
            | SandboxError::UserNotFound { .. }
            | SandboxError::Dead { .. }
            | SandboxError::SnapshotNotFound { .. } => ErrorKind::NotFound,
            SandboxError::LayerChanged { .. } => ErrorKind::Conflict,
            SandboxError::FreezeTimeout { .. } => ErrorKind::Timeout,
            SandboxError::LimitExceeded { .. } | SandboxError::StackTooDeep { .. } => {
                ErrorKind::LimitExceeded
            }
            SandboxError::LayerInUse { .. } | SandboxError::Paused { .. } => ErrorKind::Conflict,
            SandboxError::InitNotFound { .. }
            | SandboxError::PortClosed { .. }
            | SandboxError::IsolationUnsupported { .. } => ErrorKind::Unavailable,
            SandboxError::InitFailed { .. }
            | SandboxError::Network { .. }
            | SandboxError::Protocol { .. }
            | SandboxError::BadState { .. }
            | SandboxError::Injected(_) => ErrorKind::Internal,
            SandboxError::Command { kind, .. } => match kind {
                FailureKind::NotFound => ErrorKind::NotFound,
                FailureKind::Invalid => ErrorKind::InvalidArgument,
                FailureKind::Permission => ErrorKind::PermissionDenied,
                FailureKind::Timeout => ErrorKind::Timeout,
                FailureKind::Limit => ErrorKind::LimitExceeded,
                FailureKind::Refused => ErrorKind::Unavailable,
                FailureKind::Internal => ErrorKind::Internal,
            },
            SandboxError::Mount { source, .. } | SandboxError::Io { source, .. } => io_kind(source),
            SandboxError::Layer(e) => e.kind(),
            SandboxError::Cgroup(e) => e.kind(),
            #[cfg(feature = "s3")]
            SandboxError::Remote(e) => e.kind(),
        }
    }

    /// Decode init's [`Failure`] frame for sandbox `id`: a payload that is not a failure this
    /// host understands (an unknown kind included) is a [`SandboxError::Protocol`] error.
    pub(crate) fn decode_failure(id: &str, payload: &[u8]) -> Result<Failure, SandboxError> {
        serde_json::from_slice::<Failure>(payload).map_err(|e| SandboxError::Protocol {
            id: id.to_string(),
            reason: format!("undecodable failure from init: {e}"),
        })
    }

    /// The error for init's [`Failure`] frame `payload` for sandbox `id`: a
    /// [`SandboxError::Command`], or [`SandboxError::Protocol`] as in
    /// [`SandboxError::decode_failure`].
    pub(crate) fn from_failure(id: &str, payload: &[u8]) -> SandboxError {
        match SandboxError::decode_failure(id, payload) {
            Ok(f) => SandboxError::Command {
                id: id.to_string(),
                kind: f.kind,
                message: f.message,
            },
            Err(e) => e,
        }
    }

    /// The error of [`crate::paths::replace_private`] (the path that failed and why).
    pub(crate) fn write_failed((path, source): (PathBuf, std::io::Error)) -> Self {
        SandboxError::Io {
            op: "write",
            path,
            source,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SandboxError::Io { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_maps_to_a_command_error() {
        for kind in FailureKind::ALL {
            let payload = serde_json::to_vec(&Failure {
                kind,
                message: "m".into(),
            })
            .expect("json");
            match SandboxError::from_failure("s1", &payload) {
                SandboxError::Command { kind: got, .. } => assert_eq!(got, kind),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_failure_kind_is_a_protocol_error() {
        let e = SandboxError::from_failure("s1", br#"{"kind":"exploded","message":"boom"}"#);
        assert!(
            matches!(&e, SandboxError::Protocol { id, reason } if id == "s1" && reason.contains("exploded")),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Internal);
        let e = SandboxError::from_failure("s1", b"not json");
        assert!(matches!(e, SandboxError::Protocol { .. }), "{e:?}");
    }
}
