//! Sandbox state end to end as root: snapshot/restore chains, activate, clone, big files.

use std::path::Path;

use sqrx_core::{ErrorKind, LayerName, Runtime, RuntimeConfig, Sandbox, SandboxError};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, out};

/// A one-line summary of the paths the chain test cares about.
fn view(sb: &Sandbox) -> String {
    out(
        sb,
        "cd /work; for f in a b c; do [ -e $f ] && printf '%s ' $f; done; \
         printf '| d:'; ls d 2>/dev/null | tr '\\n' ','; \
         printf ' | mode:'; stat -c %a m 2>/dev/null; \
         printf '| link:'; readlink l 2>/dev/null;",
    )
}

#[test]
fn snapshot_restore_chains() {
    if !privileged("snapshot_restore_chains") {
        return;
    }
    let t = TestRuntime::new();
    let mut sb = t.create("chain");
    // Base state in the upper: a directory with files that will be replaced wholesale.
    out(
        &sb,
        "mkdir -p /work/d && cd /work && echo a > a && touch d/old1 d/old2 && \
         echo m > m && chmod 600 m && ln -s a l",
    );
    let s1 = sb.snapshot(Some("s1")).expect("snapshot s1");
    assert_eq!(s1.label, "s1");
    assert!(s1.size > 0);
    assert_eq!(s1.parent, None);
    // From here on /work/d is in a lower layer (s1): replacing it makes it opaque in the upper.
    sb.restore("s1").expect("restore s1 at once");

    // Delete a, write b, replace d (opaque in the upper), change a mode, retarget a symlink,
    // and delete a file of the base layer.
    out(
        &sb,
        "cd /work && rm a && echo b > b && rm -rf d && mkdir d && touch d/new && \
         chmod 751 m && ln -sfn b l && rm /etc/hostname",
    );
    let s2 = sb.snapshot(Some("s2")).expect("snapshot s2");
    assert_eq!(s2.parent.as_deref(), Some("s1"));

    sb.restore("s1").expect("restore s1");
    assert_eq!(view(&sb), "a | d:old1,old2, | mode:600\n| link:a\n");
    assert_eq!(out(&sb, "cat /work/a"), "a\n");
    assert_eq!(
        out(&sb, "[ -e /etc/hostname ] && echo present || echo gone"),
        "present\n"
    );
    assert_eq!(sb.info().active_snapshot.as_deref(), Some("s1"));

    sb.restore("s2").expect("restore s2");
    assert_eq!(view(&sb), "b | d:new, | mode:751\n| link:b\n");
    assert_eq!(
        out(&sb, "[ -e /etc/hostname ] && echo present || echo gone"),
        "gone\n",
        "a deleted base file stays deleted"
    );

    // A snapshot taken after a restore keeps what it was restored from.
    sb.restore("s1").expect("restore s1 again");
    out(&sb, "echo c > /work/c");
    let s3 = sb.snapshot(Some("s3")).expect("snapshot s3");
    assert_eq!(s3.parent.as_deref(), Some("s1"));
    sb.restore("s2").expect("restore s2 again");
    sb.restore("s3").expect("restore s3");
    assert_eq!(view(&sb), "a c | d:old1,old2, | mode:600\n| link:a\n");

    let labels: Vec<String> = sb
        .snapshots()
        .expect("snapshots")
        .into_iter()
        .map(|s| s.label)
        .collect();
    assert_eq!(labels, ["s1", "s2", "s3"]);

    // The exec history goes on across restarts.
    let seqs: Vec<u64> = sb.logs().iter().map(|e| e.seq).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "exec numbers are unique and ordered");

    // Snapshots survive the process that made them: a new runtime on the same data dir.
    let mut config = RuntimeConfig::new(t.dir.path());
    config.init_path = Some(env!("CARGO_BIN_EXE_sqrx-init").into());
    let rt2 = Runtime::open(config).expect("reopen");
    let mut again = rt2.get("chain").expect("get");
    assert_eq!(again.snapshots().expect("snapshots").len(), 3);
    again.restore("s2").expect("restore from another runtime");
    assert_eq!(view(&again), "b | d:new, | mode:751\n| link:b\n");
}

#[test]
fn snapshot_errors_are_typed() {
    if !privileged("snapshot_errors_are_typed") {
        return;
    }
    let t = TestRuntime::new();
    let mut sb = t.create("snaperr");
    sb.snapshot(Some("one")).expect("snapshot");
    let e = sb.snapshot(Some("one")).expect_err("duplicate");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("one"), "{e}");
    for bad in ["../x", "", "-a", "a b", &"x".repeat(200)] {
        let e = sb.snapshot(Some(bad)).expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
    }
    let e = sb.restore("nope").expect_err("unknown label");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
    let e = sb.activate("100-missing").expect_err("unknown layer");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = sb.activate("000-base").expect_err("active layer");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let e = sb.activate("not a layer").expect_err("bad name");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e =
        t.rt.clone_sandbox("missing", "x")
            .expect_err("missing source");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e =
        t.rt.clone_sandbox("snaperr", "snaperr")
            .expect_err("existing target");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // The sandbox still works after all that; a default label is a timestamp.
    let auto = sb.snapshot(None).expect("default label");
    assert!(auto.label.starts_with("20"), "{}", auto.label);
    assert_eq!(out(&sb, "echo ok"), "ok\n");
}

