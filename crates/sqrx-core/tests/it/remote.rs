//! Layers in S3 against a real S3-compatible server on loopback (moto in server mode, started
//! by each test): round trips, deduplication, corrupt and truncated objects, an interrupted
//! upload resumed, concurrent pulls, refused credentials.

use sqrx_core::remote::{
    Remote, RemoteConfig, RemoteError, StaticCredentials, UploadKind, UploadState,
};
use sqrx_core::{ErrorKind, LayerName, LayerStore, faults};
use sqrx_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// A config for `bucket` on `s3` (created when `create`), under a prefix, in parts of 5 MiB.
fn config(s3: &S3Server, bucket: &str, create: bool) -> RemoteConfig {
    if create {
        s3.create_bucket(bucket);
    }
    let mut c = RemoteConfig::new(bucket);
    c.endpoint = Some(s3.endpoint.clone());
    c.path_style = true;
    c.prefix = "stores/one/".into();
    c.part_size = 5 << 20;
    c.credentials = Some(StaticCredentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
    });
    c
}

/// A layer store in a fresh directory.
fn store() -> (tempfile::TempDir, LayerStore) {
    let dir = tempfile::Builder::new()
        .prefix("sqrx-test-s3-")
        .tempdir()
        .expect("tempdir");
    let store = LayerStore::open(dir.path()).expect("store");
    (dir, store)
}

/// `name` built from `mb` MiB of bytes that do not compress (so the image is about as big).
fn layer(store: &LayerStore, name: &str, mb: usize, seed: u64) -> LayerName {
    let src = tempfile::tempdir().expect("src");
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.path().join("data.bin"), bytes).expect("write");
    std::fs::write(src.path().join("hello.txt"), format!("hello {seed}\n")).expect("write");
    let name = LayerName::new(name).expect("name");
    store
        .build_from_dir(&name, src.path(), &Default::default())
        .expect("build");
    name
}

/// Files left in a store's staging directory besides lock files.
fn leftovers(store: &LayerStore) -> Vec<String> {
    std::fs::read_dir(store.dir().join(".tmp"))
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

#[test]
fn layers_go_up_once_and_come_down_verified() {
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let (_a_dir, a) = store();
    let (_b_dir, b) = store();
    let remote = Remote::connect(config(&s3, "layers", true)).expect("connect");
    let name = layer(&a, "100-data", 12, 7);
    let size = a.get(&name).expect("layer").size;
    assert!(size > 12 << 20, "{size}");

    let first = remote.push(&a, &name, None).expect("push");
    assert_eq!(first.uploaded_bytes, size, "in parts: {first:?}");
    assert!(first.indexed);
    assert!(
        first.key.starts_with("stores/one/layers/sha256/"),
        "{}",
        first.key
    );
    // Pushed again, or under another name: the image is there already.
    let again = remote.push(&a, &name, None).expect("push again");
    assert_eq!(
        (again.uploaded_bytes, again.indexed),
        (0, false),
        "{again:?}"
    );
    let image = std::fs::File::open(a.image_path(&name)).expect("image");
    let copy = LayerName::new("101-copy").expect("name");
    a.import_image(&copy, image, "copy", false).expect("import");
    let other = remote.push(&a, &copy, None).expect("push copy");
    assert_eq!(
        (other.uploaded_bytes, other.indexed),
        (0, true),
        "{other:?}"
    );
    let small = layer(&a, "102-small", 1, 9);
    let pushed = remote.push(&a, &small, None).expect("push small");
    assert!(pushed.uploaded_bytes > 0 && pushed.uploaded_bytes < 5 << 20);

    let listed: Vec<String> = remote
        .list()
        .expect("list")
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    assert_eq!(listed, ["100-data", "101-copy", "102-small"]);

    // Another machine's store: pulled, verified, the same image.
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().expect("lock").push((done, total));
    let got = remote
        .pull(&b, &name, false, Some(&progress))
        .expect("pull");
    assert_eq!(
        (got.name.as_str(), &got.digest, got.downloaded_bytes),
        ("100-data", &a.get(&name).expect("a").digest, size)
    );
    assert!(got.download > std::time::Duration::ZERO, "{got:?}");
    assert_eq!(b.get(&name).expect("b").digest, got.digest);
    assert_eq!(seen.lock().expect("lock").last(), Some(&(size, size)));
    let twice = remote.pull(&b, &name, false, None).expect("pull again");
    assert_eq!(twice.downloaded_bytes, 0, "already here");
    // Sync: B lacks two layers, has nothing the bucket lacks.
    let synced = remote.sync(&b).expect("sync");
    assert_eq!(synced.pulled, ["101-copy", "102-small"]);
    assert!(synced.pushed.is_empty());
    // A local layer of the same name but another image is not replaced unless forced.
    let (_c_dir, c) = store();
    layer(&c, "100-data", 1, 99);
    let e = remote.pull(&c, &name, false, None).expect_err("diverged");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    remote.pull(&c, &name, true, None).expect("forced");
    assert_eq!(c.get(&name).expect("c").digest, got.digest);
    assert!(leftovers(&b).is_empty() && leftovers(&c).is_empty());
    // Unknown names.
    let e = remote
        .pull(&b, &LayerName::new("999-nope").expect("name"), false, None)
        .expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("layers/names/999-nope.json"), "{e}");
}

