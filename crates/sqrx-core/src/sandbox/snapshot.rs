//! `Sandbox::snapshot` and `Sandbox::snapshots`: the upper layer packed into a squashfs image
//! while the sandbox is frozen.
//!
//! Snapshots live in `<sandbox dir>/snapshots/`: images named by digest under `images/`
//! (shared by labels with the same content, hard-linked into clones) and one `<label>.json`
//! per label that records the lower stack the upper was taken on. A snapshot is therefore a
//! delta plus its parents: restoring it mounts that stack with the snapshot on top, so a
//! snapshot taken after a restore still contains everything that was visible (a chain).
//!
//! Crash safety: the image is written under `.tmp/`, fsynced and renamed into `images/`; the
//! label appears last, by hard-linking its fsynced JSON into place (which also refuses a label
//! that exists). A crash at any point leaves no visible half-written snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SandboxError;
use super::mounts::lock_exclusive;
use super::runtime::Sandbox;
use super::state::LayerRef;
use crate::layer::{BuildOptions, LayerError};

/// A snapshot of a sandbox's filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its label, unique in the sandbox.
    pub label: String,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// Size of its image in bytes (the upper's changes, compressed).
    pub size: u64,
    /// Digest of its image.
    pub digest: String,
    /// The snapshot the sandbox had been restored to when this one was taken (its parent in
    /// the chain), if any.
    pub parent: Option<String>,
    /// The store layers below it, base first.
    pub layers: Vec<String>,
}

/// What `<label>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    #[serde(flatten)]
    pub info: SnapshotInfo,
    /// The lower stack the upper was taken on, base first.
    pub stack: Vec<LayerRef>,
}

/// Check a snapshot label: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`.
pub fn validate_label(label: &str) -> Result<(), SandboxError> {
    let bad = |reason: &str| {
        Err(SandboxError::Invalid {
            field: "label",
            reason: format!("{label:?}: {reason}"),
        })
    };
    let b = label.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return bad("must be 1-128 characters");
    }
    if !b[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return bad("only letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// The default label: the current time, e.g. `20261123T101500.123Z`.
pub(crate) fn default_label() -> String {
    Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// `<sandbox dir>/snapshots`.
pub(crate) fn snapshots_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("snapshots")
}

/// Where the image with `digest` lives in `<sandbox dir>/snapshots/images/`.
pub(crate) fn image_path(sandbox_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    snapshots_dir(sandbox_dir)
        .join("images")
        .join(format!("{hex}.sqfs"))
}

fn fsync_dir(dir: &Path) -> Result<(), SandboxError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SandboxError::io("sync", dir))
}

/// Remove what snapshots interrupted by a crash left in `.tmp/` (named `<pid>-...`, where the
/// pid is no longer running).
fn remove_stale_temporaries(tmp_dir: &Path) {
    for e in std::fs::read_dir(tmp_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .split(['-', '.'])
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| super::state::process_start_time(p).is_none()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `<sandbox dir>/frozen-by-snapshot`: the sandbox is frozen because a snapshot or clone packs
/// its upper, not paused by its user. Written before the freeze, removed after the thaw; a
/// recovery that finds it with nobody holding the state lock (the packing process was killed)
/// thaws the sandbox.
pub(crate) fn freeze_marker(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("frozen-by-snapshot")
}

/// The lock file that serialises the state operations of the sandbox in `sandbox_dir` (held
/// from reservation until its state is saved, by snapshot, restore, activate, clone and
/// destroy; a recovery touches only sandboxes whose lock nobody holds).
pub(crate) fn state_lock_path(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join(".state.lock")
}

/// Thaws the sandbox when dropped, if it froze it, and then removes the freeze marker.
struct Thaw<'a>(Option<(&'a crate::cgroup::SandboxCgroup, PathBuf)>);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Some((cg, marker)) = &self.0 {
            match cg.set_frozen(false) {
                Ok(()) => {
                    let _ = std::fs::remove_file(marker);
                }
                Err(e) => tracing::warn!(error = %e, "cannot thaw the sandbox after a snapshot"),
            }
        }
    }
}

/// An image packed from a sandbox's upper into `snapshots/images/`.
pub(crate) struct PackedImage {
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Whether this pack created the file (no image with that content existed).
    pub fresh: bool,
}

