//! Runs the core's async work on one tokio runtime shared by the module, and waits for it from
//! Python threads without holding the GIL.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// How often a waiting thread takes the GIL back to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The module's tokio runtime, also handed to pyo3-async-runtimes for the `*_async` methods.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sqrx-tokio")
        .enable_all()
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
    // Another thread may have won the race; its runtime is the one kept.
    let rt = RUNTIME.get_or_init(|| rt);
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(rt);
    Ok(rt)
}

/// Run `fut` on the runtime and wait for it with the GIL released. Every
/// [`SIGNAL_CHECK_INTERVAL`] the GIL is taken back to run Python's signal handlers: when one
/// raises (KeyboardInterrupt), the task is aborted, which drops the future (for an exec, the
/// sandbox then kills the exec's process group), and the exception propagates.
pub(crate) fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let mut task = rt.spawn(fut);
    loop {
        let done = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut task).await })
        });
        match done {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                return Err(PyRuntimeError::new_err(format!("sqrx task failed: {e}")));
            }
            Err(_elapsed) => {
                if let Err(e) = py.check_signals() {
                    task.abort();
                    return Err(e);
                }
            }
        }
    }
}

/// Run blocking core work from an `async` method: on the blocking pool, so the event loop and
/// the runtime's workers stay free.
pub(crate) async fn off_thread<F, T>(f: F) -> PyResult<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PyRuntimeError::new_err(format!("sqrx task failed: {e}")))
}
