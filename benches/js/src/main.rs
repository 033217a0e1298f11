//! Benchmark: fresh-context executions per second and p50/p99 latency of three scripts, with
//! sqrx's `JsExecutor` and with quickjs-emscripten in Node (the peer, one fresh context per
//! run), measured in the same run.
//!
//! `bash benches/js/peer/setup.sh && cargo build --release -p sqrx-core --bin sqrx-init &&
//! cargo run --release -p js_bench -- [--runs N] [--script NAME]` (`--script 1+2` measures
//! only that script).
//!
//! sqrx is measured three ways: one caller waiting for each execution in turn on a one-worker
//! pool (the peer's setting: one thread, one execution at a time), the same on the default pool
//! (one worker per CPU), and a batch of `runs` executions submitted at once to the default pool
//! (throughput when callers keep the pool busy). Each of the three is measured for the
//! in-process `JsExecutor` and for the `ConfinedJsExecutor` (worker processes started from the
//! `sqrx-init` next to this program, the server's default), alternating, so the table shows
//! the cost of the process boundary. A last table paces one caller (a pause before each
//! execution): the latency of a call that finds the executor idle, its next context built.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sqrx_core::js::{
    ConfinedJsExecutor, ExecutionStatus, JsExecutor, JsLimits, JsRequest, JsRunner,
};

const SCRIPTS: &[(&str, &str)] = &[
    ("1+2", "1+2"),
    (
        "sum 1..1e5",
        "let s = 0; for (let i = 1; i <= 1e5; i++) s += i; s",
    ),
    (
        "JSON.stringify 1000 objects",
        "JSON.stringify(Array.from({length: 1000}, (_, i) => ({id: i, name: 'item' + i, tags: ['a', 'b']})))",
    ),
];

struct Stats {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut lat: Vec<Duration>, total: Duration) -> Stats {
    lat.sort();
    let q = |p: f64| {
        let i = ((lat.len() as f64) * p) as usize;
        lat[i.min(lat.len() - 1)].as_secs_f64() * 1e6
    };
    Stats {
        per_sec: lat.len() as f64 / total.as_secs_f64(),
        p50_us: q(0.5),
        p99_us: q(0.99),
    }
}

fn sequential(js: &dyn JsRunner, code: &str, runs: usize) -> Stats {
    for _ in 0..runs.min(200) {
        check(js.run_blocking(JsRequest::new(code)).status);
    }
    let mut lat = Vec::with_capacity(runs);
    let t0 = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let out = js.run_blocking(JsRequest::new(code));
        lat.push(t.elapsed());
        check(out.status);
    }
    stats(lat, t0.elapsed())
}

/// One caller, a pause of `gap` before each execution: the latency a caller sees when the
/// executor is not saturated (its worker has built the next context while the caller paused).
fn paced(js: &dyn JsRunner, code: &str, runs: usize, gap: Duration) -> Stats {
    for _ in 0..runs.min(200) {
        check(js.run_blocking(JsRequest::new(code)).status);
    }
    let mut lat = Vec::with_capacity(runs);
    let mut busy = Duration::ZERO;
    for _ in 0..runs {
        std::thread::sleep(gap);
        let t = Instant::now();
        let out = js.run_blocking(JsRequest::new(code));
        let took = t.elapsed();
        lat.push(took);
        busy += took;
        check(out.status);
    }
    stats(lat, busy)
}

fn batch(js: &dyn JsRunner, code: &str, runs: usize) -> f64 {
    let t0 = Instant::now();
    let pending: Vec<_> = (0..runs).map(|_| js.run(JsRequest::new(code))).collect();
    for p in pending {
        check(p.wait().status);
    }
    runs as f64 / t0.elapsed().as_secs_f64()
}

fn check(status: ExecutionStatus) {
    assert_eq!(status, ExecutionStatus::Success, "benchmark script failed");
}