impl PackedImage {
    /// Remove the image again if this pack created it (the operation that packed it failed).
    pub fn discard(&self) {
        if self.fresh {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A fresh temporary path for an image being written for `<into>/snapshots/images/` (the
/// directories are created, temporaries of dead writers removed).
pub(crate) fn temp_image_path(into: &Path) -> Result<PathBuf, SandboxError> {
    let tmp_dir = snapshots_dir(into).join(".tmp");
    let images = snapshots_dir(into).join("images");
    for d in [&tmp_dir, &images] {
        std::fs::create_dir_all(d).map_err(SandboxError::io("create", d))?;
    }
    remove_stale_temporaries(&tmp_dir);
    Ok(tmp_dir.join(format!(
        "{}-{}.sqfs",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )))
}

/// Make the image written at `tmp` (`written`: its size, or why writing failed) durable and
/// move it into `<into>/snapshots/images/` under its digest. A failure removes `tmp` and
/// leaves no new image.
pub(crate) fn publish_image(
    into: &Path,
    tmp: &Path,
    written: Result<u64, SandboxError>,
) -> Result<PackedImage, SandboxError> {
    let images = snapshots_dir(into).join("images");
    let done = written.and_then(|size| {
        crate::faults::point("snapshot.sync_image")?;
        // Hash while the kernel writes the image back: both take a while for big images.
        let (synced, digest) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| crate::layer::digest_file(tmp));
            let synced = std::fs::File::open(tmp)
                .and_then(|f| f.sync_all())
                .map_err(SandboxError::io("sync", tmp));
            let digest = hashing.join().unwrap_or_else(|_| {
                Err(LayerError::read(tmp)(std::io::Error::other(
                    "the hashing thread panicked",
                )))
            });
            (synced, digest)
        });
        synced?;
        let digest = digest?;
        let path = image_path(into, &digest);
        // Another label may have the same content: its image is shared, never removed here.
        let fresh = !path.exists();
        crate::faults::point("snapshot.publish_image")?;
        std::fs::rename(tmp, &path).map_err(SandboxError::io("rename", &path))?;
        let image = PackedImage {
            digest,
            size,
            path,
            fresh,
        };
        let synced = crate::faults::point("snapshot.sync_images")
            .map_err(SandboxError::from)
            .and_then(|()| fsync_dir(&images));
        if let Err(e) = synced {
            image.discard();
            return Err(e);
        }
        Ok(image)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done
}

impl Sandbox {
    /// Serialises snapshot, restore, activate and clone of this sandbox (across processes).
    pub(crate) fn state_lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>, SandboxError> {
        lock_exclusive(&state_lock_path(&self.dir()))
    }

    /// Freeze the sandbox (unless paused already), pack its upper into an image in
    /// `<into>/snapshots/images/` and thaw it. A failure leaves no new file behind.
    pub(crate) fn pack_upper_into(&self, into: &Path) -> Result<PackedImage, SandboxError> {
        let tmp = temp_image_path(into)?;
        let started = std::time::Instant::now();
        let lowers: Vec<PathBuf> = self.state.layers.iter().map(|l| l.mount.clone()).collect();
        let upper = super::upper::upper_dir(&self.dir());
        let packed = {
            let _thaw = if self.is_paused() {
                Thaw(None)
            } else {
                let cgroup = self.cgroup_or_err()?;
                let marker = freeze_marker(&self.dir());
                crate::paths::create_private(&marker)
                    .map_err(SandboxError::io("create", &marker))?;
                let thaw = Thaw(Some((cgroup, marker)));
                self.pause()?;
                thaw
            };
            // The upper is a tmpfs: frozen, its content is complete and stable; nothing to sync.
            crate::faults::point("snapshot.pack")
                .map_err(SandboxError::from)
                .and_then(|()| {
                    Ok(crate::layer::pack_upper(
                        &upper,
                        &lowers,
                        &tmp,
                        &BuildOptions::default(),
                    )?)
                })
        };
        tracing::debug!(sandbox = %self.id(), ms = started.elapsed().as_millis() as u64, "upper packed");
        publish_image(into, &tmp, packed)
    }

    /// Snapshot the sandbox's filesystem under `label` (default: the current time, e.g.
    /// `20261123T101500.123Z`). The sandbox is frozen while its upper layer is packed, then
    /// continues. See [`Sandbox::restore`].
    pub fn snapshot(&self, label: Option<&str>) -> Result<SnapshotInfo, SandboxError> {
        let label = match label {
            Some(l) => l.to_string(),
            None => default_label(),
        };
        validate_label(&label)?;
        let _lock = self.state_lock()?;
        let dir = self.dir();
        let meta_path = snapshots_dir(&dir).join(format!("{label}.json"));
        let exists = || SandboxError::SnapshotExists {
            id: self.id().to_string(),
            label: label.clone(),
        };
        if meta_path.exists() {
            return Err(exists());
        }
        let started = std::time::Instant::now();
        let image = self.pack_upper_into(&dir)?;
        let published = self.publish_label(&label, &image);
        if published.is_err() {
            image.discard();
        }
        let info = published?;
        #[cfg(feature = "s3")]
        self.rt.snapshot_taken(self.id(), &label, &info.digest);
        tracing::info!(
            sandbox = %self.id(),
            label = %label,
            bytes = info.size,
            ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(info)
    }

    /// Make the packed `image` the snapshot `label`: its metadata appears last, atomically.
    fn publish_label(
        &self,
        label: &str,
        image: &PackedImage,
    ) -> Result<SnapshotInfo, SandboxError> {
        let dir = self.dir();
        let meta_path = snapshots_dir(&dir).join(format!("{label}.json"));
        let exists = || SandboxError::SnapshotExists {
            id: self.id().to_string(),
            label: label.to_string(),
        };
        let info = SnapshotInfo {
            label: label.to_string(),
            created: Utc::now(),
            size: image.size,
            digest: image.digest.clone(),
            parent: self.state.active_snapshot.clone(),
            layers: self
                .state
                .layers
                .iter()
                .filter(|l| !l.snapshot || l.store_copy)
                .map(|l| l.name.clone())
                .collect(),
        };
        let meta = SnapshotMeta {
            info: info.clone(),
            stack: self.state.layers.clone(),
        };
        let tmp = snapshots_dir(&dir)
            .join(".tmp")
            .join(format!("{}-{label}.json", std::process::id()));
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| SandboxError::BadState {
            path: meta_path.clone(),
            source,
        })?;
        let written = crate::faults::point("snapshot.write_label")
            .map_err(SandboxError::from)
            .and_then(|()| {
                crate::paths::create_private(&tmp)
                    .and_then(|mut f| {
                        f.write_all(&json)?;
                        f.sync_all()
                    })
                    .map_err(SandboxError::io("write", &tmp))
            });
        let published = written
            .and_then(|()| Ok(crate::faults::point("snapshot.publish_label")?))
            .and_then(|()| match std::fs::hard_link(&tmp, &meta_path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
                Err(e) => Err(SandboxError::io("publish", &meta_path)(e)),
            });
        let _ = std::fs::remove_file(&tmp);
        published?;
        // Durable or not there: a label whose directory entry cannot be synced is withdrawn.
        let synced = crate::faults::point("snapshot.sync_labels")
            .map_err(SandboxError::from)
            .and_then(|()| fsync_dir(&snapshots_dir(&dir)));
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&meta_path);
            return Err(e);
        }
        Ok(info)
    }

    pub(crate) fn snapshot_meta(&self, label: &str) -> Result<SnapshotMeta, SandboxError> {
        validate_label(label)?;
        let path = snapshots_dir(&self.dir()).join(format!("{label}.json"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SandboxError::SnapshotNotFound {
                    id: self.id().to_string(),
                    label: label.to_string(),
                });
            }
            Err(e) => return Err(SandboxError::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| SandboxError::BadState { path, source })
    }

    /// The sandbox's snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, SandboxError> {
        let dir = snapshots_dir(&self.dir());
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SandboxError::io("read", &dir)(e)),
        };
        let mut out: Vec<SnapshotInfo> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let label = name.strip_suffix(".json")?;
                self.snapshot_meta(label).ok().map(|m| m.info)
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.label.cmp(&b.label)));
        Ok(out)
    }

    /// The stack to mount for restoring `meta`: its lower stack with each image checked, and
    /// the snapshot itself on top.
    pub(crate) fn restore_stack(&self, meta: &SnapshotMeta) -> Result<Vec<LayerRef>, SandboxError> {
        let dir = self.dir();
        let store = self.rt.layers();
        let mut stack = Vec::with_capacity(meta.stack.len() + 1);
        for l in &meta.stack {
            let mut l = l.clone();
            if l.snapshot {
                l.image = image_path(&dir, &l.digest);
            } else {
                let changed = |what| SandboxError::LayerChanged {
                    label: meta.info.label.clone(),
                    layer: l.name.clone(),
                    what,
                };
                let name = crate::layer::LayerName::new(l.name.as_str())?;
                let got = match store.get(&name) {
                    // Evicted from the cache, or never here: the bucket has it.
                    #[cfg(feature = "s3")]
                    Err(LayerError::NotFound { .. }) if self.rt.remote()?.is_some() => {
                        self.rt.pull_layer(&name).map_err(|e| match e {
                            SandboxError::Remote(crate::remote::RemoteError::NotFound {
                                ..
                            }) => changed("removed"),
                            e => e,
                        })
                    }
                    other => other.map_err(SandboxError::from),
                };
                match got {
                    Ok(layer) if layer.digest == l.digest => l.image = layer.path,
                    Ok(_) => return Err(changed("replaced")),
                    Err(SandboxError::Layer(LayerError::NotFound { .. })) => {
                        return Err(changed("removed"));
                    }
                    Err(e) => return Err(e),
                }
            }
            l.mount = self.rt.inner.mounts.mount_point(&l.digest);
            stack.push(l);
        }
        stack.push(LayerRef {
            name: meta.info.label.clone(),
            digest: meta.info.digest.clone(),
            mount: self.rt.inner.mounts.mount_point(&meta.info.digest),
            image: image_path(&dir, &meta.info.digest),
            snapshot: true,
            store_copy: false,
        });
        Ok(stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_rule() {
        for ok in ["s1", "a", "2026-11-23T10.00", "A_b.c-d", &"x".repeat(128)] {
            assert!(validate_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü", &"x".repeat(129), "../x"] {
            assert!(validate_label(bad).is_err(), "{bad:?}");
        }
        assert!(validate_label(&default_label()).is_ok());
    }
}
