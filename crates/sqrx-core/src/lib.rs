//! sqrx-core: fast, composable sandboxes for untrusted code.
//!
//! This crate holds all of sqrx's logic; the server and the Python and Node bindings are thin
//! layers over it:
//!
//! - [`layer`]: immutable squashfs images built in-process (with [`backhand`]) from a
//!   directory, a tar stream, an image or the host's own programs, kept in a [`LayerStore`].
//! - [`sandbox`]: a [`Runtime`] creates [`Sandbox`]es (an overlay of layers and a private
//!   upper, a user namespace of their own, cgroup limits, a confined init) that run commands,
//!   serve files, snapshot and restore in O(1), activate layers and clone.
//! - [`session`]: terminals and long-lived jobs for interactive use.
//! - `js` (feature `js`): JavaScript with QuickJS, in-process or in confined worker processes.
//! - [`init`]: the program that runs inside every sandbox, and [`protocol`], how the host
//!   talks to it.
//! - [`roles`]: the roles (sandbox init, network daemon, session info service, JavaScript
//!   worker) a program plays when sqrx starts it again; a program that uses sqrx calls
//!   [`roles::run_role_if_any`] first thing in `main`.
//!
//! Guarantees and their limits are in the repository's docs: security.md (isolation),
//! reliability.md (transactions, crash consistency, fuzzing), sandboxes.md and layers.md.
//!
//! ```no_run
//! use sqrx_core::{BuildOptions, LayerName, LayerStore};
//!
//! # fn main() -> Result<(), sqrx_core::Error> {
//! let store = LayerStore::open("/var/lib/sqrx")?;
//! let name = LayerName::new("100-tools")?;
//! let report = store.build_from_dir(&name, "/srv/tools".as_ref(), &BuildOptions::default())?;
//! println!("{} {} bytes", report.layer.digest, report.layer.size);
//! for layer in store.list()? {
//!     println!("{}", layer.name);
//! }
//! # Ok(())
//! # }
//! ```

pub mod accounts;
pub mod cgroup;
pub mod error;
pub mod faults;
pub mod init;
#[cfg(feature = "js")]
pub mod js;
pub mod kind;
pub mod layer;
pub mod network;
pub mod paths;
pub mod protocol;
#[cfg(feature = "s3")]
pub mod remote;
pub mod roles;
pub mod sandbox;
pub mod secrets;
pub mod session;
#[allow(
    unsafe_code,
    reason = "sys is the one module allowed to hold unsafe code"
)]
pub(crate) mod sys;
mod weaken;

pub use error::{Error, ErrorKind};
#[cfg(feature = "js")]
pub use js::{Execution, ExecutionStatus, JsError, JsExecutor, JsLimits, JsRequest};
pub use layer::{
    BootstrapPreset, BuildOptions, BuildProgress, BuildReport, Compression, Inspection, Layer,
    LayerError, LayerName, LayerStore, Provenance, Verification,
};
pub use sandbox::{
    Command, ExecEvent, ExecRequest, ExecResult, IdRange, Isolation, Runtime, RuntimeConfig,
    Sandbox, SandboxError, SandboxInfo, SandboxSpec, SnapshotInfo,
};
pub use sandbox::{
    ProcessEnd, ProcessEvent, ProcessInfo, ProcessWatch, StartOptions, TrackedProcess, Watched,
};
pub use secrets::{Secret, SecretInfo};
