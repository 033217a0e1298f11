//! The default base layer `000-base`, made offline from the host's own programs or with
//! `debootstrap`, and the E2B base image's additions `010-e2b` made offline from the host.

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
    /// What E2B's `base` image has on top of `000-base`, as the layer `010-e2b`: a user `user`
    /// (uid 1000, home `/home/user`) with passwordless `sudo`, and `python3` with its standard
    /// library, copied from the host. Offline. Sandboxes on it need
    /// [`crate::SandboxSpec::setuid`] for `sudo`.
    E2b,
}

impl BootstrapPreset {
    /// The preset's name as recorded in the layer's provenance.
    pub fn name(&self) -> &'static str {
        match self {
            BootstrapPreset::Host => "host",
            BootstrapPreset::Debian { .. } => "debian",
            BootstrapPreset::E2b => "e2b",
        }
    }

    /// The layer the preset makes: [`crate::layer::BASE_LAYER`] or [`E2B_LAYER`].
    pub fn layer_name(&self) -> &'static str {
        match self {
            BootstrapPreset::E2b => E2B_LAYER,
            _ => super::BASE_LAYER,
        }
    }
}

/// The layer of the e2b preset, stacked on `000-base`.
pub const E2B_LAYER: &str = "010-e2b";

/// The e2b preset's user: name, uid (= gid) and home.
pub const E2B_USER: (&str, u32, &str) = ("user", 1000, "/home/user");

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
    owned_dir(tree, path, mode, 0, mtime);
}

fn owned_dir(tree: &mut Tree, path: &str, mode: u16, owner: u32, mtime: u32) {
    let node = Node {
        header: Header {
            mode,
            uid: owner,
            gid: owner,
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

/// Where Debian keeps PAM modules and sudo's plugins, per architecture.
const PAM_PERMIT: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/security/pam_permit.so",
    "/lib/x86_64-linux-gnu/security/pam_permit.so",
    "/usr/lib/aarch64-linux-gnu/security/pam_permit.so",
    "/lib/aarch64-linux-gnu/security/pam_permit.so",
    "/usr/lib64/security/pam_permit.so",
    "/usr/lib/security/pam_permit.so",
];

/// The e2b preset's tree: the user, `sudo` (setuid root, with a sudoers file that lets the
/// `sudo` group run anything without a password and a PAM stack that permits), `python3`.
pub(crate) fn e2b_tree() -> Result<(Tree, u64), LayerError> {
    let sudo = find_program("sudo").ok_or(LayerError::PresetProgramMissing {
        program: "sudo",
        package: "sudo",
    })?;
    let python = find_program("python3").ok_or(LayerError::PresetProgramMissing {
        program: "python3",
        package: "python3",
    })?;
    let stdlib = std::fs::canonicalize(&python)
        .ok()
        .and_then(|real| real.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|name| Path::new("/usr/lib").join(name))
        .filter(|dir| dir.join("os.py").is_file())
        .ok_or(LayerError::PresetProgramMissing {
            program: "python3's standard library",
            package: "python3",
        })?;
    let mut c = HostCollector::new();
    c.add(&sudo)?;
    for plugins in ["/usr/libexec/sudo", "/usr/lib/sudo"] {
        if Path::new(plugins).is_dir() {
            c.add(Path::new(plugins))?;
        }
    }
    if let Some(permit) = PAM_PERMIT.iter().find(|p| Path::new(p).is_file()) {
        c.add(Path::new(permit))?;
    }
    c.add(&python)?;
    c.add(&stdlib)?;
    let mut tree = c.tree;
    let now = clamp_time(chrono::Utc::now().timestamp());
    let (user, uid, home) = E2B_USER;
    owned_dir(&mut tree, home, 0o755, uid, now);
    text_file(
        &mut tree,
        "/etc/passwd",
        0o644,
        &format!(
            "root:x:0:0:root:/root:/bin/bash\n\
             {user}:x:{uid}:{uid}::{home}:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        now,
    );
    text_file(
        &mut tree,
        "/etc/group",
        0o644,
        &format!("root:x:0:\nsudo:x:27:{user}\n{user}:x:{uid}:\nnogroup:x:65534:\n"),
        now,
    );
    text_file(
        &mut tree,
        "/etc/sudoers",
        0o440,
        "Defaults env_reset\n\
         Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
         Defaults !syslog, !lecture\n\
         root ALL=(ALL:ALL) ALL\n\
         %sudo ALL=(ALL:ALL) NOPASSWD: ALL\n",
        now,
    );
    let pam = "auth sufficient pam_permit.so\naccount required pam_permit.so\n\
               session required pam_permit.so\n";
    text_file(&mut tree, "/etc/pam.d/sudo", 0o644, pam, now);
    text_file(&mut tree, "/etc/pam.d/other", 0o644, pam, now);
    dir(&mut tree, "/var/lib/sudo", 0o700, now);
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
