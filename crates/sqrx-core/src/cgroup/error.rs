//! Errors of the cgroup module.

use std::path::PathBuf;

use crate::kind::{ErrorKind, io_kind};

/// What can go wrong with control groups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup hierarchy was found.
    #[error("no cgroup hierarchy under {root} (is cgroupfs mounted?)")]
    NoCgroups {
        /// Where it looked.
        root: PathBuf,
    },
    /// A limit was asked for but its controller is not available.
    #[error(
        "cannot apply the {controller} limit: the {controller} cgroup controller is not available under {root}"
    )]
    ControllerMissing {
        /// The controller.
        controller: String,
        /// The cgroup root.
        root: PathBuf,
    },
    /// Creating a cgroup directory failed.
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a control file failed.
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading a control file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Loading or attaching the cgroup v2 device program failed.
    #[error("cannot install the device filter on cgroup {path}: {source}")]
    DeviceFilter {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A control file held something other than what the kernel writes there.
    #[error("cannot parse {path}: {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held (cut short).
        content: String,
    },
    /// Removing a cgroup failed.
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::NoCgroups { .. } | CgroupError::ControllerMissing { .. } => {
                ErrorKind::Unavailable
            }
            CgroupError::Parse { .. } => ErrorKind::Internal,
            CgroupError::Create { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Read { source, .. }
            | CgroupError::Remove { source, .. }
            | CgroupError::DeviceFilter { source, .. } => match io_kind(source) {
                ErrorKind::NotFound => ErrorKind::Internal,
                other => other,
            },
        }
    }
}
