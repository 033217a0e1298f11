//! Pushing in the background: every layer of the store and every snapshot taken goes up to
//! the bucket without anyone waiting for it, retried with backoff, with its state kept per
//! object in `<data>/remote/uploads/` (`layer-<name>.json`, `snapshot-<id>@<label>.json`)
//! for anyone to read ([`Uploads::list`], `sqrx layer uploads`, `GET /v1/remote/uploads`).
//!
//! One pusher per data directory does the work (a lock file elects it; other processes only
//! queue): it looks for new layers every [`SCAN_INTERVAL`], and at once when woken by a queued
//! object. Pushes are idempotent (content-addressed images, checked by `HEAD` before they
//! are sent), so an object pushed twice costs two requests, and an upload interrupted by a
//! crash resumes at the next attempt.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RemoteError;
use crate::layer::{Layer, LayerName};

/// How often the pusher looks for layers nobody queued (built by another process).
pub const SCAN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest wait between two attempts of a failing object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    /// A layer of the store (its image, then its name's index).
    Layer,
    /// A snapshot of a sandbox (its chain's images, then its manifest).
    Snapshot,
}

impl UploadKind {
    /// `layer` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Layer => "layer",
            UploadKind::Snapshot => "snapshot",
        }
    }
}

/// Where an object's push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Waiting for the pusher.
    Queued,
    /// Being pushed.
    Pushing,
    /// In the bucket.
    Pushed,
    /// The last attempt failed; `next_attempt` says when the next one is (none: given up,
    /// because what was to be pushed is gone).
    Failed,
}

impl UploadState {
    /// `queued`, `pushing`, `pushed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Queued => "queued",
            UploadState::Pushing => "pushing",
            UploadState::Pushed => "pushed",
            UploadState::Failed => "failed",
        }
    }
}

/// One object's push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// A layer or a snapshot.
    pub kind: UploadKind,
    /// The layer's name, or `<sandbox id>@<label>`.
    pub name: String,
    /// The digest of the layer's or the snapshot's image.
    pub digest: String,
    /// Where it stands.
    pub state: UploadState,
    /// Attempts so far (failed ones, and the one that succeeded).
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the state last changed.
    pub updated: DateTime<Utc>,
    /// When a failed push is tried again.
    pub next_attempt: Option<DateTime<Utc>>,
}

impl Upload {
    fn queued(kind: UploadKind, name: String, digest: String) -> Self {
        Upload {
            kind,
            name,
            digest,
            state: UploadState::Queued,
            attempts: 0,
            error: None,
            updated: Utc::now(),
            next_attempt: None,
        }
    }

    fn file_name(&self) -> String {
        file_name(self.kind, &self.name)
    }

    /// Whether the pusher should try it now.
    fn due(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            // `Pushing` is only ever seen by the elected pusher after its holder died.
            UploadState::Queued | UploadState::Pushing => true,
            UploadState::Failed => self.next_attempt.is_some_and(|t| t <= now),
            UploadState::Pushed => false,
        }
    }
}

fn file_name(kind: UploadKind, name: &str) -> String {
    match kind {
        UploadKind::Layer => format!("layer-{name}.json"),
        UploadKind::Snapshot => format!("snapshot-{name}.json"),
    }
}

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The uploads of a data directory: `<data>/remote/uploads/`.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

impl Uploads {
    /// The uploads of `data_dir` (nothing is created until something is queued).
    pub fn new(data_dir: &Path) -> Self {
        Uploads {
            dir: data_dir.join("remote").join("uploads"),
        }
    }

    /// Every object's push, layers first, then by name.
    pub fn list(&self) -> Result<Vec<Upload>, RemoteError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RemoteError::io("read", &self.dir)(e)),
        };
        let mut out: Vec<Upload> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a, b| {
            (a.kind == UploadKind::Snapshot, &a.name)
                .cmp(&(b.kind == UploadKind::Snapshot, &b.name))
        });
        Ok(out)
    }

    /// The push of `name` (a layer, or `<id>@<label>`), if one was queued.
    pub fn get(&self, kind: UploadKind, name: &str) -> Option<Upload> {
        let bytes = std::fs::read(self.dir.join(file_name(kind, name))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Queue `layer` unless its image is queued or pushed already.
    pub fn queue_layer(&self, layer: &Layer) -> Result<bool, RemoteError> {
        self.queue(UploadKind::Layer, layer.name.to_string(), &layer.digest)
    }

    /// Queue the snapshot `label` of sandbox `id`.
    pub fn queue_snapshot(&self, id: &str, label: &str, digest: &str) -> Result<bool, RemoteError> {
        self.queue(UploadKind::Snapshot, format!("{id}@{label}"), digest)
    }

    fn queue(&self, kind: UploadKind, name: String, digest: &str) -> Result<bool, RemoteError> {
        if self.get(kind, &name).is_some_and(|u| u.digest == digest) {
            return Ok(false);
        }
        self.save(&Upload::queued(kind, name, digest.to_string()))?;
        Ok(true)
    }

    /// Record that `kind`/`name` (image `digest`) is in the bucket (pushed in the foreground).
    pub fn mark_pushed(
        &self,
        kind: UploadKind,
        name: &str,
        digest: &str,
    ) -> Result<(), RemoteError> {
        let mut u = self
            .get(kind, name)
            .filter(|u| u.digest == digest)
            .unwrap_or_else(|| Upload::queued(kind, name.to_string(), digest.to_string()));
        u.state = UploadState::Pushed;
        u.attempts += 1;
        u.error = None;
        u.next_attempt = None;
        u.updated = Utc::now();
        self.save(&u)
    }

    fn save(&self, u: &Upload) -> Result<(), RemoteError> {
        make_dirs(&self.dir).map_err(RemoteError::io("create", &self.dir))?;
        let path = self.dir.join(u.file_name());
        let json =
            serde_json::to_vec_pretty(u).map_err(|e| RemoteError::io("write", &path)(e.into()))?;
        crate::paths::replace_private(&path, &json).map_err(|(p, e)| RemoteError::io("write", p)(e))
    }

    fn forget(&self, u: &Upload) {
        let _ = std::fs::remove_file(self.dir.join(u.file_name()));
    }
}

/// Wakes the pusher: a flag and a condition variable, shared with its thread.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    flag: Mutex<WakeFlags>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct WakeFlags {
    woken: bool,
    stop: bool,
    started: bool,
}