fn peer(runs: usize) -> Result<Vec<Stats>, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer");
    if !dir.join("node_modules/quickjs-emscripten").exists() {
        return Err(format!(
            "peer not installed: run bash {}/setup.sh",
            dir.display()
        ));
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("bench.mjs"))
        .args(["--runs", &runs.to_string()]);
    for (name, code) in SCRIPTS {
        cmd.args(["--script", &format!("{name}={code}")]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
            let f = |k: &str| v[k].as_f64().ok_or(format!("peer output lacks {k}: {l}"));
            Ok(Stats {
                per_sec: f("per_sec")?,
                p50_us: f("p50_us")?,
                p99_us: f("p99_us")?,
            })
        })
        .collect()
}

fn confined(workers: Option<usize>) -> ConfinedJsExecutor {
    let mut b = ConfinedJsExecutor::builder().limits(JsLimits::default());
    if let Some(w) = workers {
        b = b.workers(w);
    }
    b.build().unwrap_or_else(|e| {
        eprintln!("cannot start confined workers: {e} (build sqrx-init in the same profile)");
        std::process::exit(1)
    })
}

fn main() {
    sqrx_core::roles::run_role_if_any();
    let mut runs = 5000usize;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--runs", Some(n)) => runs = n.parse().expect("--runs takes a number"),
            ("--script", Some(name)) => only = Some(name),
            _ => {
                eprintln!("usage: js_bench [--runs N] [--script NAME]");
                std::process::exit(2);
            }
        }
    }
    let one = JsExecutor::builder()
        .limits(JsLimits::default())
        .workers(1)
        .build()
        .expect("executor");
    let pool = JsExecutor::new(JsLimits::default()).expect("executor");
    let c_one = confined(Some(1));
    let c_pool = confined(None);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("runs per measurement: {runs}; default pool: {cpus} workers");
    println!(
        "{:<30} {:<10} {:>34} {:>34} {:>12} {:>34} {:>10}",
        "script",
        "executor",
        "1 worker: exec/s p50 p99 µs",
        "pool: exec/s p50 p99 µs",
        "pool batch/s",
        "peer: exec/s p50 p99 µs",
        "ratio"
    );
    let peer = peer(runs.min(3000));
    if let Err(e) = &peer {
        eprintln!("peer: {e}");
    }
    let fmt = |s: &Stats| format!("{:>10.0} {:>10.1} {:>10.1}", s.per_sec, s.p50_us, s.p99_us);
    for (i, (name, code)) in SCRIPTS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let sets: [(&str, &dyn JsRunner, &dyn JsRunner); 2] =
            [("in-process", &one, &pool), ("confined", &c_one, &c_pool)];
        for (label, one, pool) in sets {
            let s1 = sequential(one, code, runs);
            let sp = sequential(pool, code, runs);
            let b = batch(pool, code, runs);
            let (peer_col, ratio) = match &peer {
                Ok(p) => (
                    fmt(&p[i]),
                    format!("{:.1}x", b.max(sp.per_sec) / p[i].per_sec),
                ),
                Err(_) => ("-".into(), "-".into()),
            };
            println!(
                "{name:<30} {label:<10} {:>34} {:>34} {b:>12.0} {peer_col:>34} {ratio:>10}",
                fmt(&s1),
                fmt(&sp)
            );
        }
    }
    println!("ratio = best sqrx executions/s (pool sequential or batch) / peer executions/s");
    let gap = Duration::from_millis(1);
    println!();
    println!(
        "paced: one caller, {} ms between executions, {} runs (latency when not saturated)",
        gap.as_millis(),
        runs.min(2000)
    );
    println!(
        "{:<30} {:<10} {:>22} {:>22}",
        "script", "executor", "1 worker p50 p99 µs", "pool p50 p99 µs"
    );
    for (name, code) in SCRIPTS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let sets: [(&str, &dyn JsRunner, &dyn JsRunner); 2] =
            [("in-process", &one, &pool), ("confined", &c_one, &c_pool)];
        for (label, one, pool) in sets {
            let s1 = paced(one, code, runs.min(2000), gap);
            let sp = paced(pool, code, runs.min(2000), gap);
            println!(
                "{name:<30} {label:<10} {:>11.1} {:>10.1} {:>11.1} {:>10.1}",
                s1.p50_us, s1.p99_us, sp.p50_us, sp.p99_us
            );
        }
    }
}
