//! `Sandbox::upload_tar` and `Sandbox::download_tar`: streaming tar archives of a directory
//! into and out of a sandbox, with the same safe resolution as the rest of the files API
//! (every path resolved inside the sandbox's root; symlinks never lead to host files).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::SandboxError;
use super::files::{components, joined};
use super::runtime::Sandbox;

fn invalid(reason: String) -> SandboxError {
    SandboxError::Invalid {
        field: "archive",
        reason,
    }
}

/// The normal components of an entry path; `..` is refused (an archive must not climb out of
/// the directory it is extracted into), a leading `/` is ignored.
fn entry_parts(path: &Path) -> Result<Vec<String>, SandboxError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => match n.to_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    return Err(invalid(format!(
                        "entry {} is not valid UTF-8",
                        path.display()
                    )));
                }
            },
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "entry {} climbs out of the directory",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// A failure to read the archive: the input is not a (complete) tar stream, which is the
/// caller's to fix (`InvalidArgument`), unlike failures to write what it holds.
fn tar_err(op: &'static str, dir: &str) -> impl FnOnce(std::io::Error) -> SandboxError {
    let dir = dir.to_string();
    move |e| SandboxError::Invalid {
        field: "archive",
        reason: format!("cannot {op} {dir}: {e}"),
    }
}

fn set_times(fd: &OwnedFd, mtime: u64) {
    let t = nix::sys::time::TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
    // Best effort: the content matters more than the timestamp.
    let _ = nix::sys::stat::futimens(fd.as_fd(), &t, &t);
}

