//! A layer store's copy in S3 (any S3-compatible service): push layers up, pull the ones a
//! machine lacks, sync both ways. Behind the `s3` cargo feature (`aws-sdk-s3`).
//!
//! Objects are content-addressed: an image is `{prefix}layers/sha256/{hex}.squashfs`, so the
//! same image goes up once whatever its names; each name is a small index object
//! `{prefix}layers/names/{name}.json` (the layer's metadata, its digest among them), written
//! only after its image is complete. An upload stopped at any point therefore leaves nothing a
//! reader takes for a layer: a multipart upload is invisible until completed, and the next
//! push of the same image resumes it, reusing the parts already there (each part's SHA-256
//! checked by the service). A pull writes the object to a private file while hashing it and
//! publishes it only when its size and digest are those of the index: a truncated or corrupt
//! object is an error naming its key, never a mounted image. Pulls of one image by several
//! threads or processes download it once (a lock file per digest).
//!
//! The calls block (they run the SDK on a runtime of their own): from async code, call them
//! on a blocking thread.

mod cache;
mod config;
mod error;
mod pull;
mod push;
mod snapshots;
mod uploads;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

pub use cache::RECENT_USE;
pub use config::{DEFAULT_PART_SIZE, MIN_PART_SIZE, RemoteConfig, StaticCredentials};
pub use error::RemoteError;
pub use pull::PullReport;
pub use push::PushReport;
pub use snapshots::{RemoteSnapshot, SnapshotPushReport, StackImage};
pub(crate) use uploads::Wake;
pub use uploads::{MAX_BACKOFF, SCAN_INTERVAL, Upload, UploadKind, UploadState, Uploads, backoff};

use crate::layer::{Layer, LayerName, LayerStore};

/// Progress of a transfer: bytes done so far and in all.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What [`Remote::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Layers pushed (new in the bucket).
    pub pushed: Vec<String>,
    /// Layers pulled (new here).
    pub pulled: Vec<String>,
}

/// A connection to the bucket of a [`RemoteConfig`].
pub struct Remote {
    config: RemoteConfig,
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("config", &self.config)
            .finish()
    }
}

