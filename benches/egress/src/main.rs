//! Benchmark: what sqrx's egress proxy adds to an HTTPS request that carries a secret.
//!
//! `bash benches/egress/run.sh [--rounds N]` (as root).
//!
//! A test internet of network namespaces (as the network tests): an HTTPS server with a CA of
//! its own on 10.5.0.1:443 for `secret.test`, reached from sandboxes on the runtime's links.
//! Two sandboxes run the same Python client (`http.client` over `ssl`, connecting to the
//! address with SNI `secret.test`):
//!
//! - **direct**: no secrets; it sends the real value in `X-Api-Key` and trusts the server's CA;
//! - **proxied**: a secret bound to `secret.test`; it sends the placeholder, its HTTPS goes
//!   through the egress proxy (TLS interception, substitution, a new TLS session upstream).
//!
//! Per round and arm (the arms alternate, so drift weighs on both): 1000 sequential requests
//! on one kept-alive connection (latency p50/p99, requests/s), 4 connections × 400 requests
//! in parallel (requests/s), and 100 requests each on a new connection (latency with the
//! handshakes). Prints medians over the rounds and the ratios proxied/direct.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sqrx_core::network::{NetworkConfig, NetworkPolicy};
use sqrx_core::{ExecRequest, LayerName, Runtime, RuntimeConfig, SandboxSpec, Secret};
use sqrx_testkit::net::{Netns, RecordingServers};

/// The client run inside: `python3 /bench.py MODE N CONC`, the header value from
/// `$BENCH_KEY`, the CA from `$BENCH_CA`; prints one JSON line.
const CLIENT: &str = r#"
import json, os, socket, ssl, statistics, sys, threading, time
import http.client
mode, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=os.environ['BENCH_CA'])
key = os.environ['BENCH_KEY']

def connect():
    raw = socket.create_connection(('10.5.0.1', 443))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = http.client.HTTPSConnection('secret.test', 443, context=ctx)
    c.sock = ctx.wrap_socket(raw, server_hostname='secret.test')
    return c

def request(c, i):
    c.request('GET', f'/bench/{i}', headers={'X-Api-Key': key})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and body.startswith(b'ok GET'), (r.status, body)

lat = []
def worker(count):
    c = connect()
    for i in range(count):
        t = time.perf_counter()
        request(c, i)
        lat.append(time.perf_counter() - t)
    c.close()

t0 = time.perf_counter()
if mode == 'fresh':
    for i in range(n):
        t = time.perf_counter()
        c = connect()
        request(c, i)
        c.close()
        lat.append(time.perf_counter() - t)
else:
    threads = [threading.Thread(target=worker, args=(n,)) for _ in range(conc)]
    for th in threads: th.start()
    for th in threads: th.join()
