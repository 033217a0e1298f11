//! Sandboxes on the Linux namespace backend: create, exec, spawn, logs, files, pause/resume,
//! snapshot/restore, activate, clone, destroy, recovery.
//!
//! Each sandbox is a persistent `sqrx-init` (see [`crate::init`]) in its own mount, PID, IPC,
//! UTS, network and cgroup namespaces, with an overlay root over shared read-only layer mounts
//! and a size-capped tmpfs upper, limited by a cgroup. The host talks to it over a Unix socket.

mod archive;
mod clone;
mod connect;
mod create;
mod destroy;
mod error;
mod exec;
mod files;
mod flatten;
pub(crate) mod ids;
mod lifetime;
mod logs;
mod mounts;
mod network;
mod owners;
mod pause;
mod processes;
mod pty;
mod recover;
#[cfg(feature = "s3")]
mod remote;
mod restore;
mod runtime;
mod secrets;
mod snapshot;
mod spec;
pub(crate) mod state;
mod stats;
mod upper;
mod watch;

pub use connect::DEFAULT_CONNECT_TIMEOUT;
pub use error::SandboxError;
pub use exec::{ExecEvent, ExecStdin, ExecStream, SpawnHandle};
pub use files::FileInfo;
pub use ids::IdRange;
pub use logs::ExecLogEntry;
pub use processes::{
    ProcessEnd, ProcessEvent, ProcessInfo, ProcessWatch, StartOptions, TrackedProcess, Watched,
};
pub use pty::PtyInput;
#[cfg(feature = "s3")]
pub(crate) use runtime::Inner as RuntimeInner;
pub use runtime::{
    Isolation, OVERLAY_MAX_LOWER_LAYERS, Runtime, RuntimeConfig, Sandbox, SandboxInfo,
};
pub use snapshot::{SnapshotInfo, validate_label};
pub use spec::{Command, DEFAULT_OUTPUT_CAP, ExecRequest, ExecResult, SandboxSpec, validate_id};
pub use state::process_start_time;
pub use watch::{Change, ChangeKind};
