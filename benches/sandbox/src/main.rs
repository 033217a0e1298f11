//! Benchmark: sqrx sandboxes against bwrap, runc, crun and unshare+chroot on the same base
//! layer, in one run. Prints medians, p99 and ratios.
//!
//! `bash benches/sandbox/run.sh [--runs N]` (as root; installs the peers).
//!
//! `--compare N`: only create + first exec, N rounds with the variants interleaved (the
//! default user namespace, `host-root`, and `SQRX_BENCH_BASELINE_INIT` if set), each round in a
//! rotated order, so that a machine whose speed drifts during the run weighs on all of them
//! alike. Also 10 exec round trips per variant and round in a long-lived sandbox. Prints each
//! variant's p50/p99 and the median of the per-round differences.
//!
//! `--network N`: create + first exec with a network against without one and against the
//! `ip`-based way, N interleaved rounds; `--connect N`: connection setup from inside a sandbox
//! under no policy, a CIDR list and a names list (see `network.rs`).

mod network;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqrx_core::{ExecRequest, Runtime, RuntimeConfig, SandboxSpec};

/// Run `/bin/true` in `sb` and wait for it.
fn run_true(sb: &sqrx_core::Sandbox, tokio: &tokio::runtime::Runtime) -> Result<(), String> {
    tokio
        .block_on(sb.exec(ExecRequest::new(sqrx_core::Command::Argv(vec![
            "/bin/true".into(),
        ]))))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Create sandbox `id` on `rt`, run its first exec, destroy it: the time to the end of the
/// first exec and to the end of the destroy.
fn create_exec_destroy(
    rt: &Runtime,
    id: String,
    tokio: &tokio::runtime::Runtime,
) -> Result<(Duration, Duration), String> {
    let t = Instant::now();
    let sb = rt.create(SandboxSpec::new(id)).map_err(|e| e.to_string())?;
    run_true(&sb, tokio)?;
    let first = t.elapsed();
    sb.destroy().map_err(|e| e.to_string())?;
    Ok((first, t.elapsed()))
}

/// The variants compared with the default: `host-root`, and the baseline init if given.
fn variants(work: &Path) -> Vec<(String, RuntimeConfig)> {
    let mut variants: Vec<(String, RuntimeConfig)> = Vec::new();
    let mut host_root = RuntimeConfig::new(work.join("host-root"));
    host_root.isolation = sqrx_core::Isolation::HostRoot;
    variants.push(("sqrx host-root".into(), host_root));
    if let Some(init) = std::env::var_os("SQRX_BENCH_BASELINE_INIT") {
        let mut old = RuntimeConfig::new(work.join("baseline"));
        old.isolation = sqrx_core::Isolation::HostRoot;
        old.init_path = Some(PathBuf::from(init));
        variants.push(("sqrx baseline init (host root)".into(), old));
    }
    variants
}

/// `--compare rounds`: create + first exec of every variant, interleaved.
fn compare(rounds: usize) -> Result<(), String> {
    let work = tempfile::Builder::new()
        .prefix("sqrx-bench-cmp-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut all = vec![(
        "sqrx (user namespace)".to_string(),
        RuntimeConfig::new(work.path().join("default")),
    )];
    all.extend(variants(work.path()));
    let mut rts = Vec::new();
    for (label, config) in all {
        let rt = Runtime::open(config).map_err(|e| e.to_string())?;
        rt.layers().ensure_base().map_err(|e| e.to_string())?;
        // Keeps the base layer mounted, as in production.
        let keeper = rt
            .create(SandboxSpec::new("keeper"))
            .map_err(|e| format!("{label}: {e}"))?;
        rts.push((label, rt, keeper, Vec::new(), Vec::new()));
    }
    let n = rts.len();
    for round in 0..rounds + 2 {
        for k in 0..n {
            let (label, rt, keeper, times, rtts) = &mut rts[(round + k) % n];
            // Exec round trips in the long-lived sandbox, then a create.
            for _ in 0..10 {
                let t = Instant::now();
                run_true(keeper, &tokio)?;
                if round >= 2 {
                    rtts.push(t.elapsed());
                }
            }
            let (f, _) = create_exec_destroy(rt, format!("c{round}"), &tokio)
                .map_err(|e| format!("{label}: {e}"))?;
            if round >= 2 {
                times.push(f);
            }
        }
    }
    println!(
        "{rounds} interleaved rounds of create + first exec (and 10 exec round trips), release build"
    );
    println!("| what | p50 ms | p99 ms | median per-round difference to the first variant, ms |");
    println!("|---|---|---|---|");
    let firsts: Vec<Duration> = rts[0].3.clone();
    let first_rtts: Vec<Duration> = rts[0].4.clone();
    for (label, _, keeper, times, rtts) in &mut rts {
        for (what, samples, base) in [
            ("create + first exec", &mut *times, &firsts),
            ("exec round trip", &mut *rtts, &first_rtts),
        ] {
            let mut d: Vec<f64> = samples
                .iter()
                .zip(base)
                .map(|(t, f)| (t.as_secs_f64() - f.as_secs_f64()) * 1e3)
                .collect();
            d.sort_by(|a, b| a.total_cmp(b));
            let median = d.get(d.len() / 2).copied().unwrap_or(0.0);
            println!(
                "| {label}: {what} | {} | {} | {median:+.2} |",
                ms(percentile(samples, 0.5)),
                ms(percentile(samples, 0.99)),
            );
        }
        keeper.clone().destroy().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Create + first exec and the exec round trip on a runtime of its own made from `config`.
fn measure_variant(
    label: &str,
    config: RuntimeConfig,
    runs: usize,
    tokio: &tokio::runtime::Runtime,
) -> Result<Vec<Row>, String> {
    let rt = Runtime::open(config).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let keeper = rt
        .create(SandboxSpec::new("keeper"))
        .map_err(|e| format!("{label}: {e}"))?;
    let mut first = Vec::new();
    for i in 0..runs + 2 {
        let (f, _) = create_exec_destroy(&rt, format!("v{i}"), tokio)
            .map_err(|e| format!("{label}: {e}"))?;
        if i >= 2 {
            first.push(f);
        }
    }
    let mut rtt = Vec::new();
    for i in 0..runs * 10 + 5 {
        let t = Instant::now();
        run_true(&keeper, tokio)?;
        if i >= 5 {
            rtt.push(t.elapsed());
        }
    }
    keeper.destroy().map_err(|e| e.to_string())?;
    Ok(vec![
        Row {
            name: format!("{label}: create + first exec"),
            p50: percentile(&mut first, 0.5),
            p99: percentile(&mut first, 0.99),
        },
        Row {
            name: format!("{label}: exec round trip"),
            p50: percentile(&mut rtt, 0.5),
            p99: percentile(&mut rtt, 0.99),
        },
    ])
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// Makes the command for run `i` of a peer.
type CommandFactory = Box<dyn FnMut(usize) -> Command>;

struct Row {
    name: String,
    p50: Duration,
    p99: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn time_command(
    runs: usize,
    mut make: impl FnMut(usize) -> Command,
) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let mut cmd = make(i);
        let t = Instant::now();
        let o = cmd.output().map_err(|e| format!("cannot run: {e}"))?;
        let d = t.elapsed();
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
                .to_string());
        }
        if i >= 2 {
            out.push(d);
        }
    }
    Ok(out)
}

