//! Snapshots in the bucket: a sandbox's snapshot is a small manifest,
//! `{prefix}sandboxes/{id}/snapshots/{label}.json`, naming the images of its chain by digest.
//! The images themselves are content-addressed objects beside the layers' (an image shared by
//! several snapshots, sandboxes or layers goes up once). `{prefix}sandboxes/{id}/latest.json`
//! is a copy of the newest manifest: what an ephemeral sandbox restores from on any machine.
//! A manifest is written only after every image it names is complete.

use serde::{Deserialize, Serialize};

use super::push::Image;
use super::{Progress, Remote, RemoteError};
use crate::sandbox::SnapshotInfo;

/// A snapshot as the bucket keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteSnapshot {
    /// The sandbox it was taken of.
    pub sandbox: String,
    /// The snapshot: label, time, size and digest of its image, parent, store layers.
    #[serde(flatten)]
    pub info: SnapshotInfo,
    /// The images below it, base first: store layers, then the snapshots it was restored
    /// from (merged or not).
    pub stack: Vec<StackImage>,
}

/// One image below a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackImage {
    /// The store layer's name, or the label of the snapshot the image is.
    pub name: String,
    /// The image's digest.
    pub digest: String,
    /// The image's size in bytes.
    pub size: u64,
    /// Whether it is a snapshot's image rather than a store layer's.
    pub snapshot: bool,
}

/// What pushing a snapshot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPushReport {
    /// The sandbox.
    pub sandbox: String,
    /// The snapshot's label.
    pub label: String,
    /// The manifest's key.
    pub key: String,
    /// Image bytes sent (0 when the bucket had every image).
    pub uploaded_bytes: u64,
    /// Whether it became the sandbox's latest snapshot in the bucket.
    pub latest: bool,
}

impl Remote {
    /// The key of the manifest of `label`, a snapshot of sandbox `id`.
    pub fn snapshot_key(&self, id: &str, label: &str) -> String {
        format!(
            "{}sandboxes/{id}/snapshots/{label}.json",
            self.config.prefix
        )
    }

    /// The key of the copy of sandbox `id`'s newest manifest.
    pub fn latest_key(&self, id: &str) -> String {
        format!("{}sandboxes/{id}/latest.json", self.config.prefix)
    }

    /// The newest snapshot of sandbox `id` in the bucket, if it has one.
    pub fn latest_snapshot(&self, id: &str) -> Result<Option<RemoteSnapshot>, RemoteError> {
        let key = self.latest_key(id);
        match self.rt.block_on(self.manifest(&key)) {
            Ok(s) => Ok(Some(s)),
            Err(RemoteError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The snapshot `label` of sandbox `id` in the bucket.
    pub fn snapshot(&self, id: &str, label: &str) -> Result<RemoteSnapshot, RemoteError> {
        self.rt
            .block_on(self.manifest(&self.snapshot_key(id, label)))
    }

    async fn manifest(&self, key: &str) -> Result<RemoteSnapshot, RemoteError> {
        let snap: RemoteSnapshot = self.get_json(key, "a snapshot manifest").await?;
        let digests =
            std::iter::once(&snap.info.digest).chain(snap.stack.iter().map(|i| &i.digest));
        if let Some(bad) = digests.into_iter().find(|d| !super::is_digest(d)) {
            return Err(RemoteError::Corrupt {
                bucket: self.config.bucket.clone(),
                key: key.to_string(),
                reason: format!("names the image {bad:?}"),
            });
        }
        Ok(snap)
    }

    /// Upload `images` (those of `snapshot`'s chain, each with where it is here), then its
    /// manifest, then make it the sandbox's latest unless a newer one is there.
    pub(crate) fn push_snapshot(
        &self,
        snapshot: &RemoteSnapshot,
        images: &[(&std::path::Path, &StackImage)],
        progress: Option<Progress<'_>>,
    ) -> Result<SnapshotPushReport, RemoteError> {
        self.rt.block_on(async {
            let mut uploaded_bytes = 0;
            for (path, image) in images {
                let image = Image {
                    path,
                    size: image.size,
                    digest: &image.digest,
                };
                uploaded_bytes += self.upload_image(&image, progress).await?.sent;
            }
            let (id, label) = (&snapshot.sandbox, &snapshot.info.label);
            let key = self.snapshot_key(id, label);
            self.put_json(&key, snapshot).await?;
            let latest_key = self.latest_key(id);
            let newer_there = match self.manifest(&latest_key).await {
                Ok(l) => l.info.created > snapshot.info.created && l.info.label != *label,
                Err(RemoteError::NotFound { .. } | RemoteError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !newer_there {
                self.put_json(&latest_key, snapshot).await?;
            }
            tracing::info!(sandbox = %id, label = %label, uploaded = uploaded_bytes, "snapshot pushed");
            Ok(SnapshotPushReport {
                sandbox: id.clone(),
                label: label.clone(),
                key,
                uploaded_bytes,
                latest: !newer_there,
            })
        })
    }

    /// Download the image `digest` (`size` bytes, verified, through a private file in `tmp`)
    /// to `dest`, unless it is there.
    pub(crate) fn fetch_image(
        &self,
        digest: &str,
        size: u64,
        tmp: &std::path::Path,
        dest: &std::path::Path,
    ) -> Result<u64, RemoteError> {
        if dest.exists() {
            return Ok(0);
        }
        let dir = dest.parent().unwrap_or(std::path::Path::new("."));
        let (file, got) = self.rt.block_on(self.download(digest, size, tmp, None))?;
        file.persist(dest)
            .map_err(|e| RemoteError::io("rename", dest)(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(RemoteError::io("sync", dir))?;
        Ok(got)
    }
}
