//! The native sandbox routes, success paths first, then their error paths.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn create_exec_logs_pause_files_destroy() {
    if !privileged("server create_exec_logs_pause_files_destroy") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();

    let health = get(&c, s.url("/v1/health")).await;
    assert_eq!(health.0, 200);
    assert_eq!(health.1["status"], "ok");
    assert_eq!(health.1["sandboxes"], 0);
    assert_eq!(health.1["layers"], 1, "the base layer was made at start");
    assert!(health.1["version"].is_string());

    let created = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "box1", "memory_mb": 256, "cpu": 0.5, "task": "tests", "env": {"GREETING": "hi"}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["id"], "box1");
    assert_eq!(created.1["status"], "running");
    assert_eq!(created.1["layers"], json!(["000-base"]));
    assert_eq!(created.1["memory_mb"], 256);
    assert_eq!(created.1["task"], "tests");
    assert_eq!(created.1["upper_mb"], 512);

    let dup = post(&c, s.url("/v1/sandboxes"), json!({"id": "box1"})).await;
    assert_error(&dup, 409, "already exists");

    let one = get(&c, s.url("/v1/sandboxes/box1")).await;
    assert_eq!(one.0, 200);
    assert_eq!(one.1["id"], "box1");
    let all = get(&c, s.url("/v1/sandboxes")).await;
    assert_eq!(all.1.as_array().map(Vec::len), Some(1));

    // Shell string, argv, stdin, env, workdir, non-zero exit, timeout.
    let r = exec(&c, &s, "box1", "echo $GREETING from $(hostname)").await;
    assert_eq!(r["stdout"], "hi from box1\n");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["seq"], 1);
    let r = post(
        &c,
        s.url("/v1/sandboxes/box1/exec"),
        json!({"command": ["sh", "-c", "cat; pwd; echo $X >&2; exit 3"], "stdin": "in\n", "env": {"X": "y"}, "workdir": "/tmp"}),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["stdout"], "in\n/tmp\n");
    assert_eq!(r.1["stderr"], "y\n");
    assert_eq!(r.1["exit_code"], 3);
    let r = post(
        &c,
        s.url("/v1/sandboxes/box1/exec"),
        json!({"command": "sleep 30", "timeout": 0.5}),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["timed_out"], true);

    let logs = get(&c, s.url("/v1/sandboxes/box1/logs")).await;
    assert_eq!(logs.0, 200);
    let logs = logs.1.as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[1]["exit_code"], 3);
    assert_eq!(logs[1]["workdir"], "/tmp");

    // Pause refuses execs (409) until resume.
    let p = send(c.post(s.url("/v1/sandboxes/box1/pause"))).await;
    assert_eq!(p.0, 200, "{}", p.1);
    assert_eq!(p.1["status"], "paused");
    let refused = post(
        &c,
        s.url("/v1/sandboxes/box1/exec"),
        json!({"command": "true"}),
    )
    .await;
    assert_error(&refused, 409, "paused");
    let r = send(c.post(s.url("/v1/sandboxes/box1/resume"))).await;
    assert_eq!(r.1["status"], "running");

    // Files.
    let put = send(
        c.put(s.url("/v1/sandboxes/box1/files/work/notes.txt?mode=600"))
            .body("some notes"),
    )
    .await;
    assert_eq!(put.0, 200, "{}", put.1);
    assert_eq!(put.1["path"], "/work/notes.txt");
    assert_eq!(put.1["mode"], 0o600);
    let body = c
        .get(s.url("/v1/sandboxes/box1/files/work/notes.txt"))
        .send()
        .await
        .expect("get file");
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(body.text().await.expect("text"), "some notes");
    assert_eq!(
        exec(&c, &s, "box1", "cat /work/notes.txt").await["stdout"],
        "some notes"
    );
    let listing = get(&c, s.url("/v1/sandboxes/box1/files/work?list")).await;
    assert_eq!(listing.1[0]["name"], "notes.txt");
    let root = get(&c, s.url("/v1/sandboxes/box1/files")).await;
    assert!(
        root.1
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f["name"] == "work"))
    );
    let stat = get(&c, s.url("/v1/sandboxes/box1/files/work?stat")).await;
    assert_eq!(stat.1["kind"], "dir");
    let mkdir = send(c.put(s.url("/v1/sandboxes/box1/files/a/b/c?dir"))).await;
    assert_eq!(mkdir.1["kind"], "dir");
    assert_error(
        &get(&c, s.url("/v1/sandboxes/box1/files/nope.txt")).await,
        404,
        "",
    );
    assert_error(
        &send(
            c.put(s.url("/v1/sandboxes/box1/files/x?mode=999"))
                .body("x"),
        )
        .await,
        400,
        "mode",
    );
    let del = delete(&c, s.url("/v1/sandboxes/box1/files/work?recursive=true")).await;
    assert_eq!(del.0, 204);
    assert_error(
        &get(&c, s.url("/v1/sandboxes/box1/files/work?stat")).await,
        404,
        "",
    );

    // A directory as a tar stream, both ways.
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in [
            ("proj/run.sh", &b"#!/bin/sh\necho run\n"[..], 0o755),
            ("proj/data/big.bin", &[7u8; 300_000][..], 0o600),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append_data(&mut h, path, data).expect("append");
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "proj/link", "run.sh").expect("link");
        b.into_inner().expect("tar")
    };
    let up = send(
        c.put(s.url("/v1/sandboxes/box1/archive?path=/srv/app"))
            .header("content-type", "application/x-tar")
            .body(tar),
    )
    .await;
    assert_eq!(up.0, 200, "{}", up.1);
    assert_eq!(up.1["entries"], 3);
    let ran = exec(&c, &s, "box1", "/srv/app/proj/run.sh; stat -c '%a %s' /srv/app/proj/data/big.bin; readlink /srv/app/proj/link").await;
    assert_eq!(ran["stdout"], "run\n600 300000\nrun.sh\n", "{ran}");
    let down = c
        .get(s.url("/v1/sandboxes/box1/archive?path=/srv/app/proj"))
        .send()
        .await
        .expect("download");
    assert_eq!(down.status(), 200);
    assert_eq!(down.headers()["content-type"], "application/x-tar");
    let bytes = down.bytes().await.expect("body");
    let mut seen = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(&bytes[..]).entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mode = entry.header().mode().expect("mode") & 0o7777;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
        seen.insert(path, (mode, data.len()));
    }
    assert_eq!(seen.get("run.sh"), Some(&(0o755, 19)), "{seen:?}");
    assert_eq!(
        seen.get("data/big.bin"),
        Some(&(0o600, 300_000)),
        "{seen:?}"
    );
    assert!(seen.contains_key("link"), "{seen:?}");
    for (req, status, needle) in [
        (
            c.get(s.url("/v1/sandboxes/box1/archive?path=/nope")),
            404,
            "",
        ),
        (
            c.get(s.url("/v1/sandboxes/box1/archive?path=/srv/app/proj/run.sh")),
            400,
            "not a directory",
        ),
        (c.get(s.url("/v1/sandboxes/box1/archive")), 400, "path"),
        (
            c.get(s.url("/v1/sandboxes/nobox/archive?path=/")),
            404,
            "nobox",
        ),
        (
            c.put(s.url("/v1/sandboxes/box1/archive?path=/srv/x"))
                .body("this is not a tar archive, not at all, no no no no no no no no no no no"),
            400,
            "",
        ),
    ] {
        assert_error(&send(req).await, status, needle);
    }

    let gone = delete(&c, s.url("/v1/sandboxes/box1")).await;
    assert_eq!(gone, (204, serde_json::Value::Null));
    assert_error(
        &get(&c, s.url("/v1/sandboxes/box1")).await,
        404,
        "not found",
    );
    assert_error(
        &delete(&c, s.url("/v1/sandboxes/box1")).await,
        404,
        "not found",
    );
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/box1/exec"),
            json!({"command": "true"}),
        )
        .await,
        404,
        "not found",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_restore_activate_clone() {
    if !privileged("server snapshot_restore_activate_clone") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start(&data);
    let c = client();
    create(&c, &s, "snap").await;
    exec(&c, &s, "snap", "echo one > /state").await;
    let taken = post(
        &c,
        s.url("/v1/sandboxes/snap/snapshot"),
        json!({"label": "v1"}),
    )
    .await;
    assert_eq!(taken.0, 201, "{}", taken.1);
    assert_eq!(taken.1["label"], "v1");
    assert!(taken.1["size"].as_u64().is_some_and(|n| n > 0));
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/snap/snapshot"),
            json!({"label": "v1"}),
        )
        .await,
        409,
        "",
    );
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/snap/snapshot"),
            json!({"label": "../x"}),
        )
        .await,
        400,
        "label",
    );
    let auto = post(&c, s.url("/v1/sandboxes/snap/snapshot"), json!({})).await;
    assert_eq!(auto.0, 201, "{}", auto.1);
    let list = get(&c, s.url("/v1/sandboxes/snap/snapshots")).await;
    assert_eq!(list.1.as_array().map(Vec::len), Some(2));

    exec(&c, &s, "snap", "echo two > /state").await;
    let restored = post(
        &c,
        s.url("/v1/sandboxes/snap/restore"),
        json!({"label": "v1"}),
    )
    .await;
    assert_eq!(restored.0, 200, "{}", restored.1);
    assert_eq!(restored.1["active_snapshot"], "v1");
    assert_eq!(exec(&c, &s, "snap", "cat /state").await["stdout"], "one\n");
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/snap/restore"),
            json!({"label": "nope"}),
        )
        .await,
        404,
        "",
    );
    assert_error(
        &post(&c, s.url("/v1/sandboxes/snap/restore"), json!({})).await,
        400,
        "label",
    );

    // A second layer to activate, uploaded as a tar.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tar.append_data(&mut h, "opt/extra.txt", &b"extra\n"[..])
        .expect("tar");
    let tar = tar.into_inner().expect("tar");
    let up = send(
        c.put(s.url("/v1/layers/100-extra"))
            .header("content-type", "application/x-tar")
            .body(tar),
    )
    .await;
    assert_eq!(up.0, 201, "{}", up.1);
    let act = post(
        &c,
        s.url("/v1/sandboxes/snap/activate"),
        json!({"layer": "100-extra"}),
    )
    .await;
    assert_eq!(act.0, 200, "{}", act.1);
    assert_eq!(act.1["layers"], json!(["000-base", "100-extra"]));
    assert_eq!(
        exec(&c, &s, "snap", "cat /opt/extra.txt /state").await["stdout"],
        "extra\none\n"
    );
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/snap/activate"),
            json!({"layer": "100-missing"}),
        )
        .await,
        404,
        "",
    );
    assert_error(
        &delete(&c, s.url("/v1/layers/100-extra")).await,
        409,
        "snap",
    );

    let cloned = post(
        &c,
        s.url("/v1/sandboxes/snap/clone"),
        json!({"id": "snap2"}),
    )
    .await;
    assert_eq!(cloned.0, 201, "{}", cloned.1);
    assert_eq!(cloned.1["id"], "snap2");
    assert_eq!(exec(&c, &s, "snap2", "cat /state").await["stdout"], "one\n");
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes/snap/clone"),
            json!({"id": "snap2"}),
        )
        .await,
        409,
        "",
    );
    assert_error(
        &post(&c, s.url("/v1/sandboxes/missing/clone"), json!({"id": "x"})).await,
        404,
        "",
    );
}