fn oci_bundle(dir: &Path, rootfs: &Path) -> Result<PathBuf, String> {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
    let st = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(&bundle)
        .status()
        .map_err(|e| format!("runc spec: {e}"))?;
    if !st.success() {
        return Err("runc spec failed".into());
    }
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    spec["root"]["path"] = serde_json::json!(rootfs);
    spec["root"]["readonly"] = serde_json::json!(true);
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(bundle)
}

fn main() {
    sqrx_core::roles::run_role_if_any();
    if let Err(e) = run() {
        eprintln!("sandbox bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut runs = 30usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).ok_or("--runs N")?,
            "--compare" => {
                let rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--compare N")?;
                return compare(rounds);
            }
            "--network" => {
                let rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--network N")?;
                let work = tempfile::Builder::new()
                    .prefix("sqrx-bench-net-")
                    .tempdir()
                    .map_err(|e| e.to_string())?;
                return network::compare_network(rounds, work.path());
            }
            "--connect" => {
                let count = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--connect N")?;
                let work = tempfile::Builder::new()
                    .prefix("sqrx-bench-conn-")
                    .tempdir()
                    .map_err(|e| e.to_string())?;
                return network::compare_connect(count, work.path());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let work = tempfile::Builder::new()
        .prefix("sqrx-bench-sb-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let rt = Runtime::open(RuntimeConfig::new(work.path())).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // A long-lived sandbox keeps the base layer mounted (as in production) and serves (b).
    let keeper = rt
        .create(SandboxSpec::new("keeper"))
        .map_err(|e| e.to_string())?;
    let rootfs = keeper
        .layer_mounts()
        .first()
        .cloned()
        .ok_or("no layer mount")?;

    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // (a) create -> first exec `true` -> destroy
    let (mut first, mut cycle) = (Vec::new(), Vec::new());
    for i in 0..runs + 2 {
        let (f, c) = create_exec_destroy(&rt, format!("b{i}"), &tokio)?;
        if i >= 2 {
            first.push(f);
            cycle.push(c);
        }
    }
    rows.push(Row {
        name: "sqrx create + first exec".into(),
        p50: percentile(&mut first, 0.5),
        p99: percentile(&mut first, 0.99),
    });
    rows.push(Row {
        name: "sqrx create + exec + destroy".into(),
        p50: percentile(&mut cycle, 0.5),
        p99: percentile(&mut cycle, 0.99),
    });

    // (b) exec round trip in an existing sandbox
    let mut rtt = Vec::new();
    for i in 0..runs * 10 + 5 {
        let t = Instant::now();
        run_true(&keeper, &tokio)?;
        if i >= 5 {
            rtt.push(t.elapsed());
        }
    }
    rows.push(Row {
        name: "sqrx exec round trip".into(),
        p50: percentile(&mut rtt, 0.5),
        p99: percentile(&mut rtt, 0.99),
    });

    // The same round trip without a process (a program that does not exist): the protocol's
    // own cost.
    let mut proto = Vec::new();
    for i in 0..runs * 10 + 5 {
        let t = Instant::now();
        let r = tokio.block_on(keeper.exec(ExecRequest::new(sqrx_core::Command::Argv(vec![
            "/no-such-program".into(),
        ]))));
        if r.is_ok() {
            return Err("a missing program ran".into());
        }
        if i >= 5 {
            proto.push(t.elapsed());
        }
    }
    rows.push(Row {
        name: "sqrx exec of a missing program (protocol only)".into(),
        p50: percentile(&mut proto, 0.5),
        p99: percentile(&mut proto, 0.99),
    });

    // (c) peers on the same root filesystem
    let peers: Vec<(&str, CommandFactory)> = vec![
        (
            "host fork+exec /bin/true",
            Box::new(|_| Command::new("/bin/true")),
        ),
        (
            "unshare -muinpf + chroot",
            Box::new({
                let r = rootfs.clone();
                move |_| {
                    let mut c = Command::new("unshare");
                    c.args(["-m", "-u", "-i", "-n", "-p", "-f", "chroot"])
                        .arg(&r)
                        .arg("/bin/true");
                    c
                }
            }),
        ),
        (
            "bwrap --unshare-all",
            Box::new({
                let r = rootfs.clone();
                move |_| {
                    let mut c = Command::new("bwrap");
                    c.arg("--ro-bind").arg(&r).arg("/").args([
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                        "--unshare-all",
                        "/bin/true",
                    ]);
                    c
                }
            }),
        ),
    ];
    for (name, make) in peers {
        match time_command(runs, make) {
            Ok(mut s) => rows.push(Row {
                name: name.into(),
                p50: percentile(&mut s, 0.5),
                p99: percentile(&mut s, 0.99),
            }),
            Err(e) => notes.push(format!("{name}: skipped ({e})")),
        }
    }
    match oci_bundle(work.path(), &rootfs) {
        Ok(bundle) => {
            for tool in ["runc", "crun"] {
                let b = bundle.clone();
                let made = time_command(runs, move |i| {
                    let mut c = Command::new(tool);
                    c.arg("run")
                        .arg("--bundle")
                        .arg(&b)
                        .arg(format!("sqrx-bench-{tool}-{i}"));
                    c
                });
                match made {
                    Ok(mut s) => rows.push(Row {
                        name: format!("{tool} run"),
                        p50: percentile(&mut s, 0.5),
                        p99: percentile(&mut s, 0.99),
                    }),
                    Err(e) => notes.push(format!("{tool} run: skipped ({e})")),
                }
            }
        }
        Err(e) => notes.push(format!("runc/crun: skipped ({e})")),
    }
    keeper.destroy().map_err(|e| e.to_string())?;

    // The same create and exec with the other isolation, and with an earlier init program
    // (SQRX_BENCH_BASELINE_INIT: a sqrx-init built from an older commit, run as host root; the
    // host side is this build's), for before/after figures in one run.
    let variants = variants(work.path());
    for (label, config) in variants {
        rows.extend(measure_variant(&label, config, runs, &tokio)?);
    }

    let base = rows[0].p50;
    println!(
        "{runs} runs each (exec round trip: {}), release build, {} cores",
        runs * 10,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("| what | p50 ms | p99 ms | p50 / sqrx create+first exec |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} |",
            r.name,
            ms(r.p50),
            ms(r.p99),
            r.p50.as_secs_f64() / base.as_secs_f64()
        );
    }
    for n in notes {
        println!("note: {n}");
    }
    Ok(())
}
