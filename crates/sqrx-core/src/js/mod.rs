//! The JavaScript executors: untrusted scripts run with QuickJS (through `rquickjs`), under
//! memory, time, stack, log and result limits, either in this process ([`JsExecutor`], for
//! embedders) or in confined worker processes ([`ConfinedJsExecutor`], what the server uses).
//!
//! ```
//! use sqrx_core::js::{JsExecutor, JsLimits, JsRequest};
//!
//! # fn main() -> Result<(), sqrx_core::js::JsError> {
//! let js = JsExecutor::new(JsLimits::default())?;
//! let out = js.run_blocking(JsRequest::new(r#"console.log("Hello!", {a: 1}); 1 + 2"#));
//! assert_eq!(out.result, 3);
//! println!("{}", serde_json::to_string(&out).expect("json"));
//! # Ok(())
//! # }
//! ```
//!
//! What callers may ask for is one [`JsLimitsPolicy`] (defaults and maxima of `timeout_ms` and
//! `memory_mb`), and a [`JsExecutorCache`] shares executors between calls with the same limits:
//! the server and the bindings use both, `sqrx js` the policy.
//!
//! See `docs/js.md` for the semantics, the limits and how timeouts hold inside builtins.

mod cache;
pub mod confined;
mod console;
mod convert;
mod error;
mod execution;
mod executor;
mod host;
mod limits;
mod policy;
mod queue;
mod reply;
mod runner;
mod worker;

pub use cache::JsExecutorCache;
pub use confined::{ConfinedJsExecutor, ConfinedJsExecutorBuilder};
pub use error::JsError;
pub use execution::{Execution, ExecutionError, ExecutionStatus, JsRequest, LogEntry, LogLevel};
pub use executor::{ABANDON_GRACE, JsExecutor, JsExecutorBuilder};
pub use host::{AsyncHostFn, HostFuture, HostResult, SyncHostFn};
pub use limits::JsLimits;
pub use policy::{JsLimitField, JsLimitsPolicy};
pub use reply::PendingExecution;
pub use runner::JsRunner;
