//! Integration tests of sqrx-core through its public API. Tests that need root (mknod, loop
//! mounts) call `sqrx_testkit::privileged` first: they skip with a reason, or fail when
//! `SQRX_REQUIRE_PRIVILEGED=1` (as in CI).

mod chains;
mod corrupt_images;
mod crash;
mod disk_full;
mod escape;
#[cfg(feature = "js")]
mod js;
#[cfg(feature = "js")]
mod js_confined;
mod layer_build;
mod layer_store;
mod manifest;
mod network;
mod remote;
mod sandbox;
mod secrets;
mod session;
mod state;
mod tar_import;
mod transactions;
mod users;

use sqrx_core::{BuildOptions, LayerName, LayerStore};

/// A store in a fresh temporary data dir (removed when the guard drops).
pub fn temp_store() -> (tempfile::TempDir, LayerStore) {
    let dir = tempfile::Builder::new()
        .prefix("sqrx-test-data-")
        .tempdir()
        .expect("tempdir");
    let store = LayerStore::open(dir.path()).expect("open store");
    (dir, store)
}

/// Parse a layer name that the test knows is valid.
pub fn name(s: &str) -> LayerName {
    LayerName::new(s).expect("valid test layer name")
}

/// Default build options.
pub fn opts() -> BuildOptions {
    BuildOptions::default()
}
