//! Watching a directory of a sandbox for changes, from the host: the directory is listed
//! through the files API every [`POLL`] and compared with the last listing, so it sees what
//! the sandbox's processes do whatever the filesystem (overlay, tmpfs) and without anything
//! running inside. A rename shows as a removal and a creation.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::SandboxError;
use super::files::FileInfo;
use super::runtime::Sandbox;

/// How often a watched directory is listed.
pub const POLL: Duration = Duration::from_millis(100);

/// The most entries a watch follows (a bigger tree is watched up to this many).
const MAX_ENTRIES: usize = 20_000;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It appeared.
    Create,
    /// Its content changed (size or modification time).
    Write,
    /// It went away.
    Remove,
    /// Its permissions changed.
    Chmod,
}

/// One change under a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its path relative to the watched directory.
    pub name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The entry now (`None` after a removal).
    pub entry: Option<FileInfo>,
}

type Snapshot = BTreeMap<String, FileInfo>;

impl Sandbox {
    fn listing(&self, dir: &str, recursive: bool) -> Result<Snapshot, SandboxError> {
        let mut out = Snapshot::new();
        let mut todo = vec![dir.to_string()];
        while let Some(d) = todo.pop() {
            let entries = match self.list(&d) {
                Ok(e) => e,
                // A subdirectory removed while listing: its entries are gone.
                Err(_) if d != dir => continue,
                Err(e) => return Err(e),
            };
            for e in entries {
                if out.len() >= MAX_ENTRIES {
                    return Ok(out);
                }
                if recursive && e.kind == "dir" {
                    todo.push(e.path.clone());
                }
                out.insert(e.path.clone(), e);
            }
        }
        Ok(out)
    }

    /// Watch the directory `path` (and, with `recursive`, everything under it): changes
    /// arrive on the returned channel until it is dropped or the directory goes away (then
    /// the channel ends with the error).
    pub fn watch_dir(
        &self,
        path: &str,
        recursive: bool,
    ) -> Result<mpsc::Receiver<Result<Change, SandboxError>>, SandboxError> {
        let root = self.stat(path)?;
        if root.kind != "dir" {
            return Err(SandboxError::Invalid {
                field: "path",
                reason: format!("{path} is not a directory"),
            });
        }
        let base = root.path.clone();
        let mut last = self.listing(&base, recursive)?;
        let (tx, rx) = mpsc::channel(256);
        let sb = self.clone();
        std::thread::Builder::new()
            .name("sqrx-watch".into())
            .spawn(move || {
                let rel = |p: &str| {
                    p.strip_prefix(&base)
                        .map(|r| r.trim_start_matches('/').to_string())
                        .unwrap_or_else(|| p.to_string())
                };
                loop {
                    std::thread::sleep(POLL);
                    if tx.is_closed() {
                        return;
                    }
                    let now = match sb.listing(&base, recursive) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    };
                    let mut changes = Vec::new();
                    for (p, info) in &now {
                        match last.get(p) {
                            None => changes.push(Change {
                                name: rel(p),
                                kind: ChangeKind::Create,
                                entry: Some(info.clone()),
                            }),
                            Some(old) => {
                                if old.kind == "file"
                                    && (old.size != info.size || old.mtime != info.mtime)
                                {
                                    changes.push(Change {
                                        name: rel(p),
                                        kind: ChangeKind::Write,
                                        entry: Some(info.clone()),
                                    });
                                }
                                if old.mode != info.mode {
                                    changes.push(Change {
                                        name: rel(p),
                                        kind: ChangeKind::Chmod,
                                        entry: Some(info.clone()),
                                    });
                                }
                            }
                        }
                    }
                    for p in last.keys() {
                        if !now.contains_key(p) {
                            changes.push(Change {
                                name: rel(p),
                                kind: ChangeKind::Remove,
                                entry: None,
                            });
                        }
                    }
                    last = now;
                    for c in changes {
                        if tx.blocking_send(Ok(c)).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| SandboxError::Io {
                op: "start a watch of",
                path: path.into(),
                source: e,
            })?;
        Ok(rx)
    }
}
