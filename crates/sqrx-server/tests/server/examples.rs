//! `examples/curl/session.sh` runs against the server and does what it says.

use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn curl_session() {
    if !privileged("server curl_session") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &[],
        &[("SQRX_AUTH_TOKEN", "example-token")],
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/curl/session.sh"
    );
    let out = tokio::process::Command::new("bash")
        .arg(script)
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
    for needle in [
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
    ] {
        assert!(
            stdout.contains(needle),
            "the session output lacks {needle:?}:\n{stdout}"
        );
    }
    let c = client();
    let left = send(c.get(s.url("/v1/sandboxes")).bearer_auth("example-token")).await;
    assert_eq!(left.1, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_try() {
    if !privileged("server curl_try") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(
        &data,
        Binary::Server,
        &[],
        &[("SQRX_AUTH_TOKEN", "example-token")],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/curl/try.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
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
    for needle in [
        "\"termination_token\"",
        "\"status\":\"running\"",
        "\"hostname\":\"session-",
        "\"status\":\"stopped\"",
        "== done",
    ] {
        assert!(
            stdout.contains(needle),
            "the session output lacks {needle:?}:\n{stdout}"
        );
    }
    let c = client();
    let left = send(c.get(s.url("/v1/sandboxes")).bearer_auth("example-token")).await;
    assert_eq!(left.1, serde_json::json!([]));
}
