//! Benchmark: what sqrx does with a sandbox's state, in one run.
//!
//! - snapshot throughput (MB/s of upper) against `mksquashfs` of the same upper directory
//!   (zstd level 3, 128 KiB blocks, all cores, like sqrx's packing);
//! - restore latency of a 1 MB and of a 500 MB snapshot (O(1): they should not differ);
//! - pause + resume latency;
//! - clone latency of a sandbox with a 1 MB upper.
//!
//! `bash benches/state/run.sh [--big-mb 500] [--runs 20]` (as root).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sqrx_core::{ExecRequest, Runtime, RuntimeConfig, Sandbox, SandboxSpec};

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * 0.99).round() as usize;
    samples[i.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn sh(sb: &Sandbox, cmd: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let r = rt
        .block_on(sb.exec(ExecRequest::new(cmd)))
        .map_err(|e| e.to_string())?;
    if r.exit_code != Some(0) {
        return Err(format!("{cmd}: {}", r.stderr_text()));
    }
    Ok(())
}

/// Half random (incompressible), half text: `mb` MiB in 512 KiB files under /data.
fn fill(sb: &Sandbox, mb: u64) -> Result<(), String> {
    sh(
        sb,
        &format!(
            "mkdir -p /data && i=0; while [ $i -lt {mb} ]; do \
             head -c 524288 /dev/urandom > /data/r$i; \
             yes \"line $i of some text that compresses\" | head -c 524288 > /data/t$i; \
             i=$((i+1)); done"
        ),
    )
}

fn arg(name: &str, default: u64) -> Result<u64, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} expects a number")),
        None => Ok(default),
    }
}

fn run() -> Result<(), String> {
    let big_mb = arg("--big-mb", 500)?;
    let runs = arg("--runs", 20)? as usize;
    let data = tempfile::Builder::new()
        .prefix("sqrx-bench-state-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let rt = Runtime::open(RuntimeConfig::new(data.path())).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let result = measure(&rt, data.path(), big_mb, runs);
    for sb in rt.list() {
        let _ = sb.destroy();
    }
    result
}

fn measure(rt: &Runtime, data: &Path, big_mb: u64, runs: usize) -> Result<(), String> {
    let e = |e: sqrx_core::SandboxError| e.to_string();
    let mut spec = SandboxSpec::new("bench");
    spec.upper_mb = big_mb * 2 + 256;
    let mut sb = rt.create(spec).map_err(e)?;

    // Small snapshot: 1 MB of changes.
    fill(&sb, 1)?;
    sb.snapshot(Some("small")).map_err(e)?;

    // Big snapshot: the packing throughput, three times, against mksquashfs of the same upper.
    fill(&sb, big_mb)?;
    let upper = data.join("sandboxes/bench/rw/upper");
    let upper_bytes = sb.info().upper_bytes as f64;
    let mut sqrx_t = Vec::new();
    let mut pack_t = Vec::new();
    let mut mksq_t = Vec::new();
    for i in 0..3 {
        let out = data.join("pack.sqfs");
        let t = Instant::now();
        sqrx_core::layer::pack_dir(&upper, &out, &Default::default()).map_err(|e| e.to_string())?;
        pack_t.push(t.elapsed());
        let _ = std::fs::remove_file(&out);
        let t = Instant::now();
        sb.snapshot(Some(&format!("big{i}"))).map_err(e)?;
        sqrx_t.push(t.elapsed());
        let out = data.join("peer.sqfs");
        let t = Instant::now();
        let st = Command::new("mksquashfs")
            .arg(&upper)
            .arg(&out)
            .args(["-comp", "zstd", "-Xcompression-level", "3", "-b", "128K"])
            .args(["-noappend", "-no-progress", "-quiet", "-no-xattrs"])
            .status()
            .map_err(|e| format!("mksquashfs: {e}"))?;
        mksq_t.push(t.elapsed());
        if !st.success() {
            return Err("mksquashfs failed".into());
        }
        let _ = std::fs::remove_file(&out);
    }
    let (s, m) = (median(&mut sqrx_t), median(&mut mksq_t));
    let p = median(&mut pack_t);
    let mbps = |d: Duration| upper_bytes / 1e6 / d.as_secs_f64();
    println!(
        "packing a {:.0} MB upper: sqrx {} ms ({:.0} MB/s) vs mksquashfs {} ms ({:.0} MB/s): {:.2}x",
        upper_bytes / 1e6,
        ms(p),
        mbps(p),
        ms(m),
        mbps(m),
        m.as_secs_f64() / p.as_secs_f64()
    );
    println!(
        "full snapshot of a {:.0} MB upper (freeze, pack, sha256, fsync, publish): {} ms ({:.0} MB/s); mksquashfs alone {} ms ({:.0} MB/s): {:.2}x",
        upper_bytes / 1e6,
        ms(s),
        mbps(s),
        ms(m),
        mbps(m),
        m.as_secs_f64() / s.as_secs_f64()
    );

    // Restore: alternate the 1 MB and the big snapshot.
    let (mut small, mut big) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        sb.restore("small").map_err(e)?;
        small.push(t.elapsed());
        let t = Instant::now();
        sb.restore("big0").map_err(e)?;
        big.push(t.elapsed());
    }
    let (ps, pb) = (median(&mut small), median(&mut big));
    println!(
        "restore (p50 / p99): 1 MB snapshot {} / {} ms, {} MB snapshot {} / {} ms, difference {} ms",
        ms(ps),
        ms(p99(&mut small)),
        big_mb,
        ms(pb),
        ms(p99(&mut big)),
        ms(pb.abs_diff(ps))
    );

    // Pause + resume.
    sb.restore("small").map_err(e)?;
    sh(&sb, "sleep 1000 & sleep 1000 & true")?;
    let mut pr = Vec::new();
    for _ in 0..runs * 5 {
        let t = Instant::now();
        sb.pause().map_err(e)?;
        sb.resume().map_err(e)?;
        pr.push(t.elapsed());
    }
    println!(
        "pause + resume (3 processes): p50 {} ms, p99 {} ms",
        ms(median(&mut pr)),
        ms(p99(&mut pr))
    );

    // Clone of a sandbox with a 1 MB upper.
    let mut cl = Vec::new();
    for i in 0..runs.min(10) {
        let id = format!("clone{i}");
        let t = Instant::now();
        let c = rt.clone_sandbox("bench", &id).map_err(e)?;
        cl.push(t.elapsed());
        c.destroy().map_err(e)?;
    }
    println!(
        "clone (1 MB upper, ready to exec): p50 {} ms, p99 {} ms",
        ms(median(&mut cl)),
        ms(p99(&mut cl))
    );
    Ok(())
}

fn main() {
    sqrx_core::roles::run_role_if_any();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SQRX_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if let Err(e) = run() {
        eprintln!("state bench: {e}");
        std::process::exit(1);
    }
}
