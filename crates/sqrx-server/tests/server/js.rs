//! `POST /v1/execute` and `POST /api/execute`.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn javascript() {
    if !privileged("server javascript") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--no-bootstrap"], &[]);
    let c = client();
    for route in ["/v1/execute", "/api/execute"] {
        let url = s.url(route);
        let r = post(
            &c,
            url.clone(),
            json!({"code": "console.log('hi', input.n); input.n * 2", "input": {"n": 21}}),
        )
        .await;
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["status"], "success");
        assert_eq!(r.1["result"], 42);
        assert_eq!(r.1["error"], false);
        assert_eq!(r.1["log"][0]["type"], "log");
        assert_eq!(r.1["log"][0]["data"], json!(["hi", 21]));
        assert!(r.1["executionTime"].is_number());

        let pi = post(
            &c,
            url.clone(),
            json!({"file": "pi.js", "input": {"terms": 1000}}),
        )
        .await;
        assert_eq!(pi.1["status"], "success", "{}", pi.1);
        assert!(
            pi.1["result"]["pi"]
                .as_f64()
                .is_some_and(|p| (p - std::f64::consts::PI).abs() < 1e-6)
        );
        let log = post(&c, url.clone(), json!({"file": "log.js"})).await;
        let types: Vec<&str> = log.1["log"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["type"].as_str())
            .collect();
        for t in ["log", "info", "warn", "error", "debug"] {
            assert!(types.contains(&t), "{t} in {types:?}");
        }
        let simple = post(
            &c,
            url.clone(),
            json!({"file": "simple", "input": {"name": "sqrx"}}),
        )
        .await;
        assert_eq!(simple.1["result"]["greeting"], "hello, sqrx");

        // Script failures are results.
        let thrown = post(
            &c,
            url.clone(),
            json!({"code": "throw new TypeError('nope')"}),
        )
        .await;
        assert_eq!(thrown.0, 200);
        assert_eq!(thrown.1["status"], "error");
        assert_eq!(thrown.1["error"]["name"], "TypeError");
        let slow = post(
            &c,
            url.clone(),
            json!({"code": "for(;;){}", "timeout_ms": 100}),
        )
        .await;
        assert_eq!(slow.1["status"], "timeout");
        let hog = post(
            &c,
            url.clone(),
            json!({"code": "let a=[]; for(;;) a.push('x'.repeat(1e5))", "memory_mb": 8}),
        )
        .await;
        assert_eq!(hog.1["status"], "out_of_memory");

        // Request errors.
        assert_error(
            &post(&c, url.clone(), json!({"file": "nope.js"})).await,
            404,
            "nope.js",
        );
        assert_error(&post(&c, url.clone(), json!({})).await, 400, "code or file");
        assert_error(
            &post(&c, url.clone(), json!({"code": "1", "file": "pi.js"})).await,
            400,
            "not both",
        );
        assert_error(
            &post(&c, url.clone(), json!({"code": 1})).await,
            400,
            "code",
        );
        assert_error(
            &post(&c, url.clone(), json!({"code": "1", "timeout_ms": 0})).await,
            400,
            "timeout_ms",
        );
        assert_error(
            &post(&c, url.clone(), json!({"code": "1", "memory_mb": 1})).await,
            400,
            "memory",
        );
        assert_error(
            &send(c.post(url.clone()).body("{\"code\":\"1\"}")).await,
            415,
            "",
        );
    }
}

/// The direct children of `pid` whose command line is a JavaScript worker's.
fn js_workers_of(pid: i32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|a| a == b"js-worker") {
                out.push(c);
            }
        }
    }
    out
}

fn status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_runs_in_confined_workers_by_default() {
    if !privileged("server javascript confinement") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--no-bootstrap"], &[]);
    let c = client();
    let r = post(&c, s.url("/v1/execute"), json!({"code": "6 * 7"})).await;
    assert_eq!(r.1["result"], 42, "{}", r.1);
    let workers = js_workers_of(s.pid());
    assert!(!workers.is_empty(), "no js-worker child of the server");
    for w in workers {
        assert_eq!(status_field(w, "Uid"), "65534\t65534\t65534\t65534", "{w}");
        assert_eq!(status_field(w, "CapEff"), "0000000000000000", "{w}");
        assert_eq!(status_field(w, "Seccomp"), "2", "{w}");
        assert_eq!(status_field(w, "NoNewPrivs"), "1", "{w}");
        let fds: Vec<_> = std::fs::read_dir(format!("/proc/{w}/fd"))
            .expect("fds")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(fds, vec![std::ffi::OsString::from("3")], "{w}");
    }

    // Chosen explicitly: in-process, no worker processes.
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &["--no-bootstrap", "--js-isolation", "in-process"],
        &[],
    );
    let r = post(&c, s.url("/api/execute"), json!({"code": "6 * 7"})).await;
    assert_eq!(r.1["result"], 42, "{}", r.1);
    assert_eq!(js_workers_of(s.pid()), Vec::<u32>::new());
}