wall = time.perf_counter() - t0
lat.sort()
print(json.dumps({'rps': len(lat) / wall, 'p50': lat[len(lat) // 2] * 1e3,
                  'p99': lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3}))
"#;

struct Bed {
    servers: RecordingServers,
    rt_ns: Netns,
    _inet: Netns,
}

fn bed() -> Bed {
    let rt_ns = Netns::new("bench-rt");
    let inet = Netns::new("bench-inet");
    rt_ns.ip(&[
        "link", "add", "sqrxup0", "type", "veth", "peer", "name", "sqrxup1", "netns", &inet.name,
    ]);
    rt_ns.ip(&["addr", "add", "10.200.0.2/24", "dev", "sqrxup0"]);
    rt_ns.ip(&["link", "set", "sqrxup0", "up"]);
    rt_ns.ip(&["route", "add", "default", "via", "10.200.0.1"]);
    inet.ip(&["addr", "add", "10.200.0.1/24", "dev", "sqrxup1"]);
    inet.ip(&["link", "set", "sqrxup1", "up"]);
    inet.ip(&["addr", "add", "10.5.0.1/32", "dev", "lo"]);
    let servers = RecordingServers::start(
        &inet,
        &[SocketAddr::from((Ipv4Addr::new(10, 5, 0, 1), 443))],
        &[],
        &["secret.test"],
    );
    Bed {
        servers,
        rt_ns,
        _inet: inet,
    }
}

#[derive(Default, Clone, Copy)]
struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn run_client(
    sb: &sqrx_core::Sandbox,
    tokio: &tokio::runtime::Runtime,
    env: &[(&str, &str)],
    args: &str,
) -> Result<Figures, String> {
    let mut req = ExecRequest::new(format!("python3 /bench.py {args}").as_str());
    for (k, v) in env {
        req.env.insert(k.to_string(), v.to_string());
    }
    req.timeout = Some(Duration::from_secs(300));
    let r = tokio.block_on(sb.exec(req)).map_err(|e| e.to_string())?;
    let out = r.stdout_text();
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|_| format!("the client failed: {out}{}", r.stderr_text()))?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Figures {
        rps: f("rps"),
        p50: f("p50"),
        p99: f("p99"),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), String> {
    let mut rounds = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--rounds N")?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let bed = bed();
    let work = tempfile::Builder::new()
        .prefix("sqrx-bench-egress-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let upstream_ca = work.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca, &bed.servers.ca_pem).map_err(|e| e.to_string())?;
    let mut config = RuntimeConfig::new(work.path().join("data"));
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join("sqrx-init").is_file()
    {
        config.init_path = Some(dir.join("sqrx-init"));
    }
    config.network = NetworkConfig {
        netns: Some(bed.rt_ns.path().into()),
        uplink: Some("sqrxup0".into()),
        dns_upstream: Some(SocketAddr::from(([10, 200, 0, 1], 53))),
        upstream_ca: vec![upstream_ca],
        ..NetworkConfig::default()
    };
    let rt = Runtime::open(config).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let py = LayerName::new("100-py").map_err(|e| e.to_string())?;
    rt.layers()
        .from_host(
            &py,
            &["/usr/bin/python3".into(), "/usr/lib/python3.11".into()],
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let spec = |id: &str| {
        let mut s = SandboxSpec::new(id);
        s.layers = vec!["000-base".into(), "100-py".into()];
        s.network = NetworkPolicy::All;
        s
    };
    let direct = rt.create(spec("direct")).map_err(|e| e.to_string())?;
    let mut with_secret = spec("proxied");
    with_secret.secrets.insert(
        "API_KEY".into(),
        Secret::new("sk-bench-real-value", ["secret.test"]),
    );
    let proxied = rt.create(with_secret).map_err(|e| e.to_string())?;
    for sb in [&direct, &proxied] {
        sb.write_file("/bench.py", CLIENT.as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
    }
    direct
        .write_file("/etc/bench-ca.pem", bed.servers.ca_pem.as_bytes(), 0o644)
        .map_err(|e| e.to_string())?;
    let placeholder = proxied
        .secrets()
        .first()
        .map(|s| s.placeholder.clone())
        .ok_or("no placeholder")?;
    let direct_env = [
        ("BENCH_KEY", "sk-bench-real-value"),
        ("BENCH_CA", "/etc/bench-ca.pem"),
    ];
    let proxied_env = [
        ("BENCH_KEY", placeholder.as_str()),
        ("BENCH_CA", sqrx_core::secrets::trust::BUNDLE),
    ];
    let modes = [
        ("keep-alive, 1 connection × 1000", "keep 1000 1"),
        ("keep-alive, 4 connections × 400", "keep 400 4"),
        ("new connection per request × 100", "fresh 100 1"),
    ];
    // Warm up both (the proxy's certificate for the name, the Python imports).
    run_client(&direct, &tokio, &direct_env, "keep 50 1")?;
    run_client(&proxied, &tokio, &proxied_env, "keep 50 1")?;
    let mut results: Vec<[Vec<Figures>; 2]> = vec![Default::default(); modes.len()];
    for round in 0..rounds {
        for (m, (_, args)) in modes.iter().enumerate() {
            let arms: [(&sqrx_core::Sandbox, &[(&str, &str)]); 2] =
                [(&direct, &direct_env), (&proxied, &proxied_env)];
            // Alternate which arm goes first.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for a in order {
                let (sb, env) = arms[a];
                results[m][a].push(run_client(sb, &tokio, env, args)?);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    println!(
        "| mode | direct req/s | proxied req/s | ratio | direct p50 ms | proxied p50 ms | added p50 ms | direct p99 ms | proxied p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (m, (label, _)) in modes.iter().enumerate() {
        let pick = |a: usize, f: fn(&Figures) -> f64| median(results[m][a].iter().map(f).collect());
        let (drps, prps) = (pick(0, |f| f.rps), pick(1, |f| f.rps));
        let (d50, p50) = (pick(0, |f| f.p50), pick(1, |f| f.p50));
        let (d99, p99) = (pick(0, |f| f.p99), pick(1, |f| f.p99));
        println!(
            "| {label} | {drps:.0} | {prps:.0} | {:.2} | {d50:.3} | {p50:.3} | {:+.3} | {d99:.3} | {p99:.3} |",
            prps / drps,
            p50 - d50
        );
    }
    let audit = sqrx_core::secrets::audit_totals(rt.data_dir());
    println!(
        "\n{} substitutions audited, {} refusals; {rounds} rounds, medians over rounds.",
        audit.substituted, audit.refused
    );
    direct.destroy().map_err(|e| e.to_string())?;
    proxied.destroy().map_err(|e| e.to_string())?;
    Ok(())
}