#[test]
fn activate_adds_a_layer_and_keeps_the_upper() {
    if !privileged("activate_adds_a_layer_and_keeps_the_upper") {
        return;
    }
    let t = TestRuntime::new();
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("opt/tool")).expect("mkdir");
    std::fs::write(src.path().join("opt/tool/hello"), "from the layer\n").expect("write");
    std::fs::write(src.path().join("opt/tool/shadowed"), "layer\n").expect("write");
    let name = LayerName::new("200-tool").expect("name");
    t.rt.layers()
        .build_from_dir(&name, src.path(), &Default::default())
        .expect("build layer");

    let mut sb = t.create("act");
    out(
        &sb,
        "mkdir -p /opt/tool && echo mine > /opt/tool/shadowed && echo x > /keep",
    );
    sb.activate("200-tool").expect("activate");
    assert_eq!(out(&sb, "cat /opt/tool/hello"), "from the layer\n");
    assert_eq!(
        out(&sb, "cat /keep"),
        "x\n",
        "files written before are kept"
    );
    assert_eq!(
        out(&sb, "cat /opt/tool/shadowed"),
        "mine\n",
        "the upper still wins over the new layer"
    );
    assert_eq!(sb.info().layers, ["000-base", "200-tool"]);
    let e = sb.activate("200-tool").expect_err("twice");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    // The layer cannot be removed while the sandbox uses it.
    let e = t.rt.remove_layer(&name).expect_err("in use");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    // A snapshot taken now restores with the layer.
    sb.snapshot(Some("with-tool")).expect("snapshot");
    sb.restore("with-tool").expect("restore");
    assert_eq!(out(&sb, "cat /opt/tool/hello /keep"), "from the layer\nx\n");
}

#[test]
fn clone_starts_from_the_source_and_diverges() {
    if !privileged("clone_starts_from_the_source_and_diverges") {
        return;
    }
    let t = TestRuntime::new();
    let mut src = t.create("origin");
    out(&src, "echo one > /data.txt");
    src.snapshot(Some("base")).expect("snapshot");
    out(&src, "echo two >> /data.txt && rm /etc/hostname");
    src.restore("base").expect("restore");
    out(&src, "echo three >> /data.txt");

    let copy = t.rt.clone_sandbox("origin", "copy").expect("clone");
    assert_eq!(out(&copy, "cat /data.txt"), "one\nthree\n");
    assert_eq!(out(&copy, "[ -e /etc/hostname ] && echo yes"), "yes\n");
    assert_eq!(out(&copy, "hostname"), "copy\n");
    out(&copy, "echo clone-only > /c");
    out(&src, "echo source-only > /s");
    assert_eq!(
        out(&copy, "[ -e /s ] && echo leak || echo none"),
        "none\n",
        "the source's later writes stay out of the clone"
    );
    assert_eq!(
        out(&src, "[ -e /c ] && echo leak || echo none"),
        "none\n",
        "the clone's writes stay out of the source"
    );
    // Both run at once; the clone survives the source.
    src.destroy().expect("destroy source");
    assert_eq!(out(&copy, "cat /data.txt /c"), "one\nthree\nclone-only\n");
}

