//! Sandboxes and the bucket (the `s3` feature): `Sandbox::push_snapshot`, restoring a
//! snapshot that is only in the bucket, and ephemeral sandboxes, which are snapshotted into
//! the bucket when destroyed and restored from it when created again, on any machine.

use std::io::Write;
use std::path::Path;

use super::SandboxError;
use super::clone::Reserved;
use super::runtime::{Runtime, Sandbox};
use super::snapshot::{SnapshotMeta, default_label, image_path, snapshots_dir, temp_image_path};
use super::spec::SandboxSpec;
use super::state::LayerRef;
use crate::layer::{Layer, LayerError, LayerName};
use crate::remote::{
    Remote, RemoteError, RemoteSnapshot, SnapshotPushReport, StackImage, UploadKind,
};

impl Runtime {
    /// The bucket when sandboxes are ephemeral.
    fn ephemeral_bucket(&self) -> Result<Option<&Remote>, SandboxError> {
        if !self.remote_setting(|c| c.ephemeral) {
            return Ok(None);
        }
        Ok(self.remote()?)
    }

    /// In ephemeral mode, the newest snapshot in the bucket of a sandbox with `spec`'s id,
    /// restored into a new sandbox with that spec (its layers are the snapshot's).
    pub(crate) fn create_ephemeral(
        &self,
        spec: &SandboxSpec,
    ) -> Result<Option<Sandbox>, SandboxError> {
        let Some(remote) = self.ephemeral_bucket()? else {
            return Ok(None);
        };
        let Some(snap) = remote.latest_snapshot(&spec.id)? else {
            return Ok(None);
        };
        let mut spec = spec.clone();
        spec.layers = snap.info.layers.clone();
        let (dir, _creating) = self.reserve(&spec.id)?;
        let mut reserved = Reserved(Some(dir.clone()));
        let stack = self.fetch_snapshot(remote, &dir, &snap)?;
        reserved.0 = None;
        let label = snap.info.label.clone();
        let sandbox = self.launch(spec, dir, stack, Some(label.clone()))?;
        tracing::info!(sandbox = %sandbox.id(), label = %label, "ephemeral sandbox restored from the bucket");
        Ok(Some(sandbox))
    }

    /// Bring `snap` into the sandbox directory `dir`: its store layers into the store, its
    /// images into `snapshots/images/` (each verified), its label into `snapshots/`. Returns
    /// the stack that restores it (the snapshot's image on top).
    fn fetch_snapshot(
        &self,
        remote: &Remote,
        dir: &Path,
        snap: &RemoteSnapshot,
    ) -> Result<Vec<LayerRef>, SandboxError> {
        let tmp = temp_image_path(dir)?;
        let tmp = tmp.parent().unwrap_or(dir).to_path_buf();
        let mounts = &self.inner.mounts;
        let mut stack = Vec::with_capacity(snap.stack.len() + 1);
        for image in &snap.stack {
            let from_store = match image.snapshot {
                true => None,
                false => self.store_layer(remote, image)?,
            };
            if let Some(layer) = from_store {
                stack.push(self.layer_ref(&layer));
            } else {
                // A snapshot's image, or a store layer whose name this store gives to other
                // contents (each machine builds its own `000-base`, say): the sandbox keeps
                // the image it was taken on in its own directory.
                let path = image_path(dir, &image.digest);
                remote.fetch_image(&image.digest, image.size, &tmp, &path)?;
                stack.push(LayerRef {
                    name: image.name.clone(),
                    digest: image.digest.clone(),
                    mount: mounts.mount_point(&image.digest),
                    image: path,
                    snapshot: true,
                    store_copy: !image.snapshot,
                });
            }
        }
        let top = image_path(dir, &snap.info.digest);
        remote.fetch_image(&snap.info.digest, snap.info.size, &tmp, &top)?;
        write_label(
            dir,
            &SnapshotMeta {
                info: snap.info.clone(),
                stack: stack.clone(),
            },
        )?;
        stack.push(LayerRef {
            name: snap.info.label.clone(),
            digest: snap.info.digest.clone(),
            mount: mounts.mount_point(&snap.info.digest),
            image: top,
            snapshot: true,
            store_copy: false,
        });
        Ok(stack)
    }

