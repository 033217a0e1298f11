//! Benchmark: pack the same ~100 MB tree with sqrx (backhand, in-process) and with
//! `mksquashfs -comp zstd -Xcompression-level 3`, alternating runs, and print medians.
//!
//! `cargo run --release -p layer_pack -- [--runs N] [--tree DIR] [--mb N]`
//!
//! Without `--tree`, the tree is assembled by copying host files (Python's standard library,
//! shared libraries, documentation) into a temporary directory until it holds `--mb` MB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sqrx_core::{BuildOptions, LayerName, LayerStore};

const SOURCES: &[&str] = &[
    "/usr/lib/python3.11",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/share",
    "/usr/bin",
];

struct Args {
    runs: usize,
    tree: Option<PathBuf>,
    mb: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 5,
        tree: None,
        mb: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--tree" => args.tree = Some(PathBuf::from(value()?)),
            "--mb" => args.mb = value()?.parse().map_err(|e| format!("--mb: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Copy regular files (and the directories above them) from the host until `limit` bytes.
fn assemble_tree(dst: &Path, limit: u64) -> Result<(u64, u64), String> {
    let (mut bytes, mut files) = (0u64, 0u64);
    for src in SOURCES {
        for entry in walkdir::WalkDir::new(src)
            .follow_links(false)
            .sort_by_file_name()
        {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(md) = entry.metadata() else { continue };
            if bytes + md.len() > limit {
                continue;
            }
            let rel = entry.path().strip_prefix("/").map_err(|e| e.to_string())?;
            let target = dst.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("mkdir: {e}"))?;
            }
            if std::fs::copy(entry.path(), &target).is_ok() {
                bytes += md.len();
                files += 1;
            }
            if bytes + 4096 > limit {
                return Ok((bytes, files));
            }
        }
    }
    Ok((bytes, files))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = run() {
        eprintln!("layer_pack: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mksquashfs = ["/usr/bin/mksquashfs", "/usr/sbin/mksquashfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("mksquashfs not found: apt-get install squashfs-tools")?;
    let work = tempfile::Builder::new()
        .prefix("sqrx-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let (tree, bytes, files) = match &args.tree {
        Some(t) => {
            let bytes = walkdir::WalkDir::new(t)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            (t.clone(), bytes, 0)
        }
        None => {
            let t = work.path().join("tree");
            let (bytes, files) = assemble_tree(&t, args.mb * 1_000_000)?;
            (t, bytes, files)
        }
    };
    let store = LayerStore::open(work.path().join("data")).map_err(|e| e.to_string())?;
    let name = LayerName::new("100-bench").map_err(|e| e.to_string())?;
    let opts = BuildOptions {
        force: true,
        ..BuildOptions::default()
    };
    let mks_image = work.path().join("mksquashfs.sqfs");

    // Warm the page cache so both tools read from memory.
    store
        .build_from_dir(&name, &tree, &opts)
        .map_err(|e| e.to_string())?;

    let (mut sqrx_s, mut mks_s, mut pack_s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sqrx_size, mut mks_size, mut pack_size) = (0, 0, 0);
    let pack_image = work.path().join("pack.sqfs");
    for _ in 0..args.runs {
        let t = Instant::now();
        pack_size =
            sqrx_core::layer::pack_dir(&tree, &pack_image, &opts).map_err(|e| e.to_string())?;
        pack_s.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let r = store
            .build_from_dir(&name, &tree, &opts)
            .map_err(|e| e.to_string())?;
        sqrx_s.push(t.elapsed().as_secs_f64());
        sqrx_size = r.layer.size;

        let t = Instant::now();
        let status = Command::new(mksquashfs)
            .arg(&tree)
            .arg(&mks_image)
            .args([
                "-comp",
                "zstd",
                "-Xcompression-level",
                "3",
                "-b",
                "131072",
                "-noappend",
                "-quiet",
                "-no-progress",
            ])
            .status()
            .map_err(|e| format!("mksquashfs: {e}"))?;
        if !status.success() {
            return Err(format!("mksquashfs failed: {status}"));
        }
        mks_s.push(t.elapsed().as_secs_f64());
        mks_size = std::fs::metadata(&mks_image)
            .map_err(|e| e.to_string())?
            .len();
    }
    let (sqrx_m, mks_m, pack_m) = (median(&mut sqrx_s), median(&mut mks_s), median(&mut pack_s));
    let mb = bytes as f64 / 1e6;
    println!(
        "tree: {mb:.1} MB in {files} files ({}), {} runs each, {} cores",
        tree.display(),
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("| tool | median s | MB/s | image MB |");
    println!("|---|---|---|---|");
    println!(
        "| sqrx pack_dir (backhand + compress-ahead, zstd 3; image only, like mksquashfs) | {pack_m:.3} | {:.0} | {:.1} |",
        mb / pack_m,
        pack_size as f64 / 1e6
    );
    println!(
        "| sqrx layer build (pack + sha256 + fsync + metadata, atomic publish) | {sqrx_m:.3} | {:.0} | {:.1} |",
        mb / sqrx_m,
        sqrx_size as f64 / 1e6
    );
    println!(
        "| mksquashfs -comp zstd -Xcompression-level 3 | {mks_m:.3} | {:.0} | {:.1} |",
        mb / mks_m,
        mks_size as f64 / 1e6
    );
    println!(
        "ratio mksquashfs time / sqrx pack_dir time: {:.2}",
        mks_m / pack_m
    );
    println!(
        "ratio mksquashfs time / sqrx layer build time: {:.2}",
        mks_m / sqrx_m
    );
    Ok(())
}
