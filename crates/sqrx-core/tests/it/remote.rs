//! Layers in S3 against a real S3-compatible server on loopback (moto in server mode, started
//! by each test): round trips, deduplication, corrupt and truncated objects, an interrupted
//! upload resumed, concurrent pulls, refused credentials.

use sqrx_core::remote::{PullReport, Remote, RemoteConfig, RemoteError, StaticCredentials};
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
        got,
        PullReport {
            name: "100-data".into(),
            digest: a.get(&name).expect("a").digest,
            downloaded_bytes: size,
        }
    );
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
