//! Secrets over HTTP: a `/v1` create with `secrets`, values never in an answer, rotation with
//! `PUT /v1/sandboxes/{id}/secrets/{name}`, the runtime's `secrets.json` read again on
//! `SIGHUP`, refusals, and the metrics, against a server whose sandboxes' plain HTTP goes to
//! recording servers in the test bed ([`crate::netbed`]).

use std::time::Duration;

use serde_json::{Value, json};
use sqrx_testkit::privileged;

use crate::harness::*;
use crate::netbed::NetBed;

/// A plain HTTP request from inside to `addr`:80 for `host`, with the header `x-key: $var`.
fn request(addr: &str, host: &str, path: &str, var: &str) -> String {
    format!(
        "printf 'GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nX-Key: %s\\r\\nConnection: close\\r\\n\\r\\n' \"${var}\" \
         | busybox nc -w 3 {addr} 80 2>&1"
    )
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_secrets_are_write_only_rotate_and_reload_on_sighup() {
    if !privileged("server v1_secrets") {
        return;
    }
    let bed = NetBed::new();
    let data = DataDir::with_network(bed.config());
    let args = bed.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_with(&data, Binary::Server, &args, &[]);
    let c = client();
    let value = "sk-server-value-5f1c0b7d9a";

    // A bad secret: 400 naming the secret, never the value.
    let bad = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "bad", "network": "all",
               "secrets": {"KEY": {"value": value, "allowed_hosts": []}}}),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert!(
        bad.1["error"].as_str().is_some_and(|e| e.contains("KEY")),
        "{}",
        bad.1
    );
    assert!(!bad.1.to_string().contains(value));
    // Secrets need a network.
    let offline = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "offline", "secrets": {"KEY": {"value": value, "allowed_hosts": ["a.test"]}}}),
    )
    .await;
    assert_eq!(offline.0, 400, "{}", offline.1);

    let created = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "sec", "network": "all",
               "secrets": {"KEY": {"value": value, "allowed_hosts": ["secret.test"], "allow_http": true}}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let placeholder = created.1["secrets"][0]["placeholder"]
        .as_str()
        .expect("a placeholder")
        .to_string();
    assert!(placeholder.starts_with("sqrx-secret-"), "{}", created.1);
    assert_eq!(created.1["secrets"][0]["name"], "KEY");
    assert_eq!(created.1["secrets"][0]["source"], "sandbox");

    // The bound host gets the value; the sandbox gets the server's answer only.
    let r = exec(
        &c,
        &s,
        "sec",
        &request("10.5.0.1", "secret.test", "/one", "KEY"),
    )
    .await;
    assert!(
        r["stdout"]
            .as_str()
            .is_some_and(|o| o.contains("ok GET /one")),
        "{r}"
    );
    let got = bed.recording.requests();
    let one = got
        .iter()
        .find(|r| r.head.contains("/one"))
        .expect("recorded");
    assert_eq!(header_of(&one.head, "x-key").as_deref(), Some(value));
    // Another host: 403 naming the secret and the host; that server never hears of it.
    let r = exec(
        &c,
        &s,
        "sec",
        &request("10.6.0.1", "leak.test", "/leak", "KEY"),
    )
    .await;
    let out = r["stdout"].as_str().unwrap_or_default().to_string();
    assert!(
        out.contains("403") && out.contains("\"secret\":\"KEY\"") && out.contains("leak.test"),
        "{out}"
    );
    assert!(
        !bed.recording
            .requests()
            .iter()
            .any(|r| r.head.contains("/leak"))
    );

    // Rotation over the API; the answer holds no value.
    let rotated = "sk-server-rotated-77aa01";
    let (status, body) = send(
        c.put(s.url("/v1/sandboxes/sec/secrets/KEY"))
            .json(&json!({"value": rotated, "allowed_hosts": ["secret.test"], "allow_http": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["placeholder"].as_str(), Some(placeholder.as_str()));
    exec(
        &c,
        &s,
        "sec",
        &request("10.5.0.1", "secret.test", "/two", "KEY"),
    )
    .await;
    let two = bed
        .recording
        .requests()
        .into_iter()
        .find(|r| r.head.contains("/two"))
        .expect("recorded");
    assert_eq!(header_of(&two.head, "x-key").as_deref(), Some(rotated));

    // The runtime's secrets.json, read again on SIGHUP.
    let runtime_value = "sk-runtime-value-0b9e";
    std::fs::write(
        data.path().join("secrets.json"),
        json!({"secrets": {"RT": {"placeholder": "rt-placeholder-42", "value": runtime_value,
               "allowed_hosts": ["secret.test"], "allow_http": true}}})
        .to_string(),
    )
    .expect("write secrets.json");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = get(&c, s.url("/v1/secrets")).await.1;
        if listed.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed[0]["name"], "RT", "{listed}");
    assert_eq!(listed[0]["source"], "runtime");
    let r = exec(
        &c,
        &s,
        "sec",
        &request("10.5.0.1", "secret.test", "/three", "RT"),
    )
    .await;
    assert!(
        r["stdout"]
            .as_str()
            .is_some_and(|o| o.contains("ok GET /three")),
        "{r}"
    );
    let three = bed
        .recording
        .requests()
        .into_iter()
        .find(|r| r.head.contains("/three"))
        .expect("recorded");
    assert_eq!(
        header_of(&three.head, "x-key").as_deref(),
        Some(runtime_value)
    );
    // A broken file: the reload route says why; what was read stays.
    std::fs::write(data.path().join("secrets.json"), "{\"secrets\": 7}").expect("write");
    let (status, body) = send(c.post(s.url("/v1/secrets/reload"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(&c, s.url("/v1/secrets")).await.1[0]["name"], "RT");

    // Nothing the API answers holds a value.
    let answers = [
        get(&c, s.url("/v1/sandboxes/sec")).await.1,
        get(&c, s.url("/v1/sandboxes")).await.1,
        get(&c, s.url("/v1/sandboxes/sec/secrets")).await.1,
        get(&c, s.url("/v1/sandboxes/sec/logs")).await.1,
        get(&c, s.url("/v1/secrets")).await.1,
    ];
    for a in &answers {
        let text = a.to_string();
        for v in [value, rotated, runtime_value] {
            assert!(!text.contains(v), "a value in {text}");
        }
    }
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let count = |decision: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "sqrx_egress_secret_requests_total{{decision=\"{decision}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("substituted") >= 3, "{metrics}");
    assert!(count("refused") >= 1, "{metrics}");

    // Remove: its own secret goes; 404 for one it does not have.
    let (status, _) = delete(&c, s.url("/v1/sandboxes/sec/secrets/KEY")).await;
    assert_eq!(status, 204);
    let (status, body) = delete(&c, s.url("/v1/sandboxes/sec/secrets/KEY")).await;
    assert_eq!(status, 404, "{body}");
}
