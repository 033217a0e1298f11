//! Where sqrx keeps its data by default.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Create (or truncate) `path` for writing, readable and writable by its owner only (0600):
/// state, logs, images and metadata of the data directory are nobody else's business.
pub(crate) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Replace `path` with `bytes` atomically (private, like [`create_private`]): written to
/// `<path>.tmp`, then renamed over `path`. A failure (a full disk) removes the temporary: the
/// old file, or none, stays. No fsync: this survives the crash of a process, not of the host.
/// Returns the path that failed with the error.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = create_private(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .map_err(|e| (tmp.clone(), e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| (path.to_path_buf(), e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Make the directory `path` (created with its parents if missing) reachable by its owner only
/// (0700).
pub(crate) fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// The environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "SQRX_DATA";

/// The default data directory: `$SQRX_DATA` if set, `/var/lib/sqrx` for root,
/// `$XDG_DATA_HOME/sqrx` (or `~/.local/share/sqrx`) otherwise.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/sqrx");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(xdg).join("sqrx");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/sqrx")
}
