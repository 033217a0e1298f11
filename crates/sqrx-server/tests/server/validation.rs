//! Error paths: every malformed request is answered with a JSON error and the right status.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests() {
    if !privileged("server malformed_requests") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--max-sandboxes", "1"], &[]);
    let c = client();
    let url = s.url("/v1/sandboxes");

    // Bad JSON, wrong types, missing and unknown fields: 400.
    let body_of = |body: &'static str| {
        c.post(s.url("/v1/sandboxes"))
            .header("content-type", "application/json")
            .body(body)
    };
    assert_error(&send(body_of("{\"id\": ")).await, 400, "");
    assert_error(&send(body_of("not json")).await, 400, "");
    assert_error(&send(body_of("{\"id\": 5}")).await, 400, "id");
    assert_error(
        &send(body_of("{\"id\": \"a\", \"memory_mb\": \"lots\"}")).await,
        400,
        "memory_mb",
    );
    assert_error(&send(body_of("{}")).await, 400, "missing field `id`");
    assert_error(
        &send(body_of("{\"id\": \"a\", \"memroy_mb\": 5}")).await,
        400,
        "memroy_mb",
    );
    assert_error(&send(body_of("[]")).await, 400, "");
    // Values the core refuses.
    assert_error(
        &post(&c, url.clone(), json!({"id": "-bad"})).await,
        400,
        "invalid sandbox id",
    );
    assert_error(
        &post(&c, url.clone(), json!({"id": "a", "cpu": 0})).await,
        400,
        "cpu",
    );
    assert_error(
        &post(&c, url.clone(), json!({"id": "a", "layers": ["nolayer"]})).await,
        400,
        "",
    );
    assert_error(
        &post(
            &c,
            url.clone(),
            json!({"id": "a", "layers": ["100-missing"]}),
        )
        .await,
        404,
        "100-missing",
    );
    // Wrong or missing content type: 415.
    assert_error(
        &send(c.post(url.clone()).body("{\"id\":\"a\"}")).await,
        415,
        "application/json",
    );
    assert_error(
        &send(
            c.post(url.clone())
                .header("content-type", "text/plain")
                .body("{\"id\":\"a\"}"),
        )
        .await,
        415,
        "",
    );
    // Oversized body: 413 (the JSON limit is 1 MiB).
    let big = format!("{{\"id\": \"a\", \"task\": \"{}\"}}", "x".repeat(2 << 20));
    let got = raw(
        &s.addr,
        &format!("POST /v1/sandboxes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}", big.len()),
        big.into_bytes(),
    )
    .await;
    assert_error(&got, 413, "");

    // The limit: 429 once the one allowed sandbox exists.
    create(&c, &s, "only").await;
    assert_error(
        &post(&c, url.clone(), json!({"id": "second"})).await,
        429,
        "limit",
    );

    // Exec bodies.
    let exec_url = s.url("/v1/sandboxes/only/exec");
    assert_error(&post(&c, exec_url.clone(), json!({})).await, 400, "command");
    assert_error(
        &post(&c, exec_url.clone(), json!({"command": 42})).await,
        400,
        "",
    );
    assert_error(
        &post(&c, exec_url.clone(), json!({"command": "  "})).await,
        400,
        "command",
    );
    assert_error(
        &post(
            &c,
            exec_url.clone(),
            json!({"command": "true", "timeout": -1}),
        )
        .await,
        400,
        "timeout",
    );
    assert_error(
        &post(
            &c,
            exec_url.clone(),
            json!({"command": "true", "timeout": "soon"}),
        )
        .await,
        400,
        "timeout",
    );
    assert_error(
        &post(
            &c,
            exec_url.clone(),
            json!({"command": "true", "workdir": "rel"}),
        )
        .await,
        400,
        "workdir",
    );
    assert_error(
        &post(
            &c,
            exec_url.clone(),
            json!({"command": ["/no/such/program"]}),
        )
        .await,
        404,
        "",
    );
    // Unknown and invalid ids in paths.
    assert_error(
        &get(&c, s.url("/v1/sandboxes/nobody")).await,
        404,
        "not found",
    );
    assert_error(
        &get(&c, s.url("/v1/sandboxes/bad%20id")).await,
        400,
        "invalid sandbox id",
    );
    assert_error(&get(&c, s.url("/v1/sandboxes/nobody/logs")).await, 404, "");
    assert_error(
        &send(c.post(s.url("/v1/sandboxes/nobody/pause"))).await,
        404,
        "",
    );
    // Unknown routes and methods.
    assert_error(&get(&c, s.url("/v2/whatever")).await, 404, "no route");
    assert_error(&send(c.patch(s.url("/v1/sandboxes"))).await, 405, "PATCH");
    assert_error(&send(c.put(s.url("/v1/health"))).await, 405, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_openapi_and_json_logs() {
    if !privileged("server metrics_openapi_and_json_logs") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Serve, &["--log-format", "json"], &[]);
    let c = client();
    create(&c, &s, "m").await;
    exec(&c, &s, "m", "true").await;
    exec(&c, &s, "m", "false").await;
    let js = post(&c, s.url("/v1/execute"), json!({"code": "1 + 1"})).await;
    assert_eq!(js.0, 200);
    let _ = get(&c, s.url("/v1/sandboxes/none")).await;

    let text = metrics_text(&c, &s).await;
    for needle in [
        "sqrx_http_requests_total{method=\"POST\",route=\"/v1/sandboxes/{id}/exec\",status=\"200\"} 2",
        "sqrx_http_requests_total{method=\"GET\",route=\"/v1/sandboxes/{id}\",status=\"404\"} 1",
        "sqrx_http_request_duration_seconds_bucket",
        "sqrx_sandboxes{state=\"running\"} 1",
        "sqrx_sandboxes{state=\"paused\"} 0",
        "sqrx_execs_total{outcome=\"success\"} 1",
        "sqrx_execs_total{outcome=\"failure\"} 1",
        "sqrx_exec_duration_seconds_count",
        "sqrx_js_executions_total{status=\"success\"} 1",
        "sqrx_layers 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }

    // The served OpenAPI document is the committed one.
    let served = c
        .get(s.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .text()
        .await
        .expect("text");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .expect("docs/openapi.json");
    assert!(
        served == committed,
        "docs/openapi.json is stale: run `sqrx openapi > docs/openapi.json`"
    );

    // Every log line is one JSON object; requests are logged with their status.
    let log = s.log_text();
    let mut saw_request = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        saw_request |= v["status"] == 200;
    }
    assert!(saw_request, "no request log line:\n{log}");
}