#[test]
fn big_binary_files_round_trip() {
    if !privileged("big_binary_files_round_trip") {
        return;
    }
    let t = TestRuntime::new();
    let mut spec = sqrx_core::SandboxSpec::new("bigfiles");
    spec.upper_mb = 400;
    let sb = t.rt.create(spec).expect("create");
    let mut data = vec![0u8; 100 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    sb.write_file("/big/blob.bin", &data, 0o644)
        .expect("write 100 MB");
    let back = sb.read_file("/big/blob.bin").expect("read 100 MB");
    assert!(back == data, "100 MB round trip is byte-exact");
    assert_eq!(
        out(&sb, "stat -c %s /big/blob.bin"),
        format!("{}\n", 100 << 20)
    );
    assert!(sb.info().upper_bytes >= 100 << 20);
}

#[test]
fn a_snapshot_does_not_reach_host_files_through_lower_symlinks() {
    if !privileged("a_snapshot_does_not_reach_host_files_through_lower_symlinks") {
        return;
    }
    // An opaque directory under a path that is a symlink in no layer, next to one whose
    // name is a symlink to a host directory: the expansion looks inside layers only.
    let t = TestRuntime::new();
    let mut sb = t.create("opaque");
    out(
        &sb,
        "ln -s /etc /hostetc && rm -rf /etc && mkdir /etc && echo x > /etc/only",
    );
    let snap = sb.snapshot(Some("o")).expect("snapshot");
    sb.restore("o").expect("restore");
    assert_eq!(out(&sb, "ls /etc"), "only\n");
    assert!(snap.size < 1 << 20);
    assert!(Path::new("/etc/hostname").exists(), "the host is untouched");
    let e = sb.restore("missing").expect_err("missing");
    assert!(matches!(e, SandboxError::SnapshotNotFound { .. }), "{e}");
}

fn tar_of(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_mtime(1_700_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                h.set_size(0);
                b.append_link(&mut h, path, data).expect("append link");
            }
            _ if path.contains("..") => {
                // tar refuses to write such paths: set the raw name field.
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).expect("append raw");
            }
            _ => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes())
                    .expect("append");
            }
        }
    }
    b.into_inner().expect("tar")
}

