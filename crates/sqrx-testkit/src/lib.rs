//! Test helpers shared by sqrx's test suites. Never a dependency of shipped code.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod fuzz;
pub mod net;
pub mod s3;

/// Set by `.ci/run`: a missing privilege fails the test instead of skipping it.
pub const REQUIRE_PRIVILEGED_ENV: &str = "SQRX_REQUIRE_PRIVILEGED";

/// Can this process mount, create loop devices and device nodes? Returns `false` (after
/// printing why) when the test should skip; panics instead when `SQRX_REQUIRE_PRIVILEGED=1`.
pub fn privileged(test: &str) -> bool {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not running as root".to_string())
    } else if !Path::new("/dev/loop-control").exists() {
        Some("no /dev/loop-control".to_string())
    } else if !std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("squashfs")) {
        Some("kernel has no squashfs".to_string())
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) => {
            if std::env::var(REQUIRE_PRIVILEGED_ENV).as_deref() == Ok("1") {
                panic!("{test}: privileged test cannot run: {reason} ({REQUIRE_PRIVILEGED_ENV}=1)");
            }
            eprintln!("SKIP {test}: {reason}");
            false
        }
    }
}

/// A squashfs image loop-mounted read-only by the kernel; unmounted (and its loop device
/// released, `mount -o loop` sets autoclear) when dropped, also when the test panics.
pub struct LoopMount {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl LoopMount {
    /// `mount -t squashfs -o loop,ro IMAGE <tempdir>`.
    pub fn new(image: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("sqrx-test-mnt-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount {} failed: {}",
                image.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(LoopMount { dir, mounted: true })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Busy (a chrooted process still running): detach lazily so nothing leaks.
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(self.dir.path())
                    .status();
            }
            self.mounted = false;
        }
    }
}

/// Everything observable about one entry of a tree, for comparing a source with its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo`, `socket`.
    pub kind: &'static str,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in seconds (`None` where not compared).
    pub mtime: Option<i64>,
    /// File size, symlink target, or device major:minor.
    pub detail: String,
    /// sha256 of a regular file's content.
    pub content: Option<String>,
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Walk `root` (not following links) and record the facts of every entry by relative path.
/// The root itself is recorded as `"."` without its mtime.
pub fn tree_facts(root: &Path) -> BTreeMap<PathBuf, Facts> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
        let md = entry.metadata().unwrap_or_else(|e| panic!("stat: {e}"));
        let ft = md.file_type();
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel.to_path_buf()
        };
        let dev = || {
            format!(
                "{}:{}",
                nix::sys::stat::major(md.rdev()),
                nix::sys::stat::minor(md.rdev())
            )
        };
        let (kind, detail, content) = if ft.is_file() {
            (
                "file",
                md.len().to_string(),
                Some(sha256_file(entry.path())),
            )
        } else if ft.is_dir() {
            ("dir", String::new(), None)
        } else if ft.is_symlink() {
            let t = std::fs::read_link(entry.path()).unwrap_or_else(|e| panic!("readlink: {e}"));
            ("symlink", t.display().to_string(), None)
        } else if ft.is_char_device() {
            ("char", dev(), None)
        } else if ft.is_block_device() {
            ("block", dev(), None)
        } else if ft.is_fifo() {
            ("fifo", String::new(), None)
        } else {
            ("socket", String::new(), None)
        };
        let mtime = (rel != Path::new(".")).then(|| md.mtime());
        out.insert(
            rel,
            Facts {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime,
                detail,
                content,
            },
        );
    }
    out
}

/// Assert two trees are identical, listing every difference.
pub fn assert_same_tree(source: &Path, image: &Path) {
    let a = tree_facts(source);
    let b = tree_facts(image);
    let mut diffs = Vec::new();
    for (p, fa) in &a {
        match b.get(p) {
            None => diffs.push(format!("missing in image: {}", p.display())),
            Some(fb) if fa != fb => {
                diffs.push(format!("{}: source {fa:?} != image {fb:?}", p.display()))
            }
            Some(_) => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra in image: {}", p.display()));
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// Loop devices whose backing file path contains `needle` (to find leaks).
pub fn loop_devices_backed_by(needle: &str) -> Vec<String> {
    let Ok(out) = Command::new("losetup")
        .args(["-n", "-O", "NAME,BACK-FILE", "-l"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Deterministic pseudo-random bytes (incompressible enough to measure image growth).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Set the mtime of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Fill `root` with every kind of entry a layer must keep: files (empty, small, multi-block,
/// setuid/setgid), a 3 MB file and a hard link to it, directories (empty, sticky), symlinks
/// (relative, absolute, dangling), character devices (1:3 and the 0:0 overlay whiteout), a
/// block device, a fifo and a socket, odd owners and fixed mtimes. Needs root.
pub fn make_every_kind_tree(root: &Path) {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    use std::os::unix::fs::{PermissionsExt, symlink};
    let p = |rel: &str| root.join(rel);
    let chmod = |rel: &str, mode: u32| {
        std::fs::set_permissions(p(rel), std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {rel}: {e}"))
    };
    let w = |rel: &str, data: &[u8]| {
        std::fs::write(p(rel), data).unwrap_or_else(|e| panic!("write {rel}: {e}"))
    };
    for d in ["etc", "usr/bin", "empty", "sticky", "dev", "data/deep/er"] {
        std::fs::create_dir_all(p(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    w("etc/hello.txt", b"hello, layer\n");
    w("etc/empty-file", b"");
    w("usr/bin/tool", &noise(300_000, 1));
    w("usr/bin/suid", b"#!/bin/sh\necho suid\n");
    w("usr/bin/sgid", b"#!/bin/sh\necho sgid\n");
    w("data/big", &noise(3_000_000, 2));
    std::fs::hard_link(p("data/big"), p("data/big-link")).unwrap_or_else(|e| panic!("link: {e}"));
    w("data/deep/er/leaf", b"leaf");
    chmod("usr/bin/tool", 0o755);
    chmod("usr/bin/suid", 0o4755);
    chmod("usr/bin/sgid", 0o2711);
    chmod("sticky", 0o1777);
    chmod("etc/hello.txt", 0o640);
    symlink("../etc/hello.txt", p("usr/hello-rel")).unwrap_or_else(|e| panic!("symlink: {e}"));
    symlink("/etc/hello.txt", p("usr/hello-abs")).unwrap_or_else(|e| panic!("symlink: {e}"));
    symlink("nowhere/at/all", p("dangling")).unwrap_or_else(|e| panic!("symlink: {e}"));
    let node = |rel: &str, kind: SFlag, major, minor| {
        mknod(
            &p(rel),
            kind,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        )
        .unwrap_or_else(|e| panic!("mknod {rel}: {e}"))
    };
    node("dev/null", SFlag::S_IFCHR, 1, 3);
    node("dev/whiteout", SFlag::S_IFCHR, 0, 0);
    node("dev/loopish", SFlag::S_IFBLK, 7, 200);
    nix::unistd::mkfifo(&p("dev/fifo"), Mode::from_bits_truncate(0o644))
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    let sock = std::os::unix::net::UnixListener::bind(p("dev/sock"))
        .unwrap_or_else(|e| panic!("bind: {e}"));
    drop(sock);
    let own = |rel: &str, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(p(rel), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {rel}: {e}"))
    };
    own("etc/hello.txt", 1234, 5678);
    own("usr/hello-rel", 42, 43);
    own("data/deep", 65534, 65534);
    // Set mtimes last, deepest first, so creating children does not bump them.
    let mut all: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_path_buf())
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        set_mtime(path, 1_600_000_000 + i as i64 * 3_601);
    }
}
