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
        // Every order of the three, in turn: each variant follows each other one equally
        // often (a teardown the kernel finishes asynchronously weighs on whoever comes next).
        const ORDERS: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for v in ORDERS[round % 6] {
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

/// `--connect N`: the time to open (and close) a TCP connection from inside a sandbox to a
/// server behind the uplink, N connections per measurement, under policy `all`, a CIDR list
/// (nftables only) and a names list (DNS answer, then the proxy that checks the HTTP Host).
/// The connections are made by one `busybox nc` each, so every figure includes starting that
/// program; the differences between the rows are the policy's.
pub fn compare_connect(count: usize, work: &Path) -> Result<(), String> {
    use std::io::{Read, Write};
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rt_name = format!("sqrxbench-{}-rt", std::process::id());
    let inet_name = format!("sqrxbench-{}-inet", std::process::id());
    ip(&["netns", "add", &rt_name])?;
    let rt_ns = Netns(rt_name);
    ip(&["netns", "add", &inet_name])?;
    let inet = Netns(inet_name);
    for ns in [&rt_ns.0, &inet.0] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&[
        "-n", &rt_ns.0, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns",
        &inet.0,
    ])?;
    ip(&["-n", &rt_ns.0, "addr", "add", "10.200.0.2/24", "dev", "up0"])?;
    ip(&["-n", &rt_ns.0, "link", "set", "up0", "up"])?;
    ip(&[
        "-n",
        &rt_ns.0,
        "route",
        "add",
        "default",
        "via",
        "10.200.0.1",
    ])?;
    ip(&["-n", &inet.0, "addr", "add", "10.200.0.1/24", "dev", "up1"])?;
    ip(&["-n", &inet.0, "link", "set", "up1", "up"])?;
    ip(&["-n", &inet.0, "addr", "add", "10.1.0.1/32", "dev", "lo"])?;
    let inet_fd =
        std::fs::File::open(format!("/run/netns/{}", inet.0)).map_err(|e| e.to_string())?;
    let fd = std::os::fd::AsFd::as_fd(&inet_fd);
    // A server that answers every connection, and a DNS authority answering 10.1.0.1 to all.
    let server = sqrx_testkit::net::enter(fd, || std::net::TcpListener::bind("10.1.0.1:80"))
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let dns = sqrx_testkit::net::enter(fd, || std::net::UdpSocket::bind("10.1.0.1:53"))
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = dns.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The query, turned into a response with one A record (a pointer to the name).
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80;
            r[3] = 0x80;
            r[7] = 1;
            r[10] = 0;
            r[11] = 0;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 0, 1]);
            let _ = dns.send_to(&r, from);
        }
    });
    let mut config = RuntimeConfig::new(work.join("connect"));
    config.network = NetworkConfig {
        netns: Some(format!("/run/netns/{}", rt_ns.0).into()),
        uplink: Some("up0".into()),
        dns_upstream: Some("10.1.0.1:53".parse().map_err(|_| "addr")?),
        ..NetworkConfig::default()
    };
    let rt = Runtime::open(config).map_err(|e| e.to_string())?;
    rt.layers().ensure_base().map_err(|e| e.to_string())?;
    let variants = [
        ("all (no policy)", NetworkPolicy::All),
        (
            "CIDR list 10.1.0.0/16 (nftables)",
            NetworkPolicy::allow(&["10.1.0.0/16"]).map_err(|e| e.to_string())?,
        ),
        (
            "names list web.test (DNS, then the Host-checking proxy)",
            NetworkPolicy::allow(&["web.test"]).map_err(|e| e.to_string())?,
        ),
    ];
    println!(
        "{count} connections per measurement, 5 measurements per variant, interleaved, release build"
    );
    println!("| policy | per connection, median of 5 (min-max), ms |");
    println!("|---|---|");
    let mut sandboxes = Vec::new();
    for (i, (label, policy)) in variants.iter().enumerate() {
        let mut spec = SandboxSpec::new(format!("conn{i}"));
        spec.network = policy.clone();
        let sb = rt.create(spec).map_err(|e| e.to_string())?;
        run_sh(
            &sb,
            "busybox nslookup web.test >/dev/null 2>&1 || true",
            &tokio,
        )?;
        sandboxes.push((label, sb, Vec::new()));
    }
    let script = format!(
        "for i in $(busybox seq {count}); do printf 'GET / HTTP/1.0\\r\\nHost: web.test\\r\\n\\r\\n' | busybox nc -w 2 10.1.0.1 80 >/dev/null || exit 1; done"
    );
    for _ in 0..5 {
        for (_, sb, times) in sandboxes.iter_mut() {
            let t = Instant::now();
            run_sh(sb, &script, &tokio)?;
            times.push(t.elapsed() / count as u32);
        }
    }
    for (label, sb, mut times) in sandboxes {
        times.sort();
        println!(
            "| {label} | {} ({}-{}) |",
            super::ms(times[2]),
            super::ms(times[0]),
            super::ms(times[4])
        );
        sb.destroy().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run_sh(
    sb: &sqrx_core::Sandbox,
    script: &str,
    tokio: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let r = tokio
        .block_on(sb.exec(sqrx_core::ExecRequest::new(script)))
        .map_err(|e| e.to_string())?;
    if r.exit_code == Some(0) {
        Ok(())
    } else {
        Err(format!("{script}: {}", r.stdout_text()))
    }
}
