//! Black-box tests of the `sqrx` command line: real images, real loop mounts, real chroots.

use std::path::Path;
use std::process::{Command, Output};

use sqrx_testkit::{LoopMount, assert_same_tree, make_every_kind_tree, privileged};

struct Sqrx {
    data: tempfile::TempDir,
}

impl Sqrx {
    fn new() -> Self {
        Sqrx {
            data: tempfile::Builder::new()
                .prefix("sqrx-test-cli-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sqrx"))
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .env_remove("SQRX_LOG")
            .output()
            .expect("run sqrx")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sqrx {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a command that must fail with exactly one `error:` line on stderr; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "sqrx {args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one line on stderr for {args:?}, got: {stderr}"
        );
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        lines[0].to_string()
    }

    fn image(&self, name: &str) -> std::path::PathBuf {
        self.data.path().join("layers").join(format!("{name}.sqfs"))
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
}

#[test]
fn build_mount_and_compare_every_kind_of_entry() {
    if !privileged("build_mount_and_compare_every_kind_of_entry") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    make_every_kind_tree(src.path());
    let sqrx = Sqrx::new();
    let src_str = src.path().to_str().expect("utf-8 path");
    let report = json(&sqrx.ok(&["layer", "build", src_str, "100-every", "--json"]));
    assert_eq!(report["hard_links"], 1);
    // ~3.3 MB of incompressible data; the 3 MB hard link must not add another 3 MB.
    let size = report["layer"]["size"].as_u64().expect("size");
    assert!(
        (3_200_000..4_000_000).contains(&size),
        "image is {size} bytes"
    );

    let mount = LoopMount::new(&sqrx.image("100-every")).expect("mount");
    assert_same_tree(src.path(), mount.path());
}

#[test]
fn xattrs_produce_the_documented_warning() {
    let src = tempfile::tempdir().expect("tempdir");
    let f = src.path().join("tagged");
    std::fs::write(&f, b"x").expect("write");
    let set = Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'user.sqrx', b'1')",
        ])
        .arg(&f)
        .status()
        .expect("python3");
    if !set.success() {
        eprintln!("SKIP xattrs_produce_the_documented_warning: no user xattrs here");
        return;
    }
    let sqrx = Sqrx::new();
    let out = sqrx.run(&[
        "layer",
        "build",
        src.path().to_str().expect("utf-8"),
        "100-x",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 1 path(s) had extended attributes; layers do not store xattrs"),
        "{stderr}"
    );
}

fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .expect("chroot")
}

