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