#[test]
fn corrupt_and_truncated_objects_are_never_stored() {
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let (_a_dir, a) = store();
    let (_b_dir, b) = store();
    let config = config(&s3, "damaged", true);
    let remote = Remote::connect(config.clone()).expect("connect");
    let name = layer(&a, "100-data", 1, 3);
    let report = remote.push(&a, &name, None).expect("push");
    let image = std::fs::read(a.image_path(&name)).expect("image");
    // One byte changed, same length.
    let mut flipped = image.clone();
    flipped[image.len() / 2] ^= 0xff;
    s3.overwrite("damaged", &report.key, &flipped);
    let e = remote.pull(&b, &name, false, None).expect_err("corrupt");
    assert!(matches!(e, RemoteError::Corrupt { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&report.key) && e.to_string().contains("hash"),
        "{e}"
    );
    assert!(!b.contains(&name) && leftovers(&b).is_empty());
    // Cut short.
    s3.overwrite("damaged", &report.key, &image[..image.len() - 100]);
    let e = remote.pull(&b, &name, false, None).expect_err("truncated");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(!b.contains(&name) && leftovers(&b).is_empty());
    // Put right again (a push finds an object it did not upload and replaces it): pulled.
    remote.push(&a, &name, None).expect("push again");
    remote.pull(&b, &name, false, None).expect("pull");
    assert!(b.contains(&name));
}

#[test]
fn an_interrupted_upload_resumes_and_shows_nothing_meanwhile() {
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let (_a_dir, a) = store();
    let (_b_dir, b) = store();
    let remote = Remote::connect(config(&s3, "resume", true)).expect("connect");
    let name = layer(&a, "100-big", 16, 11);
    let size = a.get(&name).expect("layer").size;
    // Four parts of 5 MiB; the third upload fails.
    faults::fail_at(3);
    let e = remote.push(&a, &name, None).expect_err("interrupted");
    let (_, fired) = faults::disarm();
    assert_eq!(fired, Some("remote.part"), "{e}");
    // Nothing a reader would take for the layer.
    assert!(remote.list().expect("list").is_empty());
    let e = remote.pull(&b, &name, false, None).expect_err("not there");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // The next push keeps the two parts that made it.
    let resumed = remote.push(&a, &name, None).expect("resume");
    assert_eq!(resumed.parts_reused, 2, "{resumed:?}");
    assert_eq!(resumed.uploaded_bytes, size - (10 << 20));
    let got = remote.pull(&b, &name, false, None).expect("pull");
    assert_eq!(got.downloaded_bytes, size);
    assert_eq!(
        b.get(&name).expect("b").digest,
        a.get(&name).expect("a").digest
    );
}

#[test]
fn ten_concurrent_pulls_download_once() {
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let (_a_dir, a) = store();
    let (_b_dir, b) = store();
    let config = config(&s3, "shared", true);
    let name = layer(&a, "100-data", 6, 5);
    let size = a.get(&name).expect("layer").size;
    Remote::connect(config.clone())
        .expect("connect")
        .push(&a, &name, None)
        .expect("push");
    let downloaded: u64 = std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..10)
            .map(|_| {
                let (config, b, name) = (config.clone(), &b, &name);
                scope.spawn(move || {
                    let remote = Remote::connect(config).expect("connect");
                    remote
                        .pull(b, name, false, None)
                        .expect("pull")
                        .downloaded_bytes
                })
            })
            .collect();
        pulls.into_iter().map(|p| p.join().expect("thread")).sum()
    });
    assert_eq!(downloaded, size, "one pull downloads, nine find it stored");
    assert!(b.contains(&name) && leftovers(&b).is_empty());
}

