//! Host-side access to a sandbox's files, resolved safely inside its root.
//!
//! Every path is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS)`
//! relative to the sandbox's root (`/proc/<init>/root`): `..` and absolute symlinks stay inside
//! the sandbox, nothing crosses onto another mount (its `/proc`, `/sys`, `/dev`: refused as
//! invalid paths), and `/proc` magic links cannot reach host files. Only regular files are
//! read or written, opened non-blocking (a FIFO or device at the path is refused, never waited
//! on). Writes never follow a symlink in the last component, and create files as the sandbox's
//! root would (owned by its uid 0, not the host's). Works while the sandbox is paused.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::Serialize;

use super::SandboxError;
use super::runtime::Sandbox;

/// One entry of a sandbox's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// The entry's name.
    pub name: String,
    /// Its absolute path inside the sandbox.
    pub path: String,
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub kind: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<Utc>,
    /// The owner's uid as the sandbox sees it (65534 for ids it does not map).
    pub uid: u32,
    /// The group's gid as the sandbox sees it.
    pub gid: u32,
}

fn kind_of(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "dir",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFCHR => "char",
        SFlag::S_IFBLK => "block",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFSOCK => "socket",
        _ => "file",
    }
}

fn info(sb: &Sandbox, name: &str, path: &str, st: &FileStat) -> FileInfo {
    FileInfo {
        uid: sb.sandbox_id(st.st_uid),
        gid: sb.sandbox_id(st.st_gid),
        name: name.to_string(),
        path: path.to_string(),
        kind: kind_of(st),
        size: st.st_size.max(0) as u64,
        mode: st.st_mode & 0o7777,
        mtime: DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32).unwrap_or_default(),
    }
}

/// Split a sandbox path into its normal components; refuses relative paths.
pub(super) fn components(path: &str) -> Result<Vec<String>, SandboxError> {
    let invalid = |reason: &str| SandboxError::Invalid {
        field: "path",
        reason: format!("{path:?}: {reason}"),
    };
    if !path.starts_with('/') {
        return Err(invalid("must be absolute"));
    }
    if path.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    if path.len() > 4096 {
        return Err(invalid("longer than 4096 bytes"));
    }
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) if n.len() > 255 => {
                return Err(invalid("a component is longer than 255 bytes"));
            }
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::Prefix(_) => return Err(invalid("unsupported prefix")),
        }
    }
    Ok(out)
}