#[test]
fn tar_upload_and_download_stay_inside() {
    if !privileged("tar_upload_and_download_stay_inside") {
        return;
    }
    let t = TestRuntime::new();
    let sb = t.create("tars");
    let marker = tempfile::Builder::new()
        .prefix("sqrx-test-marker-")
        .tempfile()
        .expect("marker");
    std::fs::write(marker.path(), "HOST\n").expect("write marker");
    let host_tmp_name = format!("sqrx-test-escape-{}", std::process::id());
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let archive = tar_of(&[
        ("d", Directory, "", 0o750),
        ("d/f.txt", Regular, "hello\n", 0o640),
        ("d/hard", Link, "d/f.txt", 0o640),
        ("d/rel", Symlink, "f.txt", 0o777),
        ("out", Symlink, "/tmp", 0o777),
        (&format!("out/{host_tmp_name}"), Regular, "inside\n", 0o644),
    ]);
    let n = sb.upload_tar("/work", archive.as_slice()).expect("upload");
    assert_eq!(n, 6);
    assert_eq!(
        out(
            &sb,
            "cd /work && stat -c '%a %h' d d/f.txt && cat d/rel && readlink out"
        ),
        "750 2\n640 2\nhello\n/tmp\n"
    );
    assert_eq!(out(&sb, &format!("cat /tmp/{host_tmp_name}")), "inside\n");
    assert!(
        !Path::new("/tmp").join(&host_tmp_name).exists(),
        "a symlink in the archive led out of the sandbox"
    );

    // A file entry over a symlink to a host file is refused; the host file is untouched.
    let evil = tar_of(&[
        ("esc", Symlink, &marker.path().display().to_string(), 0o777),
        ("esc", Regular, "PWNED\n", 0o644),
    ]);
    assert!(sb.upload_tar("/evil", evil.as_slice()).is_err());
    assert_eq!(
        std::fs::read_to_string(marker.path()).expect("marker"),
        "HOST\n"
    );
    let climb = tar_of(&[("../../x", Regular, "x", 0o644)]);
    let e = sb.upload_tar("/work", climb.as_slice()).expect_err("climb");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // Download gives the same tree back.
    let mut buf = Vec::new();
    let n = sb.download_tar("/work", &mut buf).expect("download");
    let mut seen = Vec::new();
    for e in tar::Archive::new(buf.as_slice())
        .entries()
        .expect("entries")
    {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").display().to_string();
        let mut data = String::new();
        if e.header().entry_type() == Regular {
            std::io::Read::read_to_string(&mut e, &mut data).expect("read");
        }
        let link = e
            .link_name()
            .expect("link")
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        seen.push(format!(
            "{path} {:o} {data}{link}",
            e.header().mode().expect("mode")
        ));
    }
    assert_eq!(n as usize, seen.len());
    assert_eq!(
        seen,
        [
            "d 750 ",
            "d/f.txt 640 hello\n",
            "d/hard 640 hello\n",
            "d/rel 777 f.txt",
            "out 777 /tmp"
        ]
    );
    let e = sb
        .download_tar("/missing", Vec::new())
        .expect_err("missing dir");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn connect_reaches_a_port_inside_without_a_route() {
    if !privileged("connect_reaches_a_port_inside_without_a_route") {
        return;
    }
    let t = TestRuntime::new();
    t.python_layer();
    let mut spec = sqrx_core::SandboxSpec::new("conn");
    spec.layers = vec!["000-base".into(), "100-py".into()];
    let sb = t.rt.create(spec).expect("create");
    let e = sb
        .connect_tcp(8000, std::time::Duration::from_millis(200))
        .expect_err("nobody listens yet");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        matches!(e, SandboxError::PortClosed { port: 8000, .. }),
        "{e}"
    );
    out(
        &sb,
        "mkdir -p /srv && echo served-from-inside > /srv/index.txt && \
         cd /srv && python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut conn = loop {
        match sb.connect_tcp(8000, std::time::Duration::from_millis(200)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "server never came up: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    use std::io::{Read, Write};
    conn.write_all(b"GET /index.txt HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("response");
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
    assert!(resp.ends_with("served-from-inside\n"), "{resp}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = sb.connect(8000).await.expect("async connect");
        c.write_all(b"GET /index.txt HTTP/1.0\r\n\r\n")
            .await
            .expect("write");
        let mut body = Vec::new();
        c.read_to_end(&mut body).await.expect("read");
        assert!(String::from_utf8_lossy(&body).contains("served-from-inside"));
    });
}

#[test]
fn restore_through_identical_snapshots_keeps_the_sandbox() {
    if !privileged("restore_through_identical_snapshots_keeps_the_sandbox") {
        return;
    }
    // The sequence of issue 15: s1 and s2 are identical (empty) images, so the stack of s2
    // holds the same image twice; overlayfs refused that (ELOOP) and the failed restore
    // destroyed the sandbox.
    let t = TestRuntime::new();
    let mut sb = t.create("r1");
    sb.snapshot(Some("s1")).expect("s1");
    sb.restore("s1").expect("restore s1");
    sb.snapshot(Some("s2")).expect("s2");
    out(&sb, "echo three > /tmp/three");
    sb.snapshot(Some("s3")).expect("s3");
    sb.restore("s2")
        .expect("restore s2 (a stack with one image twice)");
    assert_eq!(
        out(&sb, "test -e /tmp/three && echo yes || echo no"),
        "no\n"
    );
    sb.restore("s3").expect("restore s3");
    assert_eq!(out(&sb, "cat /tmp/three"), "three\n");
    sb.restore("s1").expect("restore s1 again");
    assert!(t.rt.list().iter().any(|s| s.id() == "r1"));
}

#[test]
fn a_failed_restore_leaves_the_sandbox_and_its_files() {
    if !privileged("a_failed_restore_leaves_the_sandbox_and_its_files") {
        return;
    }
    let t = TestRuntime::new();
    let mut sb = t.create("keep");
    out(&sb, "echo before > /tmp/before");
    let snap = sb.snapshot(Some("bad")).expect("snapshot");
    // Corrupt the snapshot's image: the restore must fail and change nothing.
    let images = t.dir.path().join("sandboxes/keep/snapshots/images");
    for e in std::fs::read_dir(&images).expect("images").flatten() {
        std::fs::write(e.path(), b"not a squashfs image").expect("corrupt");
    }
    let _ = snap;
    out(&sb, "echo after > /tmp/after");
    let pid = sb.info().init_pid;
    let e = sb
        .restore("bad")
        .expect_err("a corrupt snapshot cannot be restored");
    assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");
    let sb = t.rt.get("keep").expect("the sandbox is still there");
    assert_eq!(sb.info().init_pid, pid, "its init was not touched");
    assert_eq!(out(&sb, "cat /tmp/before /tmp/after"), "before\nafter\n");
}

#[test]
fn owners_and_default_ports_follow_the_sandbox_under_its_id() {
    if !privileged("owners_and_default_ports_follow_the_sandbox_under_its_id") {
        return;
    }
    let t = TestRuntime::new();
    let mut spec = sqrx_core::SandboxSpec::new("own");
    spec.owner = Some("alice".into());
    spec.default_port = Some(8080);
    let sb = t.rt.create(spec).expect("create");
    assert_eq!(
        t.rt.owner_of("own").expect("owner").as_deref(),
        Some("alice")
    );
    assert_eq!(t.rt.default_port_of("own").expect("port"), Some(8080));
    // The state file is replaced (a new lifetime): still the same answers.
    let mut sb = sb;
    sb.set_timeout(std::time::Duration::from_secs(3600))
        .expect("timeout");
    assert_eq!(
        t.rt.owner_of("own").expect("owner").as_deref(),
        Some("alice")
    );
    // Destroyed, then made again under the same id by someone else: never the old answer.
    sb.destroy().expect("destroy");
    let gone = t.rt.owner_of("own").expect_err("destroyed");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    let mut spec = sqrx_core::SandboxSpec::new("own");
    spec.owner = Some("bob".into());
    t.rt.create(spec).expect("create again");
    assert_eq!(t.rt.owner_of("own").expect("owner").as_deref(), Some("bob"));
    assert_eq!(t.rt.default_port_of("own").expect("port"), None);
    // Ids are checked before any path is made of them.
    let bad = t.rt.owner_of("../own").expect_err("bad id");
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
}