impl Sandbox {
    /// Extract the tar archive read from `reader` into the directory `dir` inside the sandbox
    /// (created with its parents when missing). Regular files, directories, symlinks and hard
    /// links are supported; modes, owners and mtimes are kept. Returns the number of entries
    /// written. Entries that climb out with `..` or are devices/fifos are refused.
    pub fn upload_tar(&self, dir: &str, reader: impl Read) -> Result<u64, SandboxError> {
        let base = components(dir)?;
        let root = self.root()?;
        let _as_root = self.as_sandbox_root()?;
        self.ensure_dir(&root, &base)?;
        let mut archive = tar::Archive::new(reader);
        let mut count = 0u64;
        for entry in archive
            .entries()
            .map_err(tar_err("read archive for", dir))?
        {
            let mut entry = entry.map_err(tar_err("read archive for", dir))?;
            let rel = entry
                .path()
                .map_err(tar_err("read archive for", dir))?
                .into_owned();
            let rel_parts = entry_parts(&rel)?;
            let Some((name, parent_rel)) = rel_parts.split_last() else {
                continue;
            };
            let mut parent = base.clone();
            parent.extend(parent_rel.iter().cloned());
            let mut full = parent.clone();
            full.push(name.clone());
            let path = joined(&full);
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            let (uid, gid) = (header.uid().ok(), header.gid().ok());
            let mtime = header.mtime().unwrap_or(0);
            let kind = header.entry_type();
            let parent_fd = self.ensure_dir(&root, &parent)?;
            let owned = |fd: &OwnedFd| {
                // The archive's ids are the sandbox's; ids it does not map are left alone.
                let to = |v: Option<u64>| {
                    v.and_then(|v| u32::try_from(v).ok())
                        .and_then(|id| self.host_id(id))
                };
                let _ = nix::unistd::fchown(
                    fd.as_fd(),
                    to(uid).map(nix::unistd::Uid::from_raw),
                    to(gid).map(nix::unistd::Gid::from_raw),
                );
            };
            match kind {
                tar::EntryType::Directory => {
                    let fd = self.ensure_dir(&root, &full)?;
                    drop(fd);
                    let fd =
                        self.open_in(&root, &full, OFlag::O_RDONLY | OFlag::O_DIRECTORY, "open")?;
                    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                        .map_err(self.file_err("chmod", &path))?;
                    owned(&fd);
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut file = self.open_regular_at(
                        &parent_fd,
                        name,
                        OFlag::O_WRONLY | OFlag::O_CREAT,
                        mode,
                        &path,
                    )?;
                    file.set_len(0)
                        .map_err(SandboxError::io("truncate", &path))?;
                    if let Err(e) = std::io::copy(&mut entry, &mut file) {
                        // A file cut short (the upper is full) is not left behind.
                        let _ = nix::unistd::unlinkat(
                            parent_fd.as_fd(),
                            name.as_str(),
                            nix::unistd::UnlinkatFlags::NoRemoveDir,
                        );
                        return Err(SandboxError::io("write", &path)(e));
                    }
                    let fd = OwnedFd::from(file);
                    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                        .map_err(self.file_err("chmod", &path))?;
                    owned(&fd);
                    set_times(&fd, mtime);
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(tar_err("read archive for", dir))?
                        .ok_or_else(|| invalid(format!("symlink {path} has no target")))?
                        .into_owned();
                    let _ = nix::unistd::unlinkat(
                        parent_fd.as_fd(),
                        name.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                    nix::unistd::symlinkat(target.as_path(), parent_fd.as_fd(), name.as_str())
                        .map_err(self.file_err("create symlink", &path))?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(tar_err("read archive for", dir))?
                        .ok_or_else(|| invalid(format!("hard link {path} has no target")))?;
                    let mut target_parts = base.clone();
                    target_parts.extend(entry_parts(&target)?);
                    let src = self.open_in(
                        &root,
                        &target_parts,
                        OFlag::O_PATH | OFlag::O_NOFOLLOW,
                        "link",
                    )?;
                    let _ = nix::unistd::unlinkat(
                        parent_fd.as_fd(),
                        name.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                    nix::unistd::linkat(
                        src.as_fd(),
                        "",
                        parent_fd.as_fd(),
                        name.as_str(),
                        AtFlags::AT_EMPTY_PATH,
                    )
                    .map_err(self.file_err("link", &path))?;
                }
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
                other => {
                    return Err(invalid(format!(
                        "entry {path}: {other:?} entries are not supported"
                    )));
                }
            }
            count += 1;
        }
        Ok(count)
    }

    /// Write the directory `dir` inside the sandbox to `writer` as a tar archive, paths
    /// relative to `dir`. Symlinks are stored as symlinks (never followed). Returns the number
    /// of entries written.
    pub fn download_tar(&self, dir: &str, writer: impl Write) -> Result<u64, SandboxError> {
        let parts = components(dir)?;
        let root = self.root()?;
        let fd = self.open_in(
            &root,
            &parts,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            "archive",
        )?;
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let mut count = 0;
        self.archive_dir(
            &fd,
            &joined(&parts),
            Path::new(""),
            &mut builder,
            &mut count,
        )?;
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(SandboxError::io("write archive of", dir))?;
        Ok(count)
    }

    fn archive_dir<W: Write>(
        &self,
        dirfd: &OwnedFd,
        shown: &str,
        rel: &Path,
        builder: &mut tar::Builder<W>,
        count: &mut u64,
    ) -> Result<(), SandboxError> {
        let listing = nix::fcntl::openat(
            dirfd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.file_err("list", shown))?;
        let mut names: Vec<String> = nix::dir::Dir::from_fd(listing)
            .map_err(self.file_err("list", shown))?
            .into_iter()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        for name in names {
            let path: PathBuf = rel.join(&name);
            let shown_child = format!("{}/{name}", shown.trim_end_matches('/'));
            let werr = SandboxError::io("write archive of", &shown_child);
            // Entries may vanish while we walk: skip them.
            let Ok(st) =
                nix::sys::stat::fstatat(dirfd.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let mut header = header_for(&st);
            header.set_uid(u64::from(self.sandbox_id(st.st_uid)));
            header.set_gid(u64::from(self.sandbox_id(st.st_gid)));
            match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFDIR => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, &path, std::io::empty())
                        .map_err(werr)?;
                    *count += 1;
                    // Another filesystem mounted here (/proc, /dev, ...) is not the sandbox's:
                    // its mount point is archived empty.
                    let how = nix::fcntl::OpenHow::new()
                        .flags(
                            OFlag::O_RDONLY
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                        )
                        .resolve(
                            nix::fcntl::ResolveFlag::RESOLVE_BENEATH
                                | nix::fcntl::ResolveFlag::RESOLVE_NO_XDEV
                                | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
                        );
                    let Ok(child) = nix::fcntl::openat2(dirfd.as_fd(), name.as_str(), how) else {
                        continue;
                    };
                    self.archive_dir(&child, &shown_child, &path, builder, count)?;
                }
                SFlag::S_IFREG => {
                    let Ok(file) =
                        self.open_regular_at(dirfd, &name, OFlag::O_RDONLY, 0, &shown_child)
                    else {
                        continue;
                    };
                    let size = st.st_size.max(0) as u64;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    // Exactly `size` bytes even if the file changes meanwhile.
                    let data = file.take(size).chain(std::io::repeat(0)).take(size);
                    builder
                        .append_data(&mut header, &path, data)
                        .map_err(werr)?;
                    *count += 1;
                }
                SFlag::S_IFLNK => {
                    let Ok(target) = nix::fcntl::readlinkat(dirfd.as_fd(), name.as_str()) else {
                        continue;
                    };
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &path, Path::new(&target))
                        .map_err(werr)?;
                    *count += 1;
                }
                SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                    let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                        SFlag::S_IFCHR => tar::EntryType::Char,
                        SFlag::S_IFBLK => tar::EntryType::Block,
                        _ => tar::EntryType::Fifo,
                    };
                    header.set_entry_type(kind);
                    header.set_size(0);
                    let rdev = st.st_rdev;
                    let _ = header.set_device_major(nix::sys::stat::major(rdev) as u32);
                    let _ = header.set_device_minor(nix::sys::stat::minor(rdev) as u32);
                    builder
                        .append_data(&mut header, &path, std::io::empty())
                        .map_err(werr)?;
                    *count += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn header_for(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_may_not_climb_out() {
        assert_eq!(entry_parts(Path::new("./a/b")).expect("ok"), ["a", "b"]);
        assert_eq!(entry_parts(Path::new("/abs/x")).expect("ok"), ["abs", "x"]);
        assert!(entry_parts(Path::new("a/../../x")).is_err());
        assert!(entry_parts(Path::new("..")).is_err());
    }
}
