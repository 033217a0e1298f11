//! Embeds the web console (`ui/dist`, built from the top-level `ui/` by `npm run build` and
//! committed) into the binary: `cargo build` and `cargo install` need no Node. Writes
//! `$OUT_DIR/ui_assets.rs`, a table of every file under `ui/dist` (relative path, bytes).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dist = manifest.join("ui").join("dist");
    println!("cargo:rerun-if-changed=ui/dist");
    let mut found = Vec::new();
    if dist.is_dir() {
        files(&dist, &mut found)?;
    }
    found.sort();
    let mut table = String::from(
        "/// The console's files: path under `/ui/`, contents.\n\
         static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for path in &found {
        let relative = path.strip_prefix(&dist)?;
        let name = relative
            .to_str()
            .ok_or("a console file name that is not UTF-8")?;
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.to_str().ok_or("a path that is not UTF-8")?
        ));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("ui_assets.rs");
    std::fs::write(out, table)?;
    Ok(())
}