pub(super) fn joined(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

impl Sandbox {
    pub(super) fn file_err(
        &self,
        op: &'static str,
        path: &str,
    ) -> impl FnOnce(nix::errno::Errno) -> SandboxError {
        let path = PathBuf::from(path);
        move |e| SandboxError::Io {
            op,
            path,
            source: e.into(),
        }
    }

    /// While alive, files this thread creates belong to the sandbox's root (its host id range's
    /// first id); a sandbox that runs as host root needs nothing.
    pub(super) fn as_sandbox_root(&self) -> Result<Option<crate::sys::idmap::FsIds>, SandboxError> {
        let (uid, gid) = self.files_owner.unwrap_or((0, 0));
        let (uid, gid) = match self.state.ids {
            Some(ids) => (ids.base + uid, ids.base + gid),
            None if (uid, gid) == (0, 0) => return Ok(None),
            None => (uid, gid),
        };
        crate::sys::idmap::act_as_ids(uid, gid)
            .map(Some)
            .map_err(|source| SandboxError::Io {
                op: "act as the root of",
                path: PathBuf::from(self.id()),
                source,
            })
    }

    /// The sandbox's id for a host id seen through its root (ids outside its range show as
    /// `nobody`, 65534, as they do inside).
    pub(super) fn sandbox_id(&self, host: u32) -> u32 {
        match self.state.ids {
            None => host,
            Some(r) if host >= r.base && host - r.base < super::IdRange::COUNT => host - r.base,
            Some(_) => 65534,
        }
    }

    /// The host id for the sandbox's id `id` (`None` when it is outside the mapped range).
    pub(super) fn host_id(&self, id: u32) -> Option<u32> {
        match self.state.ids {
            None => Some(id),
            Some(r) if id < super::IdRange::COUNT => Some(r.base + id),
            Some(_) => None,
        }
    }

    /// The sandbox's own `/etc/passwd` and `/etc/group` (empty where missing or unreadable).
    pub fn accounts(&self) -> crate::accounts::Accounts {
        let read = |path: &str| {
            self.read_file(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        crate::accounts::Accounts {
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
        }
    }

    /// A user of the sandbox's own `/etc/passwd` (a name or a numeric uid).
    pub fn account(&self, user: &str) -> Result<crate::accounts::Account, SandboxError> {
        self.accounts()
            .resolve(user)
            .ok_or_else(|| SandboxError::UserNotFound {
                id: self.id().to_string(),
                user: user.to_string(),
            })
    }

    /// This sandbox, with the files and directories that writes through the returned handle
    /// create ([`Sandbox::write_file`], [`Sandbox::mkdir`] and the parents they make) owned by
    /// `account` instead of the sandbox's root. Access checks stay the root's.
    pub fn files_owned_by(&self, account: &crate::accounts::Account) -> Sandbox {
        let mut sb = self.clone();
        sb.files_owner = (account.uid < super::IdRange::COUNT
            && account.gid < super::IdRange::COUNT)
            .then_some((account.uid, account.gid));
        sb
    }

    pub(super) fn root(&self) -> Result<OwnedFd, SandboxError> {
        let root = format!("/proc/{}/root", self.state.init_pid);
        if !self.state.init_alive() {
            return Err(SandboxError::Dead {
                id: self.id().to_string(),
            });
        }
        nix::fcntl::open(
            root.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SandboxError::Io {
            op: "open the root of",
            path: root.into(),
            source: e.into(),
        })
    }

    /// Open `parts` inside the root with safe resolution.
    pub(super) fn open_in(
        &self,
        root: &OwnedFd,
        parts: &[String],
        flags: OFlag,
        op: &'static str,
    ) -> Result<OwnedFd, SandboxError> {
        let path = joined(parts);
        let mut resolve = ResolveFlag::RESOLVE_IN_ROOT
            | ResolveFlag::RESOLVE_NO_XDEV
            | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if crate::weaken::off("files") {
            resolve -= ResolveFlag::RESOLVE_NO_XDEV;
        }
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve);
        openat2(root.as_fd(), path.as_str(), how).map_err(|e| match e {
            nix::errno::Errno::EXDEV => SandboxError::Invalid {
                field: "path",
                reason: format!(
                    "{path} is not on the sandbox's own filesystem (/proc, /sys and /dev are not reachable through the files API)"
                ),
            },
            e => self.file_err(op, &path)(e),
        })
    }

    /// Open the regular file `name` in `dir` without following symlinks or crossing mounts,
    /// non-blocking; anything else there (FIFO, device, socket, directory) is refused.
    pub(super) fn open_regular_at(
        &self,
        dir: &OwnedFd,
        name: &str,
        flags: OFlag,
        mode: u32,
        shown: &str,
    ) -> Result<std::fs::File, SandboxError> {
        let how = OpenHow::new()
            .flags(
                flags | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(mode & 0o7777))
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_XDEV
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let fd = openat2(dir.as_fd(), name, how).map_err(|e| match e {
            nix::errno::Errno::ELOOP => SandboxError::Invalid {
                field: "path",
                reason: format!("{shown} is a symlink"),
            },
            nix::errno::Errno::EXDEV => SandboxError::Invalid {
                field: "path",
                reason: format!("{shown} is not on the sandbox's own filesystem"),
            },
            // A FIFO without a reader (opened for writing, non-blocking).
            nix::errno::Errno::ENXIO => SandboxError::Invalid {
                field: "path",
                reason: format!("{shown} is a FIFO or socket, not a regular file"),
            },
            e => self.file_err("open", shown)(e),
        })?;
        self.regular(fd, shown)
    }

    /// `fd` as a file in blocking mode if it is a regular file; an error naming what it is
    /// otherwise.
    pub(super) fn regular(&self, fd: OwnedFd, shown: &str) -> Result<std::fs::File, SandboxError> {
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(self.file_err("stat", shown))?;
        let kind = kind_of(&st);
        if kind != "file" && !crate::weaken::off("files") {
            return Err(SandboxError::Invalid {
                field: "path",
                reason: format!("{shown} is a {kind}, not a regular file"),
            });
        }
        if let Ok(flags) = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL) {
            let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
            let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags));
        }
        Ok(std::fs::File::from(fd))
    }

    /// The directory `parts`, created with its parents (mode `0o755`) when missing.
    pub(super) fn ensure_dir(
        &self,
        root: &OwnedFd,
        parts: &[String],
    ) -> Result<OwnedFd, SandboxError> {
        let mut dir = self.open_in(root, &[], OFlag::O_PATH | OFlag::O_DIRECTORY, "open")?;
        for i in 0..parts.len() {
            match self.open_in(
                root,
                &parts[..=i],
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                "open",
            ) {
                Ok(fd) => dir = fd,
                Err(SandboxError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    let path = joined(&parts[..=i]);
                    match nix::sys::stat::mkdirat(
                        dir.as_fd(),
                        parts[i].as_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(self.file_err("create directory", &path)(e)),
                    }
                    dir = self.open_in(
                        root,
                        &parts[..=i],
                        OFlag::O_PATH | OFlag::O_DIRECTORY,
                        "open",
                    )?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dir)
    }

    /// Read a whole regular file (symlinks resolved inside the sandbox). At most the size the
    /// file had when it was opened is read.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, SandboxError> {
        let (file, size) = self.open_file(path)?;
        let mut out = Vec::with_capacity(size.min(1 << 20) as usize);
        file.take(size)
            .read_to_end(&mut out)
            .map_err(SandboxError::io("read", path))?;
        Ok(out)
    }

    /// Open a regular file for reading (symlinks resolved inside the sandbox), with its size:
    /// read it as a stream, and at most that many bytes.
    pub fn open_file(&self, path: &str) -> Result<(std::fs::File, u64), SandboxError> {
        let parts = components(path)?;
        let root = self.root()?;
        let fd = self.open_in(
            &root,
            &parts,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            "read",
        )?;
        let file = self.regular(fd, path)?;
        let size = file
            .metadata()
            .map_err(SandboxError::io("stat", path))?
            .len();
        Ok((file, size))
    }

    /// Write a whole file with `mode`, creating missing parent directories. Refuses to write
    /// through a symlink in the last component. The file is written beside its place and
    /// renamed over it: a write that fails (the upper is full) leaves the old file, or none,
    /// never a part of the new one.
    pub fn write_file(&self, path: &str, data: &[u8], mode: u32) -> Result<(), SandboxError> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(SandboxError::Invalid {
                field: "path",
                reason: "cannot write the root".into(),
            });
        };
        let root = self.root()?;
        let _as_root = self.as_sandbox_root()?;
        let dir = self.ensure_dir(&root, parent)?;
        // What is there must be a regular file (never a symlink, FIFO or directory).
        match self.open_regular_at(&dir, name, OFlag::O_RDONLY, 0, path) {
            Err(e) if e.kind() != crate::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let tmp = format!(".{name}.sqrx-write-{}", std::process::id());
        let mut file = self.open_regular_at(
            &dir,
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            mode,
            path,
        )?;
        let written = file
            .write_all(data)
            .map_err(SandboxError::io("write", path))
            // O_CREAT's mode is filtered by the umask.
            .and_then(|()| {
                nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode & 0o7777))
                    .map_err(self.file_err("chmod", path))
            })
            .and_then(|()| {
                nix::fcntl::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name.as_str())
                    .map_err(self.file_err("write", path))
            });
        if written.is_err() {
            let _ = nix::unistd::unlinkat(
                dir.as_fd(),
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        written
    }

    /// Create a directory and its parents.
    pub fn mkdir(&self, path: &str) -> Result<(), SandboxError> {
        let parts = components(path)?;
        let root = self.root()?;
        let _as_root = self.as_sandbox_root()?;
        self.ensure_dir(&root, &parts).map(|_| ())
    }

    /// Facts about one entry (a symlink itself, not its target).
    pub fn stat(&self, path: &str) -> Result<FileInfo, SandboxError> {
        let parts = components(path)?;
        let root = self.root()?;
        let Some((name, parent)) = parts.split_last() else {
            let st = nix::sys::stat::fstat(root.as_fd()).map_err(self.file_err("stat", path))?;
            return Ok(info(self, "/", "/", &st));
        };
        let dir = self.open_in(&root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, "stat")?;
        let st = nix::sys::stat::fstatat(
            dir.as_fd(),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.file_err("stat", path))?;
        Ok(info(self, name, &joined(&parts), &st))
    }

    /// The entries of a directory, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<FileInfo>, SandboxError> {
        let parts = components(path)?;
        let root = self.root()?;
        let fd = self.open_in(&root, &parts, OFlag::O_RDONLY | OFlag::O_DIRECTORY, "list")?;
        let base = joined(&parts);
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(self.file_err("list", path))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(self.file_err("list", path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        let dirfd = self.open_in(&root, &parts, OFlag::O_PATH | OFlag::O_DIRECTORY, "list")?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let child = if base == "/" {
                format!("/{name}")
            } else {
                format!("{base}/{name}")
            };
            // Entries may vanish while we list: skip them.
            if let Ok(st) = nix::sys::stat::fstatat(
                dirfd.as_fd(),
                name.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                out.push(info(self, &name, &child, &st));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Move or rename `from` to `to` inside the sandbox (replacing a file at `to`; `to`'s
    /// parents are created). Both resolve inside the sandbox's root, as every path here.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError> {
        let src = components(from)?;
        let dst = components(to)?;
        let (Some((src_name, src_parent)), Some((dst_name, dst_parent))) =
            (src.split_last(), dst.split_last())
        else {
            return Err(SandboxError::Invalid {
                field: "path",
                reason: "cannot move the root".into(),
            });
        };
        let root = self.root()?;
        let _as_root = self.as_sandbox_root()?;
        let from_dir = self.open_in(
            &root,
            src_parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            "rename",
        )?;
        // The source must exist before anything is created for the destination.
        nix::sys::stat::fstatat(
            from_dir.as_fd(),
            src_name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.file_err("rename", from))?;
        let to_dir = self.ensure_dir(&root, dst_parent)?;
        nix::fcntl::renameat(
            from_dir.as_fd(),
            src_name.as_str(),
            to_dir.as_fd(),
            dst_name.as_str(),
        )
        .map_err(self.file_err("rename", from))
    }

    /// Remove a file, a symlink or (with `recursive`) a directory tree.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<(), SandboxError> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(SandboxError::Invalid {
                field: "path",
                reason: "cannot remove the root".into(),
            });
        };
        let root = self.root()?;
        let _as_root = self.as_sandbox_root()?;
        let dir = self.open_in(&root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, "remove")?;
        self.remove_at(&root, &parts, &dir, name, recursive)
    }

    fn remove_at(
        &self,
        root: &OwnedFd,
        parts: &[String],
        dir: &OwnedFd,
        name: &str,
        recursive: bool,
    ) -> Result<(), SandboxError> {
        use nix::unistd::{UnlinkatFlags, unlinkat};
        let path = joined(parts);
        let st =
            nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(self.file_err("remove", &path))?;
        if kind_of(&st) != "dir" {
            return unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                .map_err(self.file_err("remove", &path));
        }
        if recursive {
            for child in self.list(&path)? {
                let sub =
                    self.open_in(root, parts, OFlag::O_PATH | OFlag::O_DIRECTORY, "remove")?;
                let mut child_parts = parts.to_vec();
                child_parts.push(child.name.clone());
                self.remove_at(root, &child_parts, &sub, &child.name, true)?;
            }
        }
        unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
            .map_err(self.file_err("remove", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_must_be_absolute() {
        assert_eq!(components("/a/./b/../c").expect("ok"), ["a", "c"]);
        assert_eq!(components("/../../etc").expect("ok"), ["etc"]);
        assert!(components("relative").is_err());
        assert!(components("/a\0b").is_err());
        assert_eq!(joined(&[]), "/");
        assert!(components(&format!("/{}", "a".repeat(256))).is_err());
        assert!(components(&"/a".repeat(2049)).is_err());
    }
}