impl Wake {
    /// Wake the pusher (if it runs).
    pub fn wake(&self) {
        if let Ok(mut f) = self.flag.lock() {
            f.woken = true;
            self.cond.notify_all();
        }
    }

    /// Make the pusher end (the runtime is dropped).
    pub fn stop(&self) {
        if let Ok(mut f) = self.flag.lock() {
            f.stop = true;
            self.cond.notify_all();
        }
    }

    /// Wait up to `timeout` or until woken; false when the pusher must end.
    fn wait(&self, timeout: Duration) -> bool {
        let Ok(mut f) = self.flag.lock() else {
            return false;
        };
        if !f.woken && !f.stop {
            f = match self.cond.wait_timeout(f, timeout) {
                Ok((f, _)) => f,
                Err(_) => return false,
            };
        }
        f.woken = false;
        !f.stop
    }
}

impl crate::Runtime {
    /// The uploads of this data directory.
    pub fn uploads(&self) -> Uploads {
        Uploads::new(&self.inner.config.data_dir)
    }

    /// Start pushing new layers and snapshots in the background, if the runtime has a bucket
    /// with `auto_push` (else nothing happens and `false` is returned). Idempotent. The
    /// thread ends when the runtime is dropped.
    pub fn start_pusher(&self) -> Result<bool, RemoteError> {
        let Some(config) = &self.inner.config.remote else {
            return Ok(false);
        };
        if !config.auto_push {
            return Ok(false);
        }
        {
            let mut f = self.inner.pusher.flag.lock().map_err(|_| {
                RemoteError::io("lock", "pusher")(std::io::Error::other("poisoned"))
            })?;
            if f.started {
                return Ok(true);
            }
            f.started = true;
        }
        let weak: Weak<crate::sandbox::RuntimeInner> = Arc::downgrade(&self.inner);
        let wake = Arc::clone(&self.inner.pusher);
        let lock_path = self
            .inner
            .config
            .data_dir
            .join("remote")
            .join("pusher.lock");
        std::thread::Builder::new()
            .name("sqrx-pusher".into())
            .spawn(move || pusher(weak, &wake, &lock_path))
            .map_err(RemoteError::io("start", "the pusher thread"))?;
        Ok(true)
    }

    /// Whether the runtime has a bucket whose settings pass `test`.
    pub(crate) fn remote_setting(&self, test: impl Fn(&super::RemoteConfig) -> bool) -> bool {
        self.inner.config.remote.as_ref().is_some_and(test)
    }

    /// After a snapshot: queue it for the background pusher (with a bucket and `auto_push`).
    pub(crate) fn snapshot_taken(&self, id: &str, label: &str, digest: &str) {
        if !self.remote_setting(|c| c.auto_push) {
            return;
        }
        match self.uploads().queue_snapshot(id, label, digest) {
            Ok(_) => self.inner.pusher.wake(),
            Err(e) => {
                tracing::warn!(sandbox = id, label, error = %e, "snapshot not queued for upload")
            }
        }
    }

    /// Queue the layer `name` for the background pusher and wake it (with a bucket and
    /// `auto_push`; what the pusher's scan would find within [`SCAN_INTERVAL`]).
    pub fn queue_layer_push(&self, name: &LayerName) -> Result<bool, RemoteError> {
        if !self.remote_setting(|c| c.auto_push) {
            return Ok(false);
        }
        let layer = self.inner.store.get(name)?;
        let queued = self.uploads().queue_layer(&layer)?;
        self.inner.pusher.wake();
        Ok(queued)
    }

