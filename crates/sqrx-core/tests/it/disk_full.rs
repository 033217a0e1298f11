//! A full disk: snapshot, layer build and upload fail with `InsufficientStorage`, leave
//! nothing half-written, and the sandbox keeps working; a workload that fills its upper gets
//! ENOSPC and the sandbox keeps working too. "The disk" is a small tmpfs mounted over part of
//! the data directory (unmounted by a guard, also when the test fails).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use sqrx_core::{ErrorKind, LayerName, LayerStore, SandboxSpec};
use sqrx_testkit::privileged;

use crate::sandbox::{TestRuntime, out, sh};

/// A tmpfs of `mib` MiB mounted at a directory; unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        nix::mount::mount(
            Some("sqrx-test-full"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={mib}m").as_str()),
        )
        .expect("mount the small tmpfs");
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a loop device may still hold an image on it until its sandbox is destroyed.
        let _ = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn a_snapshot_on_a_full_disk_fails_cleanly_and_the_sandbox_keeps_working() {
    if !privileged("a_snapshot_on_a_full_disk_fails_cleanly_and_the_sandbox_keeps_working") {
        return;
    }
    let t = TestRuntime::new();
    let mut sb = t.create("full-snap");
    // 24 MiB that do not compress, on a 12 MiB disk for snapshots.
    out(
        &sb,
        "mkdir -p /work && head -c 25165824 /dev/urandom > /work/big && echo small > /work/small",
    );
    let sum = out(&sb, "md5sum /work/big");
    let snapshots = t.dir.path().join("sandboxes/full-snap/snapshots");
    let disk = SmallDisk::mount(&snapshots, 12);

    let e = sb
        .snapshot(Some("big"))
        .expect_err("the image does not fit");
    assert_eq!(e.kind(), ErrorKind::InsufficientStorage, "{e}");
    assert!(sb.snapshots().expect("snapshots").is_empty(), "no label");
    assert_eq!(
        files(&snapshots),
        Vec::<PathBuf>::new(),
        "no image, no temporary"
    );
    assert!(!sb.is_paused(), "thawed");
    assert_eq!(sb.info().status, "running");
    assert_eq!(out(&sb, "md5sum /work/big"), sum, "the files are intact");
    assert!(
        !t.dir
            .path()
            .join("sandboxes/full-snap/frozen-by-snapshot")
            .exists()
    );

    // Space freed (the big file deleted): the next snapshot works and restores.
    out(&sb, "rm /work/big");
    sb.snapshot(Some("small")).expect("a snapshot that fits");
    out(&sb, "echo later > /work/small");
    sb.restore("small").expect("restore");
    assert_eq!(out(&sb, "cat /work/small; ls /work"), "small\nsmall\n");
    drop(disk);
}

#[test]
fn a_layer_build_on_a_full_disk_fails_cleanly() {
    if !privileged("a_layer_build_on_a_full_disk_fails_cleanly") {
        return;
    }
    let data = tempfile::Builder::new()
        .prefix("sqrx-test-full-")
        .tempdir()
        .expect("tempdir");
    let disk = SmallDisk::mount(data.path(), 8);
    let store = LayerStore::open(data.path()).expect("store");
    let src = tempfile::tempdir().expect("source");
    std::fs::write(src.path().join("big"), sqrx_testkit::noise(16 << 20, 7)).expect("big");
    let name = LayerName::new("200-big").expect("name");
    let e = store
        .build_from_dir(&name, src.path(), &Default::default())
        .expect_err("the image does not fit");
    assert_eq!(e.kind(), ErrorKind::InsufficientStorage, "{e}");
    assert!(!store.contains(&name), "no layer");
    assert!(store.list().expect("list").is_empty());
    assert_eq!(
        files(data.path()),
        Vec::<PathBuf>::new(),
        "no partial image"
    );

    let small = tempfile::tempdir().expect("source");
    std::fs::write(small.path().join("hello"), "hello\n").expect("hello");
    let name = LayerName::new("200-small").expect("name");
    store
        .build_from_dir(&name, small.path(), &Default::default())
        .expect("a layer that fits");
    store.verify(&name).expect("verify");
    drop(disk);
}

#[test]
fn a_full_upper_fails_uploads_cleanly_and_gives_the_workload_enospc() {
    if !privileged("a_full_upper_fails_uploads_cleanly_and_gives_the_workload_enospc") {
        return;
    }
    let t = TestRuntime::new();
    let mut spec = SandboxSpec::new("full-upper");
    spec.upper_mb = 8;
    let sb = t.rt.create(spec).expect("create");
    sb.write_file("/work/keep", b"kept\n", 0o644)
        .expect("a small file");

    // Upload of a file larger than the upper: refused, nothing of it left, the old file kept.
    let big = sqrx_testkit::noise(12 << 20, 3);
    let e = sb
        .write_file("/work/keep", &big, 0o644)
        .expect_err("too big");
    assert_eq!(e.kind(), ErrorKind::InsufficientStorage, "{e}");
    assert_eq!(sb.read_file("/work/keep").expect("read"), b"kept\n");
    assert_eq!(out(&sb, "ls -A /work"), "keep\n", "no temporary left");

    // An archive with a file that does not fit: the file cut short is removed.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(big.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "huge", big.as_slice())
        .expect("tar");
    let archive = tar.into_inner().expect("tar");
    let e = sb
        .upload_tar("/work", archive.as_slice())
        .expect_err("too big");
    assert_eq!(e.kind(), ErrorKind::InsufficientStorage, "{e}");
    assert_eq!(out(&sb, "ls -A /work"), "keep\n", "no partial file");

    // The workload itself gets ENOSPC and the sandbox goes on.
    let r = sh(&sb, "head -c 16777216 /dev/zero > /work/fill");
    assert_ne!(r.exit_code, Some(0));
    assert!(
        r.stderr_text().contains("No space left on device"),
        "{}",
        r.stderr_text()
    );
    assert_eq!(out(&sb, "echo alive"), "alive\n");
    out(&sb, "rm /work/fill");
    sb.write_file("/work/after", b"fits\n", 0o644)
        .expect("a write after space was freed");
    assert_eq!(out(&sb, "cat /work/after /work/keep"), "fits\nkept\n");
    sb.snapshot(Some("after")).expect("snapshot");
}
