//! `sandbox.files`: the sandbox's filesystem seen from the host.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;

use crate::bridge::blocking;
use crate::sandbox::Handle;

/// One entry of a sandbox's filesystem.
#[napi(object)]
pub struct FileInfo {
    /// The entry's name.
    pub name: String,
    /// Its absolute path inside the sandbox.
    pub path: String,
    /// `"file"`, `"dir"`, `"symlink"`, `"char"`, `"block"`, `"fifo"` or `"socket"`.
    pub kind: String,
    /// Size in bytes.
    pub size: f64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<Utc>,
    /// The owner's uid inside the sandbox.
    pub uid: u32,
    /// The group's gid inside the sandbox.
    pub gid: u32,
}

impl From<sqrx_core::sandbox::FileInfo> for FileInfo {
    fn from(f: sqrx_core::sandbox::FileInfo) -> Self {
        FileInfo {
            name: f.name,
            path: f.path,
            kind: f.kind.to_string(),
            size: f.size as f64,
            mode: f.mode,
            mtime: f.mtime,
            uid: f.uid,
            gid: f.gid,
        }
    }
}

/// The files of one sandbox. Paths are absolute paths inside it; symlinks and `..` resolve
/// inside the sandbox, never on the host.
#[napi]
pub struct Files {
    sandbox: Arc<Handle>,
}

impl Files {
    pub(crate) fn new(sandbox: Arc<Handle>) -> Self {
        Files { sandbox }
    }
}

#[napi]
impl Files {
    /// The whole content of the file at `path`.
    #[napi]
    pub async fn read(&self, path: String) -> napi::Result<Buffer> {
        let sb = self.sandbox.get()?;
        Ok(blocking(move || sb.read_file(&path)).await?.into())
    }

    /// Write `data` (a string as UTF-8) to `path` with permission bits `mode` (default
    /// 0o644), creating missing parent directories.
    #[napi]
    pub async fn write(
        &self,
        path: String,
        data: Either<Buffer, String>,
        mode: Option<u32>,
    ) -> napi::Result<()> {
        let sb = self.sandbox.get()?;
        let data = match data {
            Either::A(buf) => buf.to_vec(),
            Either::B(text) => text.into_bytes(),
        };
        blocking(move || sb.write_file(&path, &data, mode.unwrap_or(0o644))).await
    }

    /// The entries of the directory at `path`, sorted by name.
    #[napi]
    pub async fn list(&self, path: String) -> napi::Result<Vec<FileInfo>> {
        let sb = self.sandbox.get()?;
        let entries = blocking(move || sb.list(&path)).await?;
        Ok(entries.into_iter().map(Into::into).collect())
    }

    /// Facts about the entry at `path` (a symlink itself, not its target).
    #[napi]
    pub async fn stat(&self, path: String) -> napi::Result<FileInfo> {
        let sb = self.sandbox.get()?;
        Ok(blocking(move || sb.stat(&path)).await?.into())
    }

    /// Create the directory `path` and its parents.
    #[napi]
    pub async fn mkdir(&self, path: String) -> napi::Result<()> {
        let sb = self.sandbox.get()?;
        blocking(move || sb.mkdir(&path)).await
    }

    /// Remove a file, a symlink or (with `recursive`) a directory tree.
    #[napi]
    pub async fn remove(&self, path: String, recursive: Option<bool>) -> napi::Result<()> {
        let sb = self.sandbox.get()?;
        blocking(move || sb.remove(&path, recursive.unwrap_or(false))).await
    }
}
