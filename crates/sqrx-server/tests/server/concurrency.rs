//! Many clients at once, and a long exec that must not hold anything else up.

use std::time::Duration;

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn twenty_clients_create_exec_destroy() {
    if !privileged("server twenty_clients_create_exec_destroy") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let create_url = s.url("/v1/sandboxes");
        let base = s.base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let id = format!("c{i}");
            let made = post(&c, create_url, json!({"id": id, "memory_mb": 128})).await;
            assert_eq!(made.0, 201, "{}", made.1);
            for n in 0..3 {
                let r = post(
                    &c,
                    format!("{base}/v1/sandboxes/{id}/exec"),
                    json!({"command": format!("echo {id}-{n}")}),
                )
                .await;
                assert_eq!(r.0, 200, "{}", r.1);
                assert_eq!(r.1["stdout"], format!("{id}-{n}\n"));
            }
            let gone = delete(&c, format!("{base}/v1/sandboxes/{id}")).await;
            assert_eq!(gone.0, 204, "{}", gone.1);
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let c = client();
    assert_eq!(get(&c, s.url("/v1/sandboxes")).await.1, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_exec_blocks_nothing_else() {
    if !privileged("server a_long_exec_blocks_nothing_else") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();
    create(&c, &s, "busy").await;
    create(&c, &s, "free").await;
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let url = s.url("/v1/sandboxes/busy/exec");
    let long = tokio::spawn(async move {
        // Runs until told to stop through a file, so the other requests are certainly made
        // while it is running, however slow the machine.
        let r = post(&client(), url, json!({"command": "touch /tmp/running; while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo stopped"})).await;
        let _ = tx.send(());
        r
    });
    loop {
        let r = exec(&c, &s, "busy", "test -e /tmp/running && echo yes || true").await;
        if r["stdout"] == "yes\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(
            get(&c, s.url("/v1/sandboxes"))
                .await
                .1
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(get(&c, s.url("/v1/sandboxes/busy")).await.0, 200);
        assert_eq!(exec(&c, &s, "free", "echo ok").await["stdout"], "ok\n");
        assert_eq!(get(&c, s.url("/v1/health")).await.0, 200);
        assert_eq!(get(&c, s.url("/v1/sandboxes/busy/logs")).await.0, 200);
    }
    assert!(
        rx.try_recv().is_err(),
        "the long exec was still running throughout"
    );
    exec(&c, &s, "busy", "touch /tmp/stop").await;
    let r = long.await.expect("long exec");
    assert_eq!(r.1["stdout"], "stopped\n");
}
