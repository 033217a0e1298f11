//! Pulling a layer: its index, then its image into a private file, hashed on the way and
//! published only when it is exactly what the index says.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::{Progress, Remote, RemoteError};
use crate::layer::{LayerName, LayerStore};

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// The layer as stored here.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// Image bytes downloaded (0 when the store had it, or another pull got it meanwhile).
    pub downloaded_bytes: u64,
    /// Time spent downloading the image (its SHA-256 is computed on the way).
    pub download: std::time::Duration,
    /// Time spent checking the image as a squashfs and publishing it in the store.
    pub verify: std::time::Duration,
}

impl Remote {
    /// Pull layer `name` into `store`. A layer of that name already here is kept when it is
    /// the same image; a different one is an error ([`RemoteError::Diverged`]) unless
    /// `force`. Concurrent pulls of the same image download it once.
    pub fn pull(
        &self,
        store: &LayerStore,
        name: &LayerName,
        force: bool,
        progress: Option<Progress<'_>>,
    ) -> Result<PullReport, RemoteError> {
        self.rt
            .block_on(self.pull_async(store, name, force, progress))
    }

    async fn pull_async(
        &self,
        store: &LayerStore,
        name: &LayerName,
        force: bool,
        progress: Option<Progress<'_>>,
    ) -> Result<PullReport, RemoteError> {
        let wanted = self.index(name).await?;
        let done = |downloaded_bytes, download, verify| PullReport {
            name: name.to_string(),
            digest: wanted.digest.clone(),
            downloaded_bytes,
            download,
            verify,
        };
        let zero = std::time::Duration::ZERO;
        let same_here = |store: &LayerStore| -> Result<bool, RemoteError> {
            match store.get(name) {
                Ok(l) if l.digest == wanted.digest => Ok(true),
                Ok(l) if !force => Err(RemoteError::Diverged {
                    name: name.to_string(),
                    local: l.digest,
                    remote: wanted.digest.clone(),
                }),
                Ok(_) | Err(crate::layer::LayerError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        };
        if same_here(store)? {
            return Ok(done(0, zero, zero));
        }
        // One download per image across threads and processes: the others wait here, then
        // find the layer stored.
        let tmp = store.dir().join(".tmp");
        let hex = wanted.digest.trim_start_matches("sha256:");
        let lock_path = tmp.join(format!("pull-{hex}.lock"));
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(RemoteError::io("open", &lock_path))?;
        // This blocks the remote's own single-threaded runtime, which has nothing else to do.
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| RemoteError::Io {
                op: "lock",
                path: lock_path.clone(),
                source: errno.into(),
            })?;
        if same_here(store)? {
            return Ok(done(0, zero, zero));
        }
        let started = std::time::Instant::now();
        let (file, downloaded) = self
            .download(&wanted.digest, wanted.size, &tmp, progress)
            .await?;
        let download = started.elapsed();
        let origin = format!(
            "s3://{}/{}",
            self.config.bucket,
            self.object_key(&wanted.digest)
        );
        let reader =
            std::fs::File::open(file.path()).map_err(RemoteError::io("open", file.path()))?;
        let stored = store.import_image(name, reader, &origin, true)?;
        if stored.digest != wanted.digest {
            // Not reached: the bytes were hashed on the way in.
            return Err(RemoteError::Corrupt {
                bucket: self.config.bucket.clone(),
                key: self.object_key(&wanted.digest),
                reason: format!("stored as {}", stored.digest),
            });
        }
        let verify = started.elapsed() - download;
        tracing::info!(layer = %name, bytes = downloaded, download_ms = download.as_millis() as u64,
            verify_ms = verify.as_millis() as u64, "layer pulled");
        Ok(done(downloaded, download, verify))
    }

    /// Download the image `digest` of `expected` bytes into a private file under `tmp`,
    /// checking its size and digest. The file goes when the returned handle drops.
    pub(crate) async fn download(
        &self,
        digest: &str,
        expected: u64,
        tmp: &std::path::Path,
        progress: Option<Progress<'_>>,
    ) -> Result<(tempfile::NamedTempFile, u64), RemoteError> {
        let key = self.object_key(digest);
        let corrupt = |reason: String| RemoteError::Corrupt {
            bucket: self.config.bucket.clone(),
            key: key.clone(),
            reason,
        };
        let mut got = self.get(&key).await?;
        let mut file = tempfile::Builder::new()
            .prefix("pull-")
            .tempfile_in(tmp)
            .map_err(RemoteError::io("create", tmp))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = got
            .body
            .try_next()
            .await
            .map_err(|e| self.service("read", &key, e))?
        {
            size += chunk.len() as u64;
            if size > expected {
                return Err(corrupt(format!(
                    "longer than the {expected} bytes of its index"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(RemoteError::io("write", file.path()))?;
            if let Some(p) = progress {
                p(size, expected);
            }
        }
        if size != expected {
            return Err(corrupt(format!("truncated: {size} of {expected} bytes")));
        }
        let got_digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got_digest != digest {
            return Err(corrupt(format!("its bytes hash to {got_digest}")));
        }
        file.as_file()
            .sync_all()
            .map_err(RemoteError::io("sync", file.path()))?;
        Ok((file, size))
    }
}
