//! The sq-sandbox compatible API, as its clients use it.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sq_sandbox_contract() {
    if !privileged("server sq_sandbox_contract") {
        return;
    }
    // Sandboxes created here have a network (allow_net's meaning): their links go to a test
    // bed of namespaces, never to this machine's uplink.
    let bed = crate::netbed::NetBed::new();
    let data = DataDir::with_network(bed.config());
    let net_args = bed.args();
    let net_args: Vec<&str> = net_args.iter().map(String::as_str).collect();
    // The original's variables: a limit of two sandboxes, a 64 MiB upper.
    let s = Server::start_with(
        &data,
        Binary::Server,
        &net_args,
        &[
            ("SQUASH_MAX_SANDBOXES", "2"),
            ("SQUASH_UPPER_LIMIT_MB", "64"),
        ],
    );
    let c = client();
    let api = |p: &str| s.url(&format!("/cgi-bin/api{p}"));

    let health = get(&c, s.url("/cgi-bin/health")).await;
    assert_eq!(health.0, 200);
    assert_eq!(
        health.1,
        json!({"status": "ok", "backend": "chroot", "sandboxes": 0, "modules": 1, "base_ready": true})
    );
    let modules = get(&c, api("/modules")).await;
    assert_eq!(modules.1[0]["name"], "000-base");
    assert_eq!(modules.1[0]["location"], "local");
    assert!(modules.1[0]["size"].as_u64().is_some_and(|n| n > 0));

    // Create: numbers as strings, layers as a comma string, defaults for the rest.
    let created = post(
        &c,
        api("/sandboxes"),
        json!({"id": "dev", "layers": "000-base", "cpu": "1", "memory_mb": "512", "task": "build", "allow_net": ["10.1.0.0/16"]}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let info = &created.1;
    let keys: Vec<&str> = info
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "active_snapshot",
            "allow_net",
            "cpu",
            "created",
            "exec_count",
            "id",
            "last_active",
            "layers",
            "max_lifetime_s",
            "memory_mb",
            "mounted",
            "network",
            "owner",
            "snapshots",
            "task",
            "upper_bytes"
        ]
    );
    assert_eq!(info["owner"], "anon");
    assert_eq!(info["task"], "build");
    assert_eq!(info["layers"], json!(["000-base"]));
    assert_eq!(info["cpu"], 1.0);
    assert_eq!(info["memory_mb"], 512);
    assert_eq!(info["max_lifetime_s"], 0);
    assert_eq!(info["mounted"], true);
    assert_eq!(info["exec_count"], 0);
    assert_eq!(info["snapshots"], json!([]));
    assert_eq!(info["active_snapshot"], serde_json::Value::Null);
    assert_eq!(info["allow_net"], json!(["10.1.0.0/16"]));
    assert_eq!(
        info["network"],
        json!({"allow": ["10.1.0.0/16"], "deny": []})
    );
    assert!(
        info["created"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00"))
    );
    // The defaults: cpu 2, memory 1024, layers = the base, owner anon.
    let second = post(
        &c,
        api("/sandboxes"),
        json!({"id": "other", "layers": ["000-base"]}),
    )
    .await;
    assert_eq!(second.0, 201, "{}", second.1);
    assert_eq!(second.1["cpu"], 2.0);
    assert_eq!(second.1["memory_mb"], 1024);
    assert_eq!(
        second.1["network"], "all",
        "no allow_net: every destination"
    );
    let v1 = get(&c, s.url("/v1/sandboxes/other")).await;
    assert_eq!(v1.1["upper_mb"], 64, "SQUASH_UPPER_LIMIT_MB applies");

    // Create errors are 400 (duplicate, limit, validation), 415 without JSON.
    assert_error(
        &post(&c, api("/sandboxes"), json!({"id": "dev"})).await,
        400,
        "already exists",
    );
    assert_error(
        &post(&c, api("/sandboxes"), json!({"id": "third"})).await,
        400,
        "limit",
    );
    assert_error(
        &post(&c, api("/sandboxes"), json!({"owner": "x"})).await,
        400,
        "id required",
    );
    assert_error(
        &post(&c, api("/sandboxes"), json!({"id": "a b"})).await,
        400,
        "alphanumeric",
    );
    assert_error(
        &post(&c, api("/sandboxes"), json!({"id": "x", "cpu": "fast"})).await,
        400,
        "cpu",
    );
    assert_error(
        &send(c.post(api("/sandboxes")).body("{\"id\":\"x\"}")).await,
        415,
        "application/json",
    );
    assert_error(
        &send(
            c.post(api("/sandboxes"))
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await,
        400,
        "JSON",
    );
    assert_error(
        &send(c.put(api("/sandboxes"))).await,
        400,
        "method not allowed",
    );
    delete(&c, api("/sandboxes/other")).await;

    // Exec: 200 whatever the exit code, 124 on timeout; timeout as a number or a string.
    let ok = post(
        &c,
        api("/sandboxes/dev/exec"),
        json!({"cmd": "echo hello; echo oops >&2"}),
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let mut keys: Vec<String> =
        ok.1.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cmd",
            "exit_code",
            "finished",
            "seq",
            "started",
            "stderr",
            "stdout",
            "workdir"
        ]
    );
    assert_eq!(ok.1["stdout"], "hello\n");
    assert_eq!(ok.1["stderr"], "oops\n");
    assert_eq!(ok.1["exit_code"], 0);
    assert_eq!(ok.1["workdir"], "/");
    assert_eq!(ok.1["seq"], 1);
    let failed = post(
        &c,
        api("/sandboxes/dev/exec"),
        json!({"cmd": "exit 7", "workdir": "/tmp", "timeout": 10}),
    )
    .await;
    assert_eq!((failed.0, failed.1["exit_code"].clone()), (200, json!(7)));
    let slow = post(
        &c,
        api("/sandboxes/dev/exec"),
        json!({"cmd": "sleep 30", "timeout": "1"}),
    )
    .await;
    assert_eq!((slow.0, slow.1["exit_code"].clone()), (200, json!(124)));
    assert_error(
        &post(&c, api("/sandboxes/dev/exec"), json!({"workdir": "/"})).await,
        400,
        "cmd required",
    );
    assert_error(
        &post(
            &c,
            api("/sandboxes/dev/exec"),
            json!({"cmd": "true", "timeout": "x"}),
        )
        .await,
        400,
        "timeout",
    );
    assert_error(
        &send(
            c.post(api("/sandboxes/dev/exec"))
                .body("{\"cmd\":\"true\"}"),
        )
        .await,
        415,
        "",
    );
    assert_error(&get(&c, api("/sandboxes/dev/exec")).await, 400, "POST only");

    let logs = get(&c, api("/sandboxes/dev/logs")).await;
    assert_eq!(logs.0, 200);
    let logs = logs.1.as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[1]["cmd"], "exit 7");
    assert_eq!(logs[1]["workdir"], "/tmp");
    assert_eq!(logs[2]["exit_code"], 124);
    assert_error(
        &send(c.post(api("/sandboxes/dev/logs"))).await,
        400,
        "GET only",
    );
    let info = get(&c, api("/sandboxes/dev")).await;
    assert_eq!(info.1["exec_count"], 3);

    // Snapshot, restore, activate.
    post(
        &c,
        api("/sandboxes/dev/exec"),
        json!({"cmd": "echo saved > /keep"}),
    )
    .await;
    let snap = post(&c, api("/sandboxes/dev/snapshot"), json!({"label": "s1"})).await;
    assert_eq!(snap.0, 200, "{}", snap.1);
    assert_eq!(snap.1["snapshot"], "s1");
    assert!(snap.1["size"].as_u64().is_some_and(|n| n > 0));
    let auto = send(
        c.post(api("/sandboxes/dev/snapshot"))
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(
        auto.0, 200,
        "an empty body takes the default label: {}",
        auto.1
    );
    assert_error(
        &post(&c, api("/sandboxes/dev/snapshot"), json!({"label": "s1"})).await,
        400,
        "",
    );
    post(&c, api("/sandboxes/dev/exec"), json!({"cmd": "rm /keep"})).await;
    let restored = post(&c, api("/sandboxes/dev/restore"), json!({"label": "s1"})).await;
    assert_eq!(restored.0, 200, "{}", restored.1);
    assert_eq!(restored.1["active_snapshot"], "s1");
    assert_eq!(restored.1["snapshots"][0]["label"], "s1");
    assert!(restored.1["snapshots"][0]["size"].as_u64().is_some());
    let cat = post(&c, api("/sandboxes/dev/exec"), json!({"cmd": "cat /keep"})).await;
    assert_eq!(cat.1["stdout"], "saved\n");
    assert_error(
        &post(&c, api("/sandboxes/dev/restore"), json!({})).await,
        400,
        "label required",
    );
    assert_error(
        &post(&c, api("/sandboxes/dev/restore"), json!({"label": "nope"})).await,
        400,
        "",
    );
    assert_error(
        &post(&c, api("/sandboxes/dev/activate"), json!({})).await,
        400,
        "module required",
    );
    assert_error(
        &post(
            &c,
            api("/sandboxes/dev/activate"),
            json!({"module": "100-none"}),
        )
        .await,
        400,
        "",
    );
    assert_error(
        &post(&c, api("/sandboxes/dev/activate"), json!({"module": "a/b"})).await,
        400,
        "module",
    );

    // Unknown sandboxes and actions.
    assert_error(
        &get(&c, api("/sandboxes/ghost")).await,
        404,
        "not found: ghost",
    );
    assert_error(
        &delete(&c, api("/sandboxes/ghost")).await,
        404,
        "not found: ghost",
    );
    assert_error(
        &post(&c, api("/sandboxes/ghost/exec"), json!({"cmd": "true"})).await,
        404,
        "not found: ghost",
    );
    assert_error(
        &get(&c, api("/sandboxes/dev/frobnicate")).await,
        404,
        "unknown action: frobnicate",
    );
    assert_error(
        &send(c.patch(api("/sandboxes/dev"))).await,
        400,
        "method not allowed",
    );

    let list = get(&c, api("/sandboxes")).await;
    assert_eq!(list.1.as_array().map(Vec::len), Some(1));
    assert_eq!(
        delete(&c, api("/sandboxes/dev")).await,
        (204, serde_json::Value::Null)
    );
    assert_eq!(get(&c, api("/sandboxes")).await.1, json!([]));
}