#[test]
fn refused_credentials_and_a_missing_bucket_are_clear_errors() {
    let Some(s3) = S3Server::start(true) else {
        return;
    };
    let (_a_dir, a) = store();
    let name = layer(&a, "100-data", 1, 1);
    let remote = Remote::connect(config(&s3, "locked", false)).expect("connect");
    let e = remote.push(&a, &name, None).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e:?}");
    assert!(e.to_string().contains("S3 refused"), "{e}");
    drop(s3);
    let Some(open) = S3Server::start(false) else {
        return;
    };
    let remote = Remote::connect(config(&open, "nobucket", false)).expect("connect");
    let e = remote.push(&a, &name, None).expect_err("no bucket");
    assert!(e.to_string().contains("nobucket"), "{e}");
    let mut bad = config(&open, "x", false);
    bad.bucket = "Bad_Bucket".into();
    let e = Remote::connect(bad).expect_err("bad name");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_sandbox_on_another_machine_pulls_the_layers_it_lacks() {
    if !sqrx_testkit::privileged("a_sandbox_on_another_machine_pulls_the_layers_it_lacks") {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let config = config(&s3, "machines", true);
    // Built on one machine, pushed.
    let one = crate::sandbox::TestRuntime::new();
    let name = layer(one.rt.layers(), "100-app", 2, 21);
    Remote::connect(config.clone())
        .expect("connect")
        .push(one.rt.layers(), &name, None)
        .expect("push");
    // Used on another (its own data directory), which has never seen it.
    let other = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    assert!(!other.rt.layers().contains(&name));
    let mut spec = sqrx_core::SandboxSpec::new("app");
    spec.layers = vec!["000-base".into(), "100-app".into()];
    let sb = other.rt.create(spec).expect("create pulls the layer");
    assert_eq!(crate::sandbox::out(&sb, "cat /hello.txt"), "hello 21\n");
    assert_eq!(
        other.rt.layers().get(&name).expect("stored").digest,
        one.rt.layers().get(&name).expect("built").digest
    );
    // A layer neither has: the bucket's answer, naming the key.
    let mut spec = sqrx_core::SandboxSpec::new("nope");
    spec.layers = vec!["000-base".into(), "100-nowhere".into()];
    let e = other.rt.create(spec).expect_err("missing everywhere");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains("layers/names/100-nowhere.json"),
        "{e}"
    );
}

/// `cmd`'s output in `sb`.
fn sh_out(sb: &sqrx_core::Sandbox, cmd: &str) -> String {
    crate::sandbox::out(sb, cmd)
}

