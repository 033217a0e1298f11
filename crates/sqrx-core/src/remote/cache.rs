//! The local store as a cache of the bucket, bounded by size
//! ([`super::RemoteConfig::cache_max_bytes`]): when it holds more, the layers used least
//! recently go first, but only those no sandbox uses and that the bucket holds (the same
//! image under the same name), so nothing is lost: a create that needs one pulls it again.
//! A layer's last use is when a sandbox last stacked it (`<data>/remote/used/<name>`'s
//! modification time), else when it was stored. A layer stacked within the last
//! [`RECENT_USE`] is kept: a create that has just pulled or looked it up may not have
//! mounted it yet.

use std::path::PathBuf;
use std::time::SystemTime;

use super::RemoteError;
use crate::layer::{BASE_LAYER, Layer};

/// Layers stacked more recently than this are never evicted.
pub const RECENT_USE: std::time::Duration = std::time::Duration::from_secs(60);

impl crate::Runtime {
    fn used_marker(&self, name: &str) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("remote")
            .join("used")
            .join(name)
    }

    /// Note that a sandbox stacks `layer` now (when the store is bounded).
    pub(crate) fn note_layer_use(&self, layer: &Layer) {
        if !self.remote_setting(|c| c.cache_max_bytes.is_some()) {
            return;
        }
        let path = self.used_marker(layer.name.as_str());
        let touched = path
            .parent()
            .map_or(Ok(()), super::uploads::make_dirs)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            })
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(path = %path.display(), error = %e, "layer use not recorded");
        }
    }

    /// When `layer` was last used, and whether a sandbox stacked it then.
    fn last_use(&self, layer: &Layer) -> (SystemTime, bool) {
        match std::fs::metadata(self.used_marker(layer.name.as_str())).and_then(|m| m.modified()) {
            Ok(t) => (t, true),
            Err(_) => (layer.created.into(), false),
        }
    }

    /// Bring the store under the cache bound, if there is one: remove the least recently
    /// used layers that no sandbox uses and that the bucket holds. Returns the names removed.
    pub fn trim_cache(&self) -> Result<Vec<String>, RemoteError> {
        let Some(max) = self
            .inner
            .config
            .remote
            .as_ref()
            .and_then(|c| c.cache_max_bytes)
        else {
            return Ok(Vec::new());
        };
        let layers = self.inner.store.list()?;
        let mut total: u64 = layers.iter().map(|l| l.size).sum();
        if total <= max {
            return Ok(Vec::new());
        }
        let Some(remote) = self.remote()? else {
            return Ok(Vec::new());
        };
        let now = SystemTime::now();
        let mut layers: Vec<(SystemTime, Layer)> = layers
            .into_iter()
            .filter(|l| l.name.as_str() != BASE_LAYER)
            .filter_map(|l| match self.last_use(&l) {
                (t, true) if now.duration_since(t).unwrap_or_default() < RECENT_USE => None,
                (t, _) => Some((t, l)),
            })
            .collect();
        layers.sort_by_key(|(t, _)| *t);
        let mut removed = Vec::new();
        for (_, layer) in layers {
            if total <= max {
                break;
            }
            if !remote.holds(&layer)? {
                continue;
            }
            match self.remove_layer(&layer.name) {
                Ok(()) => {
                    total = total.saturating_sub(layer.size);
                    let _ = std::fs::remove_file(self.used_marker(layer.name.as_str()));
                    tracing::info!(layer = %layer.name, bytes = layer.size, "layer evicted from the local cache");
                    removed.push(layer.name.to_string());
                }
                // In use, or removed meanwhile: keep going with the next.
                Err(e) => {
                    tracing::debug!(layer = %layer.name, error = %e, "layer kept in the cache")
                }
            }
        }
        if total > max {
            tracing::warn!(
                bytes = total,
                max,
                "the layer cache stays over its bound: the rest is in use or not in the bucket"
            );
        }
        Ok(removed)
    }
}

impl super::Remote {
    /// Whether the bucket holds `layer`: its name's index names its image, which is complete.
    pub fn holds(&self, layer: &Layer) -> Result<bool, RemoteError> {
        self.rt.block_on(async {
            match self.index(&layer.name).await {
                Ok(indexed) if indexed.digest == layer.digest => {
                    self.has_object(&self.object_key(&layer.digest), layer.size, &layer.digest)
                        .await
                }
                Ok(_) | Err(RemoteError::NotFound { .. } | RemoteError::Corrupt { .. }) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        })
    }
}
