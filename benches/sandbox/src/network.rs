//! `--network N`: create + first exec with a network (policy `all`: a veth pair through
//! rtnetlink, the sandbox's nftables chain, the resolver's rules) against the same without a
//! network and against the usual `ip`-based way (create without a network, then a veth pair
//! made with `ip`, its peer moved into the sandbox's namespace and configured there with
//! `nsenter ip`: seven programs), N interleaved rounds. Everything happens in a network
//! namespace the bench makes (its uplink a veth pair going nowhere), never the host's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sqrx_core::network::{NetworkConfig, NetworkPolicy};
use sqrx_core::{Runtime, RuntimeConfig, SandboxSpec};

/// A named network namespace, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn nsenter_ip(pid: i32, args: &[&str]) -> Result<(), String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args)
        .output()
        .map_err(|e| format!("nsenter: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nsenter ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The `ip`-based way for the sandbox whose init is `pid`, link number `n`.
fn ip_way(ns: &str, pid: i32, n: usize) -> Result<(), String> {
    let (host, peer) = (format!("vb{n}"), format!("vp{n}"));
    let net = 4 * (n % 16000);
    let gw = format!("100.127.{}.{}", net / 256, net % 256 + 1);
    let addr = format!("100.127.{}.{}/30", net / 256, net % 256 + 2);
    let pid_s = pid.to_string();
    ip(&[
        "-n", ns, "link", "add", &host, "type", "veth", "peer", "name", &peer,
    ])?;
    ip(&["-n", ns, "link", "set", &peer, "netns", &pid_s])?;
    ip(&["-n", ns, "addr", "add", &format!("{gw}/30"), "dev", &host])?;
    ip(&["-n", ns, "link", "set", &host, "up"])?;
    nsenter_ip(pid, &["addr", "add", &addr, "dev", &peer])?;
    nsenter_ip(pid, &["link", "set", &peer, "up"])?;
    nsenter_ip(pid, &["route", "add", "default", "via", &gw])?;
    Ok(())
}

pub fn compare_network(rounds: usize, work: &Path) -> Result<(), String> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let name = format!("sqrxbench-{}", std::process::id());
    ip(&["netns", "add", &name])?;
    let ns = Netns(name);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &ns.0, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
    ])?;
    ip(&["-n", &ns.0, "link", "set", "up0", "up"])?;
    let mut config = RuntimeConfig::new(work.join("network"));
    config.network = NetworkConfig {
        netns: Some(format!("/run/netns/{}", ns.0).into()),
        uplink: Some("up0".into()),
        dns_upstream: Some("127.0.0.1:53".parse().map_err(|_| "addr")?),
        ..NetworkConfig::default()
    };
    let rt = Runtime::open(config).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let mut keep = SandboxSpec::new("keeper");
    keep.network = NetworkPolicy::All;
    let keeper = rt.create(keep).map_err(|e| e.to_string())?;
    let labels = [
        "create + first exec, no network",
        "create + first exec, network (sqrx: rtnetlink, nftables)",
        "create + first exec, then the `ip`-based link (7 programs)",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for round in 0..rounds + 2 {
        for k in 0..3 {
            let v = (round + k) % 3;
            let mut spec = SandboxSpec::new(format!("n{round}-{v}"));
            if v == 1 {
                spec.network = NetworkPolicy::All;
            }
            let t = Instant::now();
            let sb = rt.create(spec).map_err(|e| e.to_string())?;
            if v == 2 {
                ip_way(&ns.0, sb.info().init_pid, round)?;
            }
            super::run_true(&sb, &tokio)?;
            let took = t.elapsed();
            sb.destroy().map_err(|e| e.to_string())?;
            if round >= 2 {
                times[v].push(took);
            }
        }
    }
    keeper.destroy().map_err(|e| e.to_string())?;
    println!("{rounds} interleaved rounds, release build");
    println!("| what | p50 ms | p99 ms | median per-round difference to no network, ms |");
    println!("|---|---|---|---|");
    let base = times[0].clone();
    for (label, samples) in labels.iter().zip(times.iter_mut()) {
        let mut d: Vec<f64> = samples
            .iter()
            .zip(&base)
            .map(|(t, b)| (t.as_secs_f64() - b.as_secs_f64()) * 1e3)
            .collect();
        d.sort_by(|a, b| a.total_cmp(b));
        let median = d.get(d.len() / 2).copied().unwrap_or(0.0);
        println!(
            "| {label} | {} | {} | {median:+.2} |",
            super::ms(super::percentile(samples, 0.5)),
            super::ms(super::percentile(samples, 0.99)),
        );
    }
    Ok(())
}