    /// The store layer `image` names, downloaded by digest when the store lacks the name;
    /// `None` when the store has that name for other contents.
    fn store_layer(
        &self,
        remote: &Remote,
        image: &StackImage,
    ) -> Result<Option<Layer>, SandboxError> {
        let name = LayerName::new(image.name.as_str())?;
        let store = &self.inner.store;
        match store.get(&name) {
            Ok(l) if l.digest == image.digest => return Ok(Some(l)),
            Ok(_) => return Ok(None),
            Err(LayerError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let tmp = store.dir().join(".tmp");
        let file = tmp.join(format!("snapshot-layer-{}-{}", std::process::id(), name));
        let _ = std::fs::remove_file(&file);
        remote.fetch_image(&image.digest, image.size, &tmp, &file)?;
        let origin = format!(
            "s3://{}/{}",
            remote.config().bucket,
            remote.object_key(&image.digest)
        );
        let imported = std::fs::File::open(&file)
            .map_err(SandboxError::io("open", &file))
            .and_then(|f| Ok(store.import_image(&name, f, &origin, false)?));
        let _ = std::fs::remove_file(&file);
        match imported {
            Ok(l) if l.digest == image.digest => Ok(Some(l)),
            Ok(_) => Ok(None),
            // Another process stored that name meanwhile.
            Err(SandboxError::Layer(LayerError::AlreadyExists { .. })) => {
                Ok(Some(store.get(&name)?).filter(|l| l.digest == image.digest))
            }
            Err(e) => Err(e),
        }
    }
}

impl Sandbox {
    /// Push the snapshot `label` into the bucket: every image of its chain (each once per
    /// digest, resuming interrupted uploads), then its manifest, which becomes the sandbox's
    /// latest unless a newer one is there. See `docs/s3.md`.
    pub fn push_snapshot(&self, label: &str) -> Result<SnapshotPushReport, SandboxError> {
        let remote = self.rt.bucket()?;
        let meta = self.snapshot_meta(label)?;
        let dir = self.dir();
        let mut stack = Vec::with_capacity(meta.stack.len());
        let mut paths = Vec::with_capacity(meta.stack.len() + 1);
        for l in &meta.stack {
            let path = if l.snapshot {
                image_path(&dir, &l.digest)
            } else {
                // The store's image of that name, when it is still the one the label used.
                let name = LayerName::new(l.name.as_str())?;
                match self.rt.layers().get(&name) {
                    Ok(layer) if layer.digest == l.digest => layer.path,
                    Ok(_) | Err(LayerError::NotFound { .. }) => {
                        return Err(SandboxError::LayerChanged {
                            label: label.to_string(),
                            layer: l.name.clone(),
                            what: "replaced",
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let size = std::fs::metadata(&path)
                .map_err(SandboxError::io("stat", &path))?
                .len();
            stack.push(StackImage {
                name: l.name.clone(),
                digest: l.digest.clone(),
                size,
                // A store layer kept here as a copy is still a store layer elsewhere.
                snapshot: l.snapshot && !l.store_copy,
            });
            paths.push(path);
        }
        let snapshot = RemoteSnapshot {
            sandbox: self.id().to_string(),
            info: meta.info.clone(),
            stack,
        };
        let own = StackImage {
            name: meta.info.label.clone(),
            digest: meta.info.digest.clone(),
            size: meta.info.size,
            snapshot: true,
        };
        let own_path = image_path(&dir, &meta.info.digest);
        let mut images: Vec<(&Path, &StackImage)> = paths
            .iter()
            .map(|p| p.as_path())
            .zip(snapshot.stack.iter())
            .collect();
        images.push((own_path.as_path(), &own));
        let report = remote.push_snapshot(&snapshot, &images, None)?;
        let name = format!("{}@{label}", self.id());
        if let Err(e) = self
            .rt
            .uploads()
            .mark_pushed(UploadKind::Snapshot, &name, &own.digest)
        {
            tracing::warn!(snapshot = %name, error = %e, "upload state not recorded");
        }
        Ok(report)
    }

    /// The snapshot `label` of this sandbox, fetched from the bucket into its directory (the
    /// label is not here).
    pub(crate) fn fetch_label(&self, label: &str) -> Result<SnapshotMeta, SandboxError> {
        let remote = match self.rt.remote()? {
            Some(r) => r,
            None => return self.snapshot_meta(label),
        };
        let snap = match remote.snapshot(self.id(), label) {
            Ok(s) => s,
            Err(RemoteError::NotFound { .. }) => return self.snapshot_meta(label),
            Err(e) => return Err(e.into()),
        };
        self.rt.fetch_snapshot(remote, &self.dir(), &snap)?;
        tracing::info!(sandbox = %self.id(), label, "snapshot fetched from the bucket");
        self.snapshot_meta(label)
    }

    /// In ephemeral mode, snapshot the sandbox into the bucket (before it is destroyed).
    pub(crate) fn save_to_bucket(&self) -> Result<(), SandboxError> {
        if self.rt.ephemeral_bucket()?.is_none() {
            return Ok(());
        }
        let label = default_label();
        self.snapshot(Some(&label))?;
        let pushed = self.push_snapshot(&label)?;
        tracing::info!(sandbox = %self.id(), label, key = %pushed.key, "ephemeral sandbox saved");
        Ok(())
    }
}

/// Write the label of a fetched snapshot (its images are in place): fsynced, then linked into
/// `snapshots/`, where a label of that name already there (fetched meanwhile) is kept.
fn write_label(dir: &Path, meta: &SnapshotMeta) -> Result<(), SandboxError> {
    let labels = snapshots_dir(dir);
    let path = labels.join(format!("{}.json", meta.info.label));
    let tmp = labels.join(".tmp").join(format!(
        "{}-fetched-{}.json",
        std::process::id(),
        meta.info.label
    ));
    let json = serde_json::to_vec_pretty(meta).map_err(|source| SandboxError::BadState {
        path: path.clone(),
        source,
    })?;
    crate::paths::create_private(&tmp)
        .and_then(|mut f| {
            f.write_all(&json)?;
            f.sync_all()
        })
        .map_err(SandboxError::io("write", &tmp))?;
    let linked = match std::fs::hard_link(&tmp, &path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SandboxError::io("publish", &path)(e)),
    };
    let _ = std::fs::remove_file(&tmp);
    linked?;
    std::fs::File::open(&labels)
        .and_then(|d| d.sync_all())
        .map_err(SandboxError::io("sync", &labels))
}
