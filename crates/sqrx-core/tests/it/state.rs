//! Sandbox state end to end as root: snapshot/restore chains, activate, clone, big files.

use std::path::Path;

use sqrx_core::{ErrorKind, LayerName, Runtime, RuntimeConfig, Sandbox, SandboxError};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, sh};

fn out(sb: &Sandbox, cmd: &str) -> String {
    let r = sh(sb, cmd);
    assert_eq!(
        r.exit_code,
        Some(0),
        "{cmd}: {}{}",
        r.stdout_text(),
        r.stderr_text()
    );
    r.stdout_text()
}

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
