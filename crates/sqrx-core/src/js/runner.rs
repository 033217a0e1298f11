//! [`JsRunner`]: what the in-process and the confined executors have in common, so that a
//! caller (the server) can pick one at start and use it the same way.

use super::{Execution, JsLimits, JsRequest, PendingExecution};

/// Runs scripts under fixed limits and delivers their [`Execution`]s: implemented by
/// [`JsExecutor`](super::JsExecutor) (QuickJS in this process) and
/// [`ConfinedJsExecutor`](super::ConfinedJsExecutor) (QuickJS in confined worker processes).
///
/// ```
/// use sqrx_core::js::{JsExecutor, JsLimits, JsRequest, JsRunner};
///
/// fn double(js: &dyn JsRunner, x: i64) -> serde_json::Value {
///     js.run_blocking(JsRequest::new("input * 2").with_input(x.into())).result
/// }
/// let js = JsExecutor::new(JsLimits::default())?;
/// assert_eq!(double(&js, 21), 42);
/// # Ok::<(), sqrx_core::js::JsError>(())
/// ```
pub trait JsRunner: Send + Sync + std::fmt::Debug {
    /// The limits executions run under.
    fn limits(&self) -> &JsLimits;

    /// Submit a script; the [`PendingExecution`] is a future of its [`Execution`] (or
    /// [`PendingExecution::wait`] for it). Dropping it before the answer stops the script.
    fn run(&self, request: JsRequest) -> PendingExecution;

    /// Run a script and block until it ends.
    fn run_blocking(&self, request: JsRequest) -> Execution {
        self.run(request).wait()
    }
}
