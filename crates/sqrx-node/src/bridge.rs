//! Where blocking core work runs from the Promise-returning methods.

use crate::error::{join, to_napi};

/// Run blocking core work (create, destroy, files, snapshots) on tokio's blocking pool: never
/// on the JS main thread, and never on a libuv worker (there are only four of those).
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> napi::Result<T>
where
    T: Send + 'static,
    E: Into<sqrx_core::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(join)?
        .map_err(to_napi)
}