#[test]
fn python_from_host_runs_in_a_chroot() {
    if !privileged("python_from_host_runs_in_a_chroot") {
        return;
    }
    if !Path::new("/usr/bin/python3").exists() || !Path::new("/usr/lib/python3.11").is_dir() {
        panic!("this test needs Debian's python3.11 (apt-get install python3.11)");
    }
    let sqrx = Sqrx::new();
    sqrx.ok(&[
        "layer",
        "from-host",
        "100-py",
        "/usr/bin/python3",
        "/usr/lib/python3.11",
    ]);
    sqrx.ok(&["layer", "verify", "100-py"]);
    let mount = LoopMount::new(&sqrx.image("100-py")).expect("mount");
    let out = chroot(mount.path(), &["python3", "-c", "print(42)"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "42\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // extension modules (lib-dynload) found their libraries too
    let out = chroot(
        mount.path(),
        &[
            "python3",
            "-c",
            "import ssl, zlib, json; print(zlib.crc32(b'sqrx'))",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bootstrap_makes_a_working_base_layer() {
    if !privileged("bootstrap_makes_a_working_base_layer") {
        return;
    }
    let sqrx = Sqrx::new();
    sqrx.ok(&["layer", "bootstrap"]);
    let ls = json(&sqrx.ok(&["layer", "ls", "--json"]));
    assert_eq!(ls[0]["name"], "000-base");
    assert_eq!(ls[0]["provenance"]["type"], "bootstrap");
    assert_eq!(ls[0]["provenance"]["preset"], "host");
    let mount = LoopMount::new(&sqrx.image("000-base")).expect("mount");
    let out = chroot(mount.path(), &["/bin/sh", "-c", "echo ok; ls /; id"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok\n"), "{stdout}");
    for dir in ["bin", "etc", "proc", "tmp", "usr"] {
        assert!(
            stdout.lines().any(|l| l == dir),
            "{dir} missing from ls /: {stdout}"
        );
    }
    assert!(stdout.contains("uid=0(root) gid=0(root)"), "{stdout}");
    // a second bootstrap refuses to overwrite; --force replaces
    assert!(
        sqrx.fails(&["layer", "bootstrap"])
            .contains("already exists")
    );
    sqrx.ok(&["layer", "bootstrap", "--force"]);
}

#[test]
fn json_outputs_have_the_documented_fields() {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("a"), "hello ".repeat(1000)).expect("write");
    let sqrx = Sqrx::new();
    let report = json(&sqrx.ok(&[
        "layer",
        "build",
        src.path().to_str().expect("utf-8"),
        "100-a",
        "--json",
        "--compression",
        "gzip",
    ]));
    for k in [
        "layer",
        "entries",
        "file_bytes",
        "hard_links",
        "xattrs_dropped",
        "duration_ms",
    ] {
        assert!(report.get(k).is_some(), "report lacks {k}: {report}");
    }
    let ls = json(&sqrx.ok(&["layer", "ls", "--json"]));
    let layer = &ls[0];
    for k in [
        "name",
        "digest",
        "size",
        "created",
        "provenance",
        "compression",
        "xattrs_dropped",
    ] {
        assert!(layer.get(k).is_some(), "layer lacks {k}: {layer}");
    }
    assert_eq!(layer["compression"], "gzip");
    assert_eq!(layer["provenance"]["type"], "directory");
    let inspect = json(&sqrx.ok(&["layer", "inspect", "100-a", "--json"]));
    assert_eq!(inspect["files"], 1);
    assert_eq!(inspect["uncompressed_bytes"], 6000);
    assert_eq!(inspect["compression"], "gzip");
    let verify = json(&sqrx.ok(&["layer", "verify", "100-a", "--json"]));
    assert_eq!(verify["bytes_read"], 6000);
    assert_eq!(verify["digest"], layer["digest"]);
    assert!(sqrx.ok(&["layer", "rm", "100-a"]).contains("removed 100-a"));
    assert_eq!(
        json(&sqrx.ok(&["layer", "ls", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let sqrx = Sqrx::new();
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("a"), sqrx_testkit::noise(100_000, 8)).expect("write");
    let s = src.path().to_str().expect("utf-8");

    assert!(
        sqrx.fails(&["layer", "build", "/no/such/dir", "100-a"])
            .contains("does not exist")
    );
    assert!(
        sqrx.fails(&["layer", "build", s, "Base"])
            .contains("invalid layer name")
    );
    assert!(
        sqrx.fails(&["layer", "build", s, "100-a", "--compression", "brotli"])
            .contains("unknown compression")
    );
    sqrx.ok(&["layer", "build", s, "100-a"]);
    assert!(
        sqrx.fails(&["layer", "build", s, "100-a"])
            .contains("already exists")
    );
    sqrx.ok(&["layer", "build", s, "100-a", "--force"]);
    assert!(
        sqrx.fails(&["layer", "inspect", "100-zzz"])
            .contains("not found")
    );
    assert!(
        sqrx.fails(&["layer", "rm", "100-zzz"])
            .contains("not found")
    );
    assert!(
        sqrx.fails(&["layer", "from-host", "100-h", "/no/such/program"])
            .contains("does not exist")
    );

    // truncated, corrupted and random images
    let image = sqrx.image("100-a");
    let good = std::fs::read(&image).expect("read");
    std::fs::write(&image, &good[..good.len() / 3]).expect("truncate");
    assert!(
        sqrx.fails(&["layer", "inspect", "100-a"])
            .contains("corrupt squashfs image")
    );
    assert!(
        sqrx.fails(&["layer", "verify", "100-a"])
            .contains("digest mismatch")
    );
    std::fs::write(&image, sqrx_testkit::noise(good.len(), 4)).expect("random");
    assert!(
        sqrx.fails(&["layer", "inspect", "100-a"])
            .contains("bad magic")
    );
    let mut flipped = good.clone();
    flipped[0] = b'x';
    std::fs::write(&image, &flipped).expect("flip");
    assert!(
        sqrx.fails(&["layer", "inspect", "100-a"])
            .contains("corrupt")
    );

    // a tar with an escaping path, through a file and through stdin
    let mut evil = tar::Header::new_gnu();
    evil.set_size(4);
    evil.set_mode(0o644);
    evil.set_uid(0);
    evil.set_gid(0);
    evil.set_mtime(0);
    evil.as_gnu_mut().expect("gnu").name[..9].copy_from_slice(b"../escape");
    evil.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&evil, &b"evil"[..]).expect("append");
    let tar_bytes = b.into_inner().expect("tar");
    let tar_path = src.path().join("evil.tar");
    std::fs::write(&tar_path, &tar_bytes).expect("write tar");
    let line = sqrx.fails(&[
        "layer",
        "import",
        tar_path.to_str().expect("utf-8"),
        "100-evil",
    ]);
    assert!(line.contains("escapes the layer root"), "{line}");
    assert!(
        sqrx.fails(&["layer", "import", "/no/such.tar", "100-evil"])
            .contains("cannot open")
    );
}

#[test]
fn import_reads_tar_from_stdin_and_squashfs_images() {
    use std::io::Write;
    let sqrx = Sqrx::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "etc/motd", &b"hi\n"[..])
        .expect("append");
    let tar = b.into_inner().expect("tar");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqrx"))
        .arg("--data-dir")
        .arg(sqrx.data.path())
        .args(["layer", "import", "-", "100-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar)
        .expect("write stdin");
    assert!(child.wait_with_output().expect("wait").status.success());
    let inspect = json(&sqrx.ok(&["layer", "inspect", "100-stdin", "--json"]));
    assert_eq!(inspect["files"], 1);
    // an existing squashfs image is imported as is (after verification)
    let image = sqrx.image("100-stdin");
    let copy = sqrx.data.path().join("copy.sqfs");
    std::fs::copy(&image, &copy).expect("copy");
    sqrx.ok(&["layer", "import", copy.to_str().expect("utf-8"), "200-copy"]);
    let a = json(&sqrx.ok(&["layer", "ls", "--json"]));
    assert_eq!(a[0]["digest"], a[1]["digest"]);
}
