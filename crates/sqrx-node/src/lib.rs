//! The `sqrx` Node.js addon (napi-rs), loaded by `index.js`. It only translates: arguments in,
//! core errors out, every blocking call off the JS main thread; all logic lives in `sqrx-core`.

#![allow(missing_docs, reason = "napi macros generate undocumented glue items")]

mod bridge;
mod error;
mod exec;
mod files;
mod js;
mod network;
mod runtime;
mod sandbox;
mod secrets;

use napi_derive::napi;

pub use js::run_js;

/// The sqrx version.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The names of the layers in the store (default data dir unless `dataDir` is given).
#[napi]
pub fn list_layers(data_dir: Option<String>) -> napi::Result<Vec<String>> {
    let dir = data_dir
        .map(Into::into)
        .unwrap_or_else(sqrx_core::paths::default_data_dir);
    let list = sqrx_core::LayerStore::open(&dir).and_then(|s| s.list());
    match list {
        Ok(layers) => Ok(layers.into_iter().map(|l| l.name.to_string()).collect()),
        Err(e) => Err(error::to_napi(e)),
    }
}
