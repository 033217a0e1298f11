//! Layers through a bucket between two servers (each its own data directory), the CLI's
//! `sqrx layer push|pull|sync|ls --remote|uploads`, background pushes, snapshots in the
//! bucket, ephemeral sandboxes moving between servers, and clear errors without a bucket or
//! credentials.

use serde_json::{Value, json};
use sqrx_testkit::privileged;
use sqrx_testkit::s3::S3Server;

use crate::harness::*;

/// A one-file layer as a tar.
fn tar_of(name: &str, text: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, text.as_bytes())
        .expect("tar");
    tar.into_inner().expect("tar")
}

/// `sqrx` with `args` on `data`, with `env`: (success, stdout, stderr).
fn cli(data: &DataDir, args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqrx"))
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .env_remove("SQRX_S3_BUCKET")
        .env_remove("SQUASH_S3_BUCKET")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run sqrx");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_travel_between_servers_through_a_bucket() {
    if !privileged("server layers_travel_between_servers_through_a_bucket") {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    s3.create_bucket("fleet");
    let env = s3.env("fleet");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Explicit pushes only here (what each one sends is checked); background pushes are
    // `uploads_snapshots_and_ephemeral_sandboxes_through_the_api`'s.
    env.push(("SQRX_S3_AUTO_PUSH", "0"));
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let a = Server::start_with(&data_a, Binary::Serve, &[], &env);
    let b = Server::start_with(&data_b, Binary::Serve, &[], &env);
    let c = client();

    // Uploaded to A, pushed once.
    let up = send(
        c.put(a.url("/v1/layers/100-shared"))
            .header("content-type", "application/x-tar")
            .body(tar_of("shared.txt", "from a\n")),
    )
    .await;
    assert_eq!(up.0, 201, "{}", up.1);
    let pushed = post(&c, a.url("/v1/layers/100-shared/push"), json!({})).await;
    assert_eq!(pushed.0, 200, "{}", pushed.1);
    assert!(
        pushed.1["uploaded_bytes"].as_u64().unwrap_or(0) > 0,
        "{}",
        pushed.1
    );
    let again = post(&c, a.url("/v1/layers/100-shared/push"), json!({})).await;
    assert_eq!(again.1["uploaded_bytes"], 0, "{}", again.1);
    let (st, listed) = get(&c, b.url("/v1/remote/layers")).await;
    assert_eq!(st, 200, "{listed}");
    assert_eq!(listed[0]["name"], "100-shared");

    // B has never seen it: a create pulls it, verified.
    let created = post(
        &c,
        b.url("/v1/sandboxes"),
        json!({"id": "fromb", "layers": ["000-base", "100-shared"]}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let out = exec(&c, &b, "fromb", "cat /shared.txt").await;
    assert_eq!(out["stdout"], "from a\n", "{out}");
    let (_, b_layer) = get(&c, b.url("/v1/layers/100-shared")).await;
    assert_eq!(b_layer["digest"], pushed.1["digest"]);

    // Errors: a layer nowhere; a pull over a different local image; a server without a bucket.
    let (st, body) = send(c.post(b.url("/v1/layers/100-nowhere/pull"))).await;
    assert_eq!(st, 404, "{body}");
    let other = send(
        c.put(b.url("/v1/layers/100-other"))
            .header("content-type", "application/x-tar")
            .body(tar_of("other.txt", "b's own\n")),
    )
    .await;
    assert_eq!(other.0, 201, "{}", other.1);
    let pushed_b = post(&c, b.url("/v1/layers/100-other/push"), json!({})).await;
    assert_eq!(pushed_b.0, 200, "{}", pushed_b.1);
    let clash = send(
        c.put(a.url("/v1/layers/100-other"))
            .header("content-type", "application/x-tar")
            .body(tar_of("other.txt", "a's own\n")),
    )
    .await;
    assert_eq!(clash.0, 201);
    let refused = send(c.post(a.url("/v1/layers/100-other/pull"))).await;
    assert_eq!(refused.0, 409, "{}", refused.1);
    let forced = send(
        c.post(a.url("/v1/layers/100-other/pull"))
            .json(&json!({"force": true})),
    )
    .await;
    assert_eq!(forced.0, 200, "{}", forced.1);
    let plain_data = DataDir::new();
    let plain = Server::start_with(&plain_data, Binary::Serve, &[], &[]);
    let (st, body) = send(c.post(plain.url("/v1/layers/sync"))).await;
    assert_eq!(st, 501, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("SQRX_S3_BUCKET"),
        "{body}"
    );

    // The CLI, on a third data directory.
    let data_c = DataDir::new();
    let s3_env = s3.env("fleet");
    let (ok, out, err) = cli(&data_c, &["layer", "ls", "--remote"], &s3_env);
    assert!(ok, "{err}");
    assert!(
        out.contains("100-shared") && out.contains("100-other"),
        "{out}"
    );
    let (ok, out, err) = cli(&data_c, &["layer", "pull", "100-shared", "--json"], &s3_env);
    assert!(ok, "{err}");
    let pulled: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(pulled[0]["digest"], pushed.1["digest"]);
    let (ok, out, err) = cli(&data_c, &["layer", "sync", "--json"], &s3_env);
    assert!(ok, "{err}");
    let synced: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(synced["pulled"], json!(["100-other"]), "{synced}");
    let (ok, out, err) = cli(&data_c, &["layer", "push", "100-shared"], &s3_env);
    assert!(ok && out.contains("already in the bucket"), "{out} {err}");
    // No bucket; no credentials anywhere (and never an instance role).
    let (ok, _, err) = cli(&data_c, &["layer", "push", "--all"], &[]);
    assert!(!ok && err.contains("no bucket"), "{err}");
    let no_keys: Vec<(&str, String)> = s3_env
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .cloned()
        .chain([("HOME", data_c.path().display().to_string())])
        .collect();
    let (ok, _, err) = cli(&data_c, &["layer", "push", "100-shared"], &no_keys);
    assert!(!ok && err.contains("no S3 credentials"), "{err}");
}

/// Poll `GET /v1/remote/uploads` on `server` until `name`'s upload is `state`.
async fn upload_reaches(c: &reqwest::Client, server: &Server, name: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (st, list) = get(c, server.url("/v1/remote/uploads")).await;
        assert_eq!(st, 200, "{list}");
        let found = list
            .as_array()
            .and_then(|l| l.iter().find(|u| u["name"] == name))
            .cloned();
        if let Some(u) = found.filter(|u| u["state"] == state) {
            return u;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never {state}: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_snapshots_and_ephemeral_sandboxes_through_the_api() {
    if !privileged("server uploads_snapshots_and_ephemeral_sandboxes_through_the_api") {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    s3.create_bucket("ephemeral");
    let env = s3.env("ephemeral");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("SQUASH_EPHEMERAL", "1"));
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let a = Server::start_with(&data_a, Binary::Serve, &[], &env);
    let b = Server::start_with(&data_b, Binary::Serve, &[], &env);
    let c = client();

    // An upload goes up in the background; with ?sync=true before the answer.
    let up = send(
        c.put(a.url("/v1/layers/100-bg"))
            .header("content-type", "application/x-tar")
            .body(tar_of("bg.txt", "background\n")),
    )
    .await;
    assert_eq!(up.0, 201, "{}", up.1);
    let done = upload_reaches(&c, &a, "100-bg", "pushed").await;
    assert_eq!(done["kind"], "layer");
    assert_eq!(done["digest"], up.1["digest"]);
    let now = send(
        c.put(a.url("/v1/layers/100-now?sync=true"))
            .header("content-type", "application/x-tar")
            .body(tar_of("now.txt", "now\n")),
    )
    .await;
    assert_eq!(now.0, 201, "{}", now.1);
    let (_, listed) = get(&c, b.url("/v1/remote/layers")).await;
    let names: Vec<&str> = listed
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"100-now"), "{listed}");

    // A snapshot pushed on request; pushing it again sends nothing.
    let created = post(
        &c,
        a.url("/v1/sandboxes"),
        json!({"id": "roamer", "layers": ["000-base", "100-bg"]}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let out = exec(&c, &a, "roamer", "echo first > /root/f && echo ok").await;
    assert_eq!(out["stdout"], "ok\n", "{out}");
    let snap = post(
        &c,
        a.url("/v1/sandboxes/roamer/snapshot"),
        json!({"label": "s1", "push": true}),
    )
    .await;
    assert_eq!(snap.0, 201, "{}", snap.1);
    assert!(
        snap.1["pushed"]["key"]
            .as_str()
            .unwrap_or("")
            .ends_with("sandboxes/roamer/snapshots/s1.json"),
        "{}",
        snap.1
    );
    let again = post(
        &c,
        a.url("/v1/sandboxes/roamer/snapshots/s1/push"),
        json!({}),
    )
    .await;
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(again.1["uploaded_bytes"], 0, "{}", again.1);
    let missing = post(
        &c,
        a.url("/v1/sandboxes/roamer/snapshots/nope/push"),
        json!({}),
    )
    .await;
    assert_eq!(missing.0, 404, "{}", missing.1);

    // Ephemeral: destroyed on A (saved first), created on B with its files.
    let out = exec(&c, &a, "roamer", "echo second > /root/g && echo ok").await;
    assert_eq!(out["stdout"], "ok\n", "{out}");
    let (st, body) = delete(&c, a.url("/v1/sandboxes/roamer")).await;
    assert_eq!(st, 204, "{body}");
    let (st, _) = get(&c, a.url("/v1/sandboxes/roamer")).await;
    assert_eq!(st, 404);
    let moved = post(&c, b.url("/v1/sandboxes"), json!({"id": "roamer"})).await;
    assert_eq!(moved.0, 201, "{}", moved.1);
    assert_eq!(
        moved.1["layers"],
        json!(["000-base", "100-bg"]),
        "{}",
        moved.1
    );
    let out = exec(&c, &b, "roamer", "cat /root/f /root/g /bg.txt").await;
    assert_eq!(out["stdout"], "first\nsecond\nbackground\n", "{out}");
    // Discarded on B: the bucket keeps A's save.
    let out = exec(&c, &b, "roamer", "echo third > /root/h && echo ok").await;
    assert_eq!(out["stdout"], "ok\n", "{out}");
    let (st, body) = delete(&c, b.url("/v1/sandboxes/roamer?save=false")).await;
    assert_eq!(st, 204, "{body}");
    let back = post(&c, a.url("/v1/sandboxes"), json!({"id": "roamer"})).await;
    assert_eq!(back.0, 201, "{}", back.1);
    let out = exec(
        &c,
        &a,
        "roamer",
        "cat /root/g; test -e /root/h || echo no-h",
    )
    .await;
    assert_eq!(out["stdout"], "second\nno-h\n", "{out}");
    let (st, body) = delete(&c, a.url("/v1/sandboxes/roamer?save=false")).await;
    assert_eq!(st, 204, "{body}");

    // Without a bucket: 501, and the upload asking for ?sync=true is not stored.
    let plain_data = DataDir::new();
    let plain = Server::start_with(&plain_data, Binary::Serve, &[], &[]);
    let refused = send(
        c.put(plain.url("/v1/layers/100-x?sync=true"))
            .header("content-type", "application/x-tar")
            .body(tar_of("x.txt", "x\n")),
    )
    .await;
    assert_eq!(refused.0, 501, "{}", refused.1);
    let (st, _) = get(&c, plain.url("/v1/layers/100-x")).await;
    assert_eq!(st, 404, "nothing stored");
    let (st, body) = get(&c, plain.url("/v1/remote/uploads")).await;
    assert_eq!(st, 501, "{body}");
    let created = post(&c, plain.url("/v1/sandboxes"), json!({"id": "local"})).await;
    assert_eq!(created.0, 201, "{}", created.1);
    let snap = post(
        &c,
        plain.url("/v1/sandboxes/local/snapshot"),
        json!({"push": true}),
    )
    .await;
    assert_eq!(snap.0, 501, "{}", snap.1);
    let (st, body) = delete(&c, plain.url("/v1/sandboxes/local")).await;
    assert_eq!(st, 204, "{body}");

    // The CLI: --sync pushes before returning; without it the layer is queued.
    let data_c = DataDir::new();
    let s3_env = s3.env("ephemeral");
    let src = tempfile::tempdir().expect("src");
    std::fs::write(src.path().join("c.txt"), "c\n").expect("write");
    let dir = src.path().display().to_string();
    let (ok, _, err) = cli(
        &data_c,
        &["layer", "build", &dir, "100-cli", "--sync"],
        &s3_env,
    );
    assert!(ok && err.contains("pushed to s3://ephemeral/"), "{err}");
    let (ok, _, err) = cli(&data_c, &["layer", "build", &dir, "101-cli"], &s3_env);
    assert!(ok && err.contains("queued for s3://ephemeral"), "{err}");
    let (ok, out, err) = cli(&data_c, &["layer", "uploads", "--json"], &s3_env);
    assert!(ok, "{err}");
    let uploads: Value = serde_json::from_str(&out).expect("json");
    let state_of = |name: &str| {
        uploads
            .as_array()
            .and_then(|l| l.iter().find(|u| u["name"] == name))
            .map(|u| u["state"].clone())
    };
    assert_eq!(state_of("100-cli"), Some(json!("pushed")), "{uploads}");
    assert_eq!(state_of("101-cli"), Some(json!("queued")), "{uploads}");
    let (ok, _, err) = cli(&data_c, &["layer", "build", &dir, "102-cli", "--sync"], &[]);
    assert!(!ok && err.contains("no bucket"), "{err}");
}
