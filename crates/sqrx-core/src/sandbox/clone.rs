//! `Runtime::clone_sandbox`: a new sandbox that starts from the current state of another.
//!
//! The source's upper is packed into an image in the new sandbox's directory (the source is
//! frozen meanwhile), the snapshot images under the source's stack are hard-linked there, and
//! the new sandbox runs on the source's stack plus that image. No layer is copied; afterwards
//! the two share nothing writable.

use super::SandboxError;
use super::runtime::{Runtime, Sandbox};
use super::snapshot::image_path;
use super::spec::validate_id;
use super::state::LayerRef;

/// Removes a reserved sandbox directory unless the sandbox was started.
pub(crate) struct Reserved(pub Option<std::path::PathBuf>);

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Runtime {
    /// Start `new_id` from the current state of the sandbox `src`: same layers, limits and
    /// environment, and a copy of its files as they are now. Both run independently afterwards.
    pub fn clone_sandbox(&self, src: &str, new_id: &str) -> Result<Sandbox, SandboxError> {
        validate_id(new_id)?;
        let source = self.get(src)?;
        let _lock = source.state_lock()?;
        let source = self.get(src)?;
        let mut spec = source.state.spec.clone();
        spec.id = new_id.to_string();
        if spec.hostname.as_deref() == Some(src) {
            spec.hostname = None;
        }
        // The state keeps no values: the clone's secrets come from the source's private file.
        spec.secrets = crate::secrets::read(&crate::secrets::sandbox_store(&source.dir()))?;
        let (dir, _creating) = self.reserve(new_id)?;
        let mut reserved = Reserved(Some(dir.clone()));

        let image = source.pack_upper_into(&dir)?;
        crate::faults::point("clone.link_images")?;
        let mut stack: Vec<LayerRef> = Vec::with_capacity(source.state.layers.len() + 1);
        for l in &source.state.layers {
            let mut l = l.clone();
            if l.snapshot {
                let linked = image_path(&dir, &l.digest);
                if !linked.exists() {
                    std::fs::hard_link(&l.image, &linked)
                        .map_err(SandboxError::io("link", &linked))?;
                }
                l.image = linked;
            }
            stack.push(l);
        }
        stack.push(LayerRef {
            name: format!("{src}@clone"),
            mount: self.inner.mounts.mount_point(&image.digest),
            digest: image.digest,
            image: image.path,
            snapshot: true,
            store_copy: false,
        });
        drop(_lock);
        reserved.0 = None;
        let sandbox = self.launch(spec, dir, stack, None)?;
        tracing::info!(sandbox = %new_id, source = %src, "sandbox cloned");
        Ok(sandbox)
    }
}