impl Remote {
    /// Connect (no request is sent yet: a bad endpoint or missing credentials show at the
    /// first call).
    pub fn connect(config: RemoteConfig) -> Result<Self, RemoteError> {
        config.validate()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RemoteError::io("start a runtime for", "S3"))?;
        let shared = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(config.region.clone()))
                .load(),
        );
        let mut builder =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(c) = &config.credentials {
            builder = builder.credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "sqrx",
            ));
        }
        let client = aws_sdk_s3::Client::from_conf(builder.build());
        Ok(Remote { config, client, rt })
    }

    /// The settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// The key of the image with `digest` (`sha256:<hex>`).
    pub fn object_key(&self, digest: &str) -> String {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        format!("{}layers/sha256/{hex}.squashfs", self.config.prefix)
    }

    /// The key of the index of layer `name`.
    pub fn index_key(&self, name: &LayerName) -> String {
        format!("{}layers/names/{name}.json", self.config.prefix)
    }

    fn names_prefix(&self) -> String {
        format!("{}layers/names/", self.config.prefix)
    }

    /// The layers in the bucket, by name.
    pub fn list(&self) -> Result<Vec<Layer>, RemoteError> {
        self.rt.block_on(self.list_async())
    }

    async fn list_async(&self) -> Result<Vec<Layer>, RemoteError> {
        let prefix = self.names_prefix();
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.failed("list", &prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let stem = key
                    .strip_prefix(&prefix)
                    .and_then(|k| k.strip_suffix(".json"));
                if let Some(name) = stem.and_then(|s| LayerName::new(s).ok()) {
                    names.push(name);
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut layers = Vec::with_capacity(names.len());
        for name in names {
            match self.index(&name).await {
                Ok(layer) => layers.push(layer),
                // Removed meanwhile.
                Err(RemoteError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        layers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(layers)
    }

    /// The layer `name` as the bucket indexes it, if it does.
    pub fn layer(&self, name: &LayerName) -> Result<Option<Layer>, RemoteError> {
        match self.rt.block_on(self.index(name)) {
            Ok(l) => Ok(Some(l)),
            Err(RemoteError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of `name` in the bucket.
    async fn index(&self, name: &LayerName) -> Result<Layer, RemoteError> {
        let key = self.index_key(name);
        let layer: Layer = self.get_json(&key, "a layer index").await?;
        if layer.name != *name || !is_digest(&layer.digest) {
            return Err(RemoteError::Corrupt {
                bucket: self.config.bucket.clone(),
                key,
                reason: format!("names {} with digest {:?}", layer.name, layer.digest),
            });
        }
        Ok(layer)
    }

    /// Start reading the object at `key`.
    async fn get(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, RemoteError> {
        self.client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("get", key, e))
    }

    /// The small JSON object at `key` (`what` names it in the error when it does not parse).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<T, RemoteError> {
        let bytes = self
            .get(key)
            .await?
            .body
            .collect()
            .await
            .map_err(|e| self.service("read", key, e))?
            .into_bytes();
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Corrupt {
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            reason: format!("not {what}: {e}"),
        })
    }

    /// Write `value` as the JSON object at `key`.
    async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), RemoteError> {
        let json = serde_json::to_vec_pretty(value).map_err(|e| RemoteError::Corrupt {
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(json))
            .send()
            .await
            .map_err(|e| self.failed("put", key, e))?;
        Ok(())
    }

    /// Push every local layer the bucket lacks, pull every remote one this store lacks. A name
    /// on both sides with different images is left as it is and reported as an error at the
    /// end (after everything else synced).
    pub fn sync(&self, store: &LayerStore) -> Result<SyncReport, RemoteError> {
        let remote = self.list()?;
        let local = store.list()?;
        let mut report = SyncReport::default();
        let mut diverged = None;
        for layer in &local {
            match remote.iter().find(|r| r.name == layer.name) {
                None => {
                    self.push(store, &layer.name, None)?;
                    report.pushed.push(layer.name.to_string());
                }
                Some(r) if r.digest != layer.digest => {
                    diverged.get_or_insert(RemoteError::Diverged {
                        name: layer.name.to_string(),
                        local: layer.digest.clone(),
                        remote: r.digest.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        for r in &remote {
            if !local.iter().any(|l| l.name == r.name) {
                self.pull(store, &r.name, false, None)?;
                report.pulled.push(r.name.to_string());
            }
        }
        match diverged {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The error of a failed request on `key`.
    fn failed<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> RemoteError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (bucket, key) = (self.config.bucket.clone(), key.to_string());
        // HEAD answers carry no error body: their status is all there is.
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = match (e.code(), status) {
            (Some(code), _) => code.to_string(),
            (None, Some(403)) => "Forbidden".into(),
            (None, Some(404)) => "NotFound".into(),
            (None, _) => String::new(),
        };
        let detail = match e.message() {
            Some(m) if !code.is_empty() => format!("{code}: {m}"),
            Some(m) => m.to_string(),
            None if !code.is_empty() => code.clone(),
            None => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        };
        match &e {
            SdkError::ServiceError(_) => match code.as_str() {
                "NoSuchKey" | "NotFound" | "NoSuchUpload" | "NoSuchBucket" => {
                    RemoteError::NotFound { bucket, key }
                }
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "InvalidToken"
                | "ExpiredToken"
                | "InvalidClientTokenId"
                | "Forbidden" => RemoteError::Denied {
                    op,
                    bucket,
                    key,
                    detail,
                },
                _ => RemoteError::Service {
                    op,
                    bucket,
                    key,
                    detail,
                },
            },
            _ => {
                let full = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                if full.contains("credentials") {
                    RemoteError::NoCredentials { detail: full }
                } else {
                    RemoteError::Service {
                        op,
                        bucket,
                        key,
                        detail: full,
                    }
                }
            }
        }
    }

    fn service(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Service {
            op,
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            detail: e.to_string(),
        }
    }
}

/// `sha256:` and 64 lower-case hex digits.
fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

impl crate::Runtime {
    /// The connection to the store's bucket, if the runtime has one (made at the first call).
    pub fn remote(&self) -> Result<Option<&Remote>, RemoteError> {
        let Some(config) = &self.inner.config.remote else {
            return Ok(None);
        };
        if let Some(r) = self.inner.remote.get() {
            return Ok(Some(r));
        }
        let made = Remote::connect(config.clone())?;
        // Another thread may have connected meanwhile: either connection will do.
        Ok(Some(self.inner.remote.get_or_init(|| made)))
    }

    /// The connection to the runtime's bucket, or [`RemoteError::Config`] saying how to
    /// name one.
    pub fn bucket(&self) -> Result<&Remote, RemoteError> {
        self.remote()?.ok_or_else(|| RemoteError::Config {
            reason: "no bucket: set SQRX_S3_BUCKET (or SQUASH_S3_BUCKET), and SQRX_S3_ENDPOINT \
                     for a service other than AWS, before opening the runtime"
                .into(),
        })
    }

    /// Pull layer `name`, which this store lacks, from the bucket: what a create does for a
    /// layer it needs and does not have.
    pub(crate) fn pull_layer(&self, name: &LayerName) -> Result<Layer, crate::SandboxError> {
        let Some(remote) = self.remote()? else {
            return Err(crate::LayerError::NotFound {
                name: name.to_string(),
            }
            .into());
        };
        let started = std::time::Instant::now();
        let report = remote.pull(&self.inner.store, name, false, None)?;
        tracing::info!(layer = %name, bytes = report.downloaded_bytes, ms = started.elapsed().as_millis() as u64,
            download_ms = report.download.as_millis() as u64, verify_ms = report.verify.as_millis() as u64,
            "layer pulled on create");
        let layer = self.inner.store.get(name)?;
        // The pulled layer counts as used now, so it is not the one evicted.
        self.note_layer_use(&layer);
        if let Err(e) = self.trim_cache() {
            tracing::warn!(error = %e, "the layer cache was not trimmed");
        }
        Ok(layer)
    }
}
