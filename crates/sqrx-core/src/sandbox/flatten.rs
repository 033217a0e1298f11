//! Keeping a sandbox's lower stack within overlayfs's limit of lower layers.
//!
//! A snapshot is a delta on the stack it was taken on, so every snapshot taken after a restore
//! stacks one layer more: a chain of restores and snapshots grows without bound, and overlayfs
//! refuses a stack of more than [`OVERLAY_MAX_LOWER_LAYERS`] lower layers (`EINVAL`; on this
//! kernel a restore failed at 501 layers). Before a restart onto a stack deeper than
//! `RuntimeConfig::max_lower_layers`, every run of two or more consecutive snapshot layers is
//! merged into one image ([`crate::layer::merge_layers`]) that shows exactly what the run showed.
//! The merged image lives in `snapshots/images/` under its digest like any snapshot image, so
//! snapshots taken afterwards record it in their stacks and clones hard-link it; the merge of
//! a run is remembered in `snapshots/merged/<key>` and done once.

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::SandboxError;
use super::runtime::{OVERLAY_MAX_LOWER_LAYERS, Sandbox};
use super::snapshot::{image_path, publish_image, snapshots_dir, temp_image_path};
use super::state::LayerRef;
use crate::layer::BuildOptions;

/// Where the digest of the merge of a run is remembered: keyed by the run's and the layers
/// below's digests (the merge depends on both).
fn merge_record(sandbox_dir: &Path, run: &[LayerRef], below: &[LayerRef]) -> PathBuf {
    let mut h = sha2::Sha256::new();
    for l in below {
        h.update(l.digest.as_bytes());
        h.update(b"\n");
    }
    h.update(b"--\n");
    for l in run {
        h.update(l.digest.as_bytes());
        h.update(b"\n");
    }
    snapshots_dir(sandbox_dir)
        .join("merged")
        .join(hex::encode(h.finalize()))
}

impl Sandbox {
    /// `stack` as the sandbox will mount it: each image once, and, deeper than
    /// `max_lower_layers`, with its runs of snapshot layers merged.
    pub(crate) fn flattened(&self, stack: Vec<LayerRef>) -> Result<Vec<LayerRef>, SandboxError> {
        let max = self
            .rt
            .inner
            .config
            .max_lower_layers
            .clamp(2, OVERLAY_MAX_LOWER_LAYERS);
        let stack = super::create::topmost_copies(&stack);
        if stack.len() <= max {
            return Ok(stack);
        }
        let started = std::time::Instant::now();
        // The stack is mounted while its runs are read; the restart then mounts what it needs.
        let rt = &self.rt;
        let dir = self.dir();
        let old = self.layer_mounts();
        let added: Vec<PathBuf> = stack
            .iter()
            .map(|l| l.mount.clone())
            .filter(|m| !old.contains(m))
            .collect();
        let mut both = old.clone();
        both.extend(added.iter().cloned());
        rt.announce_mounts(&dir, &both)?;
        let merged = rt
            .inner
            .mounts
            .locked(|| {
                for l in &stack {
                    rt.inner.mounts.acquire(l)?;
                }
                Ok(())
            })
            .and_then(|()| self.merge_runs(&stack));
        if let Err(e) = rt.claim_only(self.id(), &dir, &old, &added) {
            tracing::warn!(sandbox = %self.id(), error = %e, "cannot release the layers read for a merge");
        }
        let flat = merged?;
        tracing::info!(
            sandbox = %self.id(),
            from = stack.len(),
            to = flat.len(),
            ms = started.elapsed().as_millis() as u64,
            "snapshot layers merged"
        );
        if flat.len() > max {
            return Err(SandboxError::StackTooDeep {
                id: self.id().to_string(),
                layers: flat.len(),
                max,
            });
        }
        Ok(flat)
    }

    /// `stack` with each run of two or more snapshot layers merged into one.
    fn merge_runs(&self, stack: &[LayerRef]) -> Result<Vec<LayerRef>, SandboxError> {
        let mut out: Vec<LayerRef> = Vec::with_capacity(stack.len());
        let mut i = 0;
        while i < stack.len() {
            let run = stack[i..].iter().take_while(|l| l.snapshot).count();
            if run >= 2 {
                let merged = self.merge_run(&stack[i..i + run], &out)?;
                out.push(merged);
                i += run;
            } else {
                out.push(stack[i].clone());
                i += 1;
            }
        }
        Ok(out)
    }

    /// The merge of the snapshot layers `run` (mounted, bottom first) on `below`.
    fn merge_run(&self, run: &[LayerRef], below: &[LayerRef]) -> Result<LayerRef, SandboxError> {
        let dir = self.dir();
        let record = merge_record(&dir, run, below);
        let name = match (run.first(), run.last()) {
            (Some(first), Some(last)) => format!("{}..{}", first.name, last.name),
            _ => "merged".to_string(),
        };
        let layer = |digest: String| LayerRef {
            name: name.clone(),
            mount: self.rt.inner.mounts.mount_point(&digest),
            image: image_path(&dir, &digest),
            digest,
            snapshot: true,
            store_copy: false,
        };
        if let Ok(digest) = std::fs::read_to_string(&record)
            && image_path(&dir, digest.trim()).is_file()
        {
            return Ok(layer(digest.trim().to_string()));
        }
        let tmp = temp_image_path(&dir)?;
        let mounts = |ls: &[LayerRef]| ls.iter().map(|l| l.mount.clone()).collect::<Vec<_>>();
        let written = crate::layer::merge_layers(
            &mounts(run),
            &mounts(below),
            &tmp,
            &BuildOptions::default(),
        )
        .map_err(SandboxError::from);
        let image = publish_image(&dir, &tmp, written)?;
        // Only a cache: without the record the run is merged again next time.
        let records = record.parent().unwrap_or(&dir).to_path_buf();
        let remembered = std::fs::create_dir_all(&records)
            .and_then(|()| std::fs::write(record.with_extension("tmp"), &image.digest))
            .and_then(|()| std::fs::rename(record.with_extension("tmp"), &record));
        if let Err(e) = remembered {
            tracing::warn!(sandbox = %self.id(), error = %e, "cannot remember a merged image");
        }
        Ok(layer(image.digest))
    }
}