    /// One round of the pusher: queue the store's layers it has not seen, push what is due.
    /// Returns how long it may sleep.
    fn push_round(&self) -> Duration {
        let uploads = self.uploads();
        if let Ok(layers) = self.inner.store.list() {
            for layer in &layers {
                if let Err(e) = uploads.queue_layer(layer) {
                    tracing::warn!(layer = %layer.name, error = %e, "layer not queued for upload");
                }
            }
        }
        let mut sleep = SCAN_INTERVAL;
        let now = Utc::now();
        for mut u in uploads.list().unwrap_or_default() {
            if !u.due(now) {
                if let Some(t) = u.next_attempt.filter(|_| u.state == UploadState::Failed) {
                    sleep = sleep.min((t - now).to_std().unwrap_or_default());
                }
                continue;
            }
            u.state = UploadState::Pushing;
            u.updated = Utc::now();
            let _ = uploads.save(&u);
            u.attempts += 1;
            match self.push_now(&u) {
                Outcome::Pushed => {
                    u.state = UploadState::Pushed;
                    u.error = None;
                    u.next_attempt = None;
                }
                Outcome::Gone => {
                    uploads.forget(&u);
                    continue;
                }
                Outcome::Failed(e) => {
                    let wait = backoff(u.attempts);
                    tracing::warn!(kind = ?u.kind, name = %u.name, attempts = u.attempts, error = %e, "upload failed; retrying in {wait:?}");
                    u.state = UploadState::Failed;
                    u.error = Some(e);
                    u.next_attempt = chrono::Duration::from_std(wait)
                        .ok()
                        .map(|w| Utc::now() + w);
                    sleep = sleep.min(wait);
                }
                Outcome::GaveUp(e) => {
                    u.state = UploadState::Failed;
                    u.error = Some(e);
                    u.next_attempt = None;
                }
            }
            u.updated = Utc::now();
            let _ = uploads.save(&u);
        }
        if let Err(e) = self.trim_cache() {
            tracing::warn!(error = %e, "the layer cache was not trimmed");
        }
        sleep
    }

    /// Push `u` now.
    fn push_now(&self, u: &Upload) -> Outcome {
        match u.kind {
            UploadKind::Layer => {
                let Ok(name) = LayerName::new(u.name.as_str()) else {
                    return Outcome::Gone;
                };
                match self.inner.store.get(&name) {
                    Ok(l) if l.digest == u.digest => {}
                    // Removed or replaced: the new image is queued by its own entry.
                    _ => return Outcome::Gone,
                }
                let remote = match self.remote() {
                    Ok(Some(r)) => r,
                    Ok(None) => return Outcome::GaveUp("no bucket".into()),
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                // Another machine's layer of that name is not replaced behind anyone's back:
                // `sqrx layer push` (a person's decision) does that.
                match remote.layer(&name) {
                    Ok(Some(there)) if there.digest != u.digest => {
                        return Outcome::GaveUp(format!(
                            "layer {} differs here ({}) and in the bucket ({}): not replaced \
                             in the background; `sqrx layer push {}` replaces the bucket's",
                            u.name, u.digest, there.digest, u.name
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Outcome::Failed(e.to_string()),
                }
                match remote.push(&self.inner.store, &name, None) {
                    Ok(_) => Outcome::Pushed,
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            UploadKind::Snapshot => {
                let Some((id, label)) = u.name.split_once('@') else {
                    return Outcome::Gone;
                };
                let sandbox = match self.get(id) {
                    Ok(s) => s,
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                        return Outcome::GaveUp(format!(
                            "sandbox {id} was destroyed before its snapshot went up"
                        ));
                    }
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                match sandbox.push_snapshot(label) {
                    Ok(_) => Outcome::Pushed,
                    Err(e @ crate::SandboxError::SnapshotNotFound { .. }) => {
                        Outcome::GaveUp(e.to_string())
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}

/// What one attempt at an upload came to.
enum Outcome {
    /// In the bucket.
    Pushed,
    /// What was to be pushed is gone or replaced: forget the entry.
    Gone,
    /// Failed; try again later.
    Failed(String),
    /// Failed for good (the sandbox or snapshot is gone).
    GaveUp(String),
}

/// The pusher thread: elected by the lock file, then rounds until the runtime is dropped.
fn pusher(weak: Weak<crate::sandbox::RuntimeInner>, wake: &Wake, lock_path: &Path) {
    let mut _elected = None;
    loop {
        if _elected.is_none() {
            _elected = try_lock(lock_path);
        }
        let sleep = match (&_elected, weak.upgrade()) {
            (_, None) => return,
            (None, Some(_)) => SCAN_INTERVAL,
            (Some(_), Some(inner)) => crate::Runtime { inner }.push_round(),
        };
        if !wake.wait(sleep.max(Duration::from_millis(50))) {
            return;
        }
    }
}

/// Make `<data>/remote/...` below an existing data directory, never the data directory itself
/// (a runtime whose directory was removed must not bring it back).
pub(crate) fn make_dirs(dir: &Path) -> std::io::Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    if parent.file_name().is_some_and(|n| n == "remote") {
        make_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The pusher's lock, if no other process holds it.
fn try_lock(path: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    if let Some(dir) = path.parent() {
        make_dirs(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
