//! Fuzz targets of sqrx-core: proptest drivers over everything that parses bytes a user or a
//! sandbox controls. They run in `cargo test` with a small case count; `SQRX_FUZZ_CASES=N`
//! runs each with `N` cases (see `docs/reliability.md`). This binary caps its own address
//! space (`sqrx_testkit::fuzz::limit_memory`) and aborts on a case that hangs.

mod protocol;
mod squashfs;
mod tar_import;

/// A layer store in a fresh temporary data dir (removed with the guard).
pub fn scratch_store() -> (tempfile::TempDir, sqrx_core::LayerStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqrx_core::LayerStore::open(dir.path()).expect("open store");
    (dir, store)
}

/// Build options for small images that are quick to pack (4 KiB blocks, so a small file spans
/// several), replacing a layer of the same name.
pub fn small_blocks() -> sqrx_core::BuildOptions {
    sqrx_core::BuildOptions {
        block_size: 4096,
        force: true,
        ..sqrx_core::BuildOptions::default()
    }
}
