//! Build a layer from a directory, then list, inspect and verify it.
//!
//! `cargo run -p sqrx-examples --bin layers`

use sqrx_core::{BuildOptions, LayerName, LayerStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A throwaway data dir; real programs use sqrx_core::paths::default_data_dir().
    let data = tempfile::tempdir()?;
    let store = LayerStore::open(data.path())?;

    // Something to pack: a tiny application tree.
    let src = tempfile::tempdir()?;
    std::fs::create_dir_all(src.path().join("app"))?;
    std::fs::write(
        src.path().join("app/main.py"),
        "print('hello from a layer')\n",
    )?;

    let name = LayerName::new("100-app")?;
    let report = store.build_from_dir(&name, src.path(), &BuildOptions::default())?;
    println!(
        "built {} ({} bytes, {})",
        report.layer.name, report.layer.size, report.layer.digest
    );

    for layer in store.list()? {
        let inspection = store.inspect(&layer.name)?;
        println!(
            "{}: {} files, {} dirs, {}",
            layer.name, inspection.files, inspection.directories, inspection.compression
        );
    }
    let verification = store.verify(&name)?;
    println!("verified: {} bytes read back", verification.bytes_read);

    // Names are validated: this is an error, not a panic.
    match LayerName::new("Not A Layer") {
        Ok(_) => unreachable!("invalid names are rejected"),
        Err(e) => println!("rejected as expected: {e} (kind {})", e.kind()),
    }
    Ok(())
}
