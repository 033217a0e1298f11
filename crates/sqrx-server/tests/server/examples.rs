//! The curl examples (`examples/curl/*.sh`) run against the server and do what they say.

use sqrx_testkit::privileged;

use crate::harness::*;

/// Run `examples/curl/<script>` against a fresh server with a token, check its output holds
/// every needle, and that it left no sandbox behind.
async fn run_example(script: &str, needles: &[&str]) {
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &[],
        &[("SQRX_AUTH_TOKEN", "example-token")],
    );
    let path = format!(
        "{}/../../examples/curl/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = tokio::process::Command::new("bash")
        .arg(&path)
        .env("SQRX_URL", &s.base)
        .env("SQRX_AUTH_TOKEN", "example-token")
        .output()
        .await
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in needles {
        assert!(
            stdout.contains(needle),
            "the {script} output lacks {needle:?}:\n{stdout}"
        );
    }
    let c = client();
    let left = send(c.get(s.url("/v1/sandboxes")).bearer_auth("example-token")).await;
    assert_eq!(left.1, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_session() {
    if !privileged("server curl_session") {
        return;
    }
    run_example(
        "session.sh",
        &[
            "hello from curl-demo",
            "SHOUT",
            "\"timed_out\":true",
            "hi from a file",
            "\"label\":\"before\"",
            "\"active_snapshot\":\"before\"",
            "\"result\":6",
            "pi after 100000 terms",
            "\"mounted\":true",
            "204",
            "== done",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_try() {
    if !privileged("server curl_try") {
        return;
    }
    run_example(
        "try.sh",
        &[
            "\"termination_token\"",
            "\"status\":\"running\"",
            "\"hostname\":\"session-",
            "\"status\":\"stopped\"",
            "== done",
        ],
    )
    .await;
}
