//! The default base layer `000-base`, made offline from the host's own programs or with
//! `debootstrap`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LayerError;
use super::from_host::HostCollector;
use super::tree::{FileData, Header, Node, NodeKind, Tree, clamp_time};

/// How `bootstrap` makes the base layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapPreset {
    /// The host's shell, coreutils and friends with their shared-library closure. Offline.
    Host,
    /// A Debian `minbase` root made by `debootstrap` (needs it installed and a package mirror).
    Debian {
        /// The release, e.g. `bookworm`.
        suite: String,
        /// A mirror URL; `None` takes debootstrap's default.
        mirror: Option<String>,
    },
}

impl BootstrapPreset {
    /// The preset's name as recorded in the layer's provenance.
    pub fn name(&self) -> &'static str {
        match self {
            BootstrapPreset::Host => "host",
            BootstrapPreset::Debian { .. } => "debian",
        }
    }
}

/// Programs the host preset copies when the host has them. `sh` is required.
pub const HOST_PROGRAMS: &[&str] = &[
    "sh",
    "bash",
    "env",
    "ps",
    "sleep",
    "cat",
    "ls",
    "mkdir",
    "rm",
    "rmdir",
    "id",
    "hostname",
    "echo",
    "true",
    "false",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "touch",
    "head",
    "tail",
    "grep",
    "sed",
    "awk",
    "sort",
    "uniq",
    "wc",
    "tr",
    "cut",
    "find",
    "xargs",
    "date",
    "uname",
    "pwd",
    "dirname",
    "basename",
    "readlink",
    "realpath",
    "stat",
    "du",
    "df",
    "tee",
    "test",
    "printf",
    "kill",
    "mktemp",
    "tar",
    "gzip",
    "which",
    "whoami",
    "nproc",
    "seq",
    "yes",
    "timeout",
    "md5sum",
    "sha256sum",
    "base64",
    "od",
    "expr",
    "sync",
    "mount",
    "umount",
    "diff",
    "cmp",
    "less",
    "more",
    "nice",
    "nohup",
    "pgrep",
    "pkill",
    "top",
    "free",
    "uptime",
    "stty",
    "busybox",
];

const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Find `program` in the usual binary directories.
fn find_program(program: &str) -> Option<PathBuf> {
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

fn text_file(tree: &mut Tree, path: &str, mode: u16, text: &str, mtime: u32) {
    let bytes: Arc<[u8]> = Arc::from(text.as_bytes());
    let size = bytes.len() as u64;
    let node = Node {
        header: Header {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        },
        kind: NodeKind::File {
            data: FileData::Bytes(bytes),
            size,
        },
    };
    tree.insert(Path::new(path), node, mtime);
}

fn dir(tree: &mut Tree, path: &str, mode: u16, mtime: u32) {
    let node = Node {
        header: Header {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        },
        kind: NodeKind::Dir,
    };
    tree.insert(Path::new(path), node, mtime);
}

/// The host preset's tree: programs and libraries, a minimal `/etc`, and the mount points a
/// sandbox needs.
pub(crate) fn host_tree() -> Result<(Tree, u64), LayerError> {
    let Some(sh) = find_program("sh") else {
        return Err(LayerError::NoShell {
            looked_for: BIN_DIRS.join(", "),
        });
    };
    let mut c = HostCollector::new();
    c.add(&sh)?;
    for program in HOST_PROGRAMS.iter().skip(1) {
        match find_program(program) {
            Some(p) => c.add(&p)?,
            None => tracing::debug!(program, "not on this host; left out of the base layer"),
        }
    }
    // Merged-/usr hosts link /bin, /lib, ... into /usr; keep those links so /bin/sh resolves.
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        if std::fs::symlink_metadata(top).is_ok_and(|m| m.file_type().is_symlink()) {
            c.add_path_only(Path::new(top))?;
        }
    }
    let mut tree = c.tree;
    let now = clamp_time(chrono::Utc::now().timestamp());
    for (path, mode) in [
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/dev", 0o755),
        ("/tmp", 0o1777),
        ("/var/tmp", 0o1777),
        ("/run", 0o755),
        ("/root", 0o700),
        ("/home", 0o755),
        ("/etc", 0o755),
        ("/mnt", 0o755),
        ("/usr/local/bin", 0o755),
        ("/workspace", 0o755),
    ] {
        if !matches!(
            tree.get(Path::new(path)).map(|n| &n.kind),
            Some(NodeKind::Symlink(_))
        ) {
            dir(&mut tree, path, mode, now);
        }
    }
    text_file(
        &mut tree,
        "/etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        now,
    );
    text_file(
        &mut tree,
        "/etc/group",
        0o644,
        "root:x:0:\nnogroup:x:65534:\n",
        now,
    );
    text_file(&mut tree, "/etc/hostname", 0o644, "sqrx\n", now);
    text_file(
        &mut tree,
        "/etc/hosts",
        0o644,
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        now,
    );
    text_file(
        &mut tree,
        "/etc/nsswitch.conf",
        0o644,
        "passwd: files\ngroup: files\nhosts: files dns\n",
        now,
    );
    text_file(
        &mut tree,
        "/etc/os-release",
        0o644,
        "NAME=\"sqrx base\"\nID=sqrx\nPRETTY_NAME=\"sqrx base (host programs)\"\n",
        now,
    );
    // The host's loader cache: the libraries were copied to the same paths, so the dynamic
    // loader finds each in one lookup instead of probing every search directory (and its
    // hwcaps subdirectories) through overlayfs on every exec.
    for conf in ["/etc/ld.so.cache", "/etc/ld.so.conf"] {
        if let Ok(md) = std::fs::metadata(conf)
            && md.is_file()
        {
            let node = Node {
                header: Header::from_metadata(&md),
                kind: NodeKind::File {
                    data: FileData::Path(conf.into()),
                    size: md.len(),
                },
            };
            tree.insert(Path::new(conf), node, now);
        }
    }
    let bytes = tree.file_bytes();
    Ok((tree, bytes))
}

/// Run debootstrap into `target`.
pub(crate) fn debootstrap(
    suite: &str,
    mirror: Option<&str>,
    target: &Path,
) -> Result<(), LayerError> {
    let program = [
        "/usr/sbin/debootstrap",
        "/sbin/debootstrap",
        "/usr/bin/debootstrap",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .ok_or(LayerError::NoDebootstrap)?;
    let mut cmd = std::process::Command::new(program);
    cmd.arg("--variant=minbase").arg(suite).arg(target);
    if let Some(m) = mirror {
        cmd.arg(m);
    }
    let out = cmd.output().map_err(LayerError::read(program))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(LayerError::Debootstrap {
            status: out.status.to_string(),
            stderr: tail,
        });
    }
    Ok(())
}