#[test]
fn ephemeral_sandboxes_survive_their_machine() {
    if !sqrx_testkit::privileged("ephemeral_sandboxes_survive_their_machine") {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let mut config = config(&s3, "ephemeral", true);
    config.ephemeral = true;
    let one = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    let two = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    let remote = Remote::connect(config.clone()).expect("connect");
    // A layer only machine one has: the snapshot carries it.
    let app = layer(one.rt.layers(), "100-app", 1, 31);
    let mut spec = sqrx_core::SandboxSpec::new("eph");
    spec.layers = vec!["000-base".into(), "100-app".into()];
    let sb = one.rt.create(spec).expect("create");
    sh_out(
        &sb,
        "echo kept > /root/notes.txt && mkdir -p /srv && echo 1 > /srv/one",
    );
    assert!(remote.latest_snapshot("eph").expect("look").is_none());
    sb.destroy().expect("destroy saves it");
    assert!(one.rt.get("eph").is_err(), "destroyed on machine one");
    let first = remote
        .latest_snapshot("eph")
        .expect("look")
        .expect("saved in the bucket");
    assert_eq!(first.info.layers, ["000-base", "100-app"]);

    // Machine two has never seen the sandbox nor the layer: the create restores it.
    assert!(!two.rt.layers().contains(&app));
    let sb = two
        .rt
        .create(sqrx_core::SandboxSpec::new("eph"))
        .expect("create restores it");
    assert_eq!(sh_out(&sb, "cat /root/notes.txt /srv/one"), "kept\n1\n");
    assert_eq!(
        sh_out(&sb, "cat /hello.txt"),
        "hello 31\n",
        "the layer came along"
    );
    assert_eq!(sb.info().layers, ["000-base", "100-app"]);
    let labels: Vec<String> = sb
        .snapshots()
        .expect("list")
        .into_iter()
        .map(|s| s.label)
        .collect();
    assert_eq!(labels, std::slice::from_ref(&first.info.label));
    // A second life on machine two, then back to machine one: both lives' files are there.
    sh_out(&sb, "echo 2 > /srv/two && rm /srv/one");
    sb.destroy().expect("destroy saves it again");
    let second = remote.latest_snapshot("eph").expect("look").expect("saved");
    assert_ne!(second.info.label, first.info.label);
    assert_eq!(
        second.info.parent.as_deref(),
        Some(first.info.label.as_str())
    );
    let sb = one
        .rt
        .create(sqrx_core::SandboxSpec::new("eph"))
        .expect("create restores the newest");
    assert_eq!(sh_out(&sb, "cat /root/notes.txt /srv/two"), "kept\n2\n");
    assert_eq!(sh_out(&sb, "test -e /srv/one || echo gone"), "gone\n");
    // Discarded: nothing new in the bucket, and the next create starts from the latest.
    sh_out(&sb, "echo 3 > /srv/three");
    sb.destroy_unsaved().expect("discard");
    assert_eq!(
        remote
            .latest_snapshot("eph")
            .expect("look")
            .expect("still")
            .info
            .label,
        second.info.label
    );
    let sb = one
        .rt
        .create(sqrx_core::SandboxSpec::new("eph"))
        .expect("create");
    assert_eq!(
        sh_out(&sb, "test -e /srv/three || echo never-saved"),
        "never-saved\n"
    );
    sb.destroy_unsaved().expect("discard");

    // A saved sandbox whose bucket fails is kept, not lost.
    let sb = two
        .rt
        .create(sqrx_core::SandboxSpec::new("eph"))
        .expect("create");
    drop(s3);
    let e = sb.destroy().expect_err("the bucket is gone");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let kept = two.rt.get("eph").expect("kept");
    assert_eq!(sh_out(&kept, "cat /root/notes.txt"), "kept\n");
}

#[test]
fn snapshots_go_up_in_the_background_and_restore_anywhere() {
    if !sqrx_testkit::privileged("snapshots_go_up_in_the_background_and_restore_anywhere") {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    // The bucket does not exist yet: uploads fail and are retried.
    let config = config(&s3, "background", false);
    let one = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    assert!(one.rt.start_pusher().expect("start"));
    let name = layer(one.rt.layers(), "100-bg", 1, 41);
    one.rt.queue_layer_push(&name).expect("queue");
    let uploads = one.rt.uploads();
    let wait_for = |kind, name: &str, done: &dyn Fn(&sqrx_core::remote::Upload) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(u) = uploads.get(kind, name).filter(|u| done(u)) {
                return u;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: {:?}",
                uploads.get(kind, name)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let failed = wait_for(UploadKind::Layer, "100-bg", &|u| {
        u.state == UploadState::Failed
    });
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("background")),
        "{failed:?}"
    );
    assert!(failed.next_attempt.is_some(), "retried later: {failed:?}");
    s3.create_bucket("background");
    let pushed = wait_for(UploadKind::Layer, "100-bg", &|u| {
        u.state == UploadState::Pushed
    });
    assert!(pushed.attempts >= 2, "{pushed:?}");
    let remote = Remote::connect(config.clone()).expect("connect");
    assert!(remote.list().expect("list").iter().any(|l| l.name == name));

    // A snapshot is queued when taken and pushed with its chain.
    let mut spec = sqrx_core::SandboxSpec::new("bg");
    spec.layers = vec!["000-base".into(), "100-bg".into()];
    let sb = one.rt.create(spec).expect("create");
    sh_out(&sb, "echo before > /root/f");
    let snap = sb.snapshot(Some("s1")).expect("snapshot");
    let pushed = wait_for(UploadKind::Snapshot, "bg@s1", &|u| {
        u.state == UploadState::Pushed
    });
    assert_eq!(pushed.digest, snap.digest);
    let manifest = remote.snapshot("bg", "s1").expect("in the bucket");
    assert_eq!(manifest.info.digest, snap.digest);
    // An explicit push uploads nothing more.
    assert_eq!(sb.push_snapshot("s1").expect("push").uploaded_bytes, 0);

    // Another machine's sandbox of the same id restores a label it has never had.
    let two = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    let mut other = two
        .rt
        .create(sqrx_core::SandboxSpec::new("bg"))
        .expect("create");
    sh_out(&other, "echo after > /root/f");
    other.restore("s1").expect("restore fetches the label");
    assert_eq!(
        sh_out(&other, "cat /root/f /hello.txt"),
        "before\nhello 41\n"
    );
    let e = other.restore("nowhere").expect_err("no such label");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn the_local_cache_keeps_to_its_size_by_evicting_what_the_bucket_holds() {
    if !sqrx_testkit::privileged(
        "the_local_cache_keeps_to_its_size_by_evicting_what_the_bucket_holds",
    ) {
        return;
    }
    let Some(s3) = S3Server::start(false) else {
        return;
    };
    let mut config = config(&s3, "cache", true);
    config.auto_push = false;
    let remote = Remote::connect(config.clone()).expect("connect");
    let one = crate::sandbox::TestRuntime::with(|c| c.remote = Some(config.clone()));
    let store = one.rt.layers();
    let used = layer(store, "100-used", 2, 51);
    let old = layer(store, "101-old", 2, 52);
    let newer = layer(store, "102-newer", 2, 53);
    let local = layer(store, "103-local", 2, 54);
    for n in [&used, &old, &newer] {
        remote.push(store, n, None).expect("push");
    }
    let mut spec = sqrx_core::SandboxSpec::new("user");
    spec.layers = vec!["000-base".into(), "100-used".into()];
    let _user = one.rt.create(spec).expect("create");
    // The same data directory with a bound: one byte too many, then one byte.
    let total: u64 = store.list().expect("list").iter().map(|l| l.size).sum();
    let bounded = |max: u64| {
        let mut c = sqrx_core::RuntimeConfig::new(one.dir.path());
        c.init_path = Some(env!("CARGO_BIN_EXE_sqrx-init").into());
        c.remote = Some(RemoteConfig {
            cache_max_bytes: Some(max),
            ..config.clone()
        });
        sqrx_core::Runtime::open(c).expect("open")
    };
    // The least recently used layer the bucket holds goes first.
    assert_eq!(bounded(total - 1).trim_cache().expect("trim"), ["101-old"]);
    // Then every other one the bucket holds: not the one in use, the one only here, the base.
    let tight = bounded(1);
    assert_eq!(tight.trim_cache().expect("trim"), ["102-newer"]);
    for (n, here) in [
        (&used, true),
        (&old, false),
        (&newer, false),
        (&local, true),
    ] {
        assert_eq!(store.contains(n), here, "{n}");
    }
    // Needed again: pulled back, and kept although the store is over its bound (just used).
    let mut spec = sqrx_core::SandboxSpec::new("again");
    spec.layers = vec!["000-base".into(), "101-old".into()];
    let again = tight.create(spec).expect("create pulls it back");
    assert_eq!(sh_out(&again, "cat /hello.txt"), "hello 52\n");
    assert!(tight.trim_cache().expect("trim").is_empty());
    assert!(store.contains(&old));
    again.destroy().expect("destroy");
}
