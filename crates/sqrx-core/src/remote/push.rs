//! Pushing a layer: its image once per digest (in parts, resumable, when large), then its
//! name's index.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Progress, Remote, RemoteError};
use crate::layer::{Layer, LayerName, LayerStore};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The layer.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// The image's key in the bucket.
    pub key: String,
    /// Image bytes sent this time (0 when the bucket had the image already).
    pub uploaded_bytes: u64,
    /// Parts of an earlier, interrupted upload that were reused.
    pub parts_reused: usize,
    /// Whether the name's index was written (it already named this image otherwise).
    pub indexed: bool,
}

/// What a part upload task gives back: its number, size, SHA-256 and the service's answer.
type PartResult = (
    i32,
    u64,
    String,
    Result<
        aws_sdk_s3::operation::upload_part::UploadPartOutput,
        aws_sdk_s3::error::SdkError<
            aws_sdk_s3::operation::upload_part::UploadPartError,
            aws_sdk_s3::config::http::HttpResponse,
        >,
    >,
);

/// A part already in an unfinished upload: its ETag, size and SHA-256 (base64).
struct HeldPart {
    etag: String,
    size: u64,
    sha256: Option<String>,
}

/// An image to upload: a layer's, or a snapshot's.
pub(crate) struct Image<'a> {
    /// Where it is.
    pub path: &'a std::path::Path,
    /// Its size in bytes.
    pub size: u64,
    /// Its digest (`sha256:<hex>`), which names its object.
    pub digest: &'a str,
}

impl<'a> Image<'a> {
    /// A layer's image.
    pub fn of(layer: &'a Layer) -> Self {
        Image {
            path: &layer.path,
            size: layer.size,
            digest: &layer.digest,
        }
    }
}

/// What uploading an image did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Uploaded {
    /// Bytes sent.
    pub sent: u64,
    /// Parts of an interrupted upload reused.
    pub reused: usize,
}

impl Remote {
    /// Push layer `name` of `store`: its image unless the bucket has it (same digest), then
    /// its index unless that names the image already.
    pub fn push(
        &self,
        store: &LayerStore,
        name: &LayerName,
        progress: Option<Progress<'_>>,
    ) -> Result<PushReport, RemoteError> {
        let layer = store.get(name)?;
        let report = self.rt.block_on(self.push_async(&layer, progress))?;
        // Whoever pushed it, `uploads` shows it in the bucket (the store is `<data>/layers`).
        if let Some(data_dir) = store.dir().parent() {
            let uploads = super::Uploads::new(data_dir);
            if let Err(e) =
                uploads.mark_pushed(super::UploadKind::Layer, &report.name, &report.digest)
            {
                tracing::warn!(layer = %report.name, error = %e, "upload state not recorded");
            }
        }
        Ok(report)
    }

    pub(crate) async fn push_async(
        &self,
        layer: &Layer,
        progress: Option<Progress<'_>>,
    ) -> Result<PushReport, RemoteError> {
        let key = self.object_key(&layer.digest);
        let uploaded = self.upload_image(&Image::of(layer), progress).await?;
        let names_it = match self.index(&layer.name).await {
            Ok(indexed) => indexed.digest == layer.digest,
            Err(RemoteError::NotFound { .. } | RemoteError::Corrupt { .. }) => false,
            Err(e) => return Err(e),
        };
        if !names_it {
            // Only now: a reader never finds an index whose image is not complete.
            self.put_json(&self.index_key(&layer.name), layer).await?;
        }
        tracing::info!(layer = %layer.name, key = %key, uploaded = uploaded.sent, "layer pushed");
        Ok(PushReport {
            name: layer.name.to_string(),
            digest: layer.digest.clone(),
            key,
            uploaded_bytes: uploaded.sent,
            parts_reused: uploaded.reused,
            indexed: !names_it,
        })
    }

    /// Upload `image` to its content-addressed key unless the bucket has it complete.
    pub(crate) async fn upload_image(
        &self,
        image: &Image<'_>,
        progress: Option<Progress<'_>>,
    ) -> Result<Uploaded, RemoteError> {
        let key = self.object_key(image.digest);
        let mut done = Uploaded::default();
        if !self.has_object(&key, image.size, image.digest).await? {
            if image.size <= self.config.part_size {
                self.put_whole(image, &key).await?;
                done.sent = image.size;
            } else {
                done = self.put_in_parts(image, &key, progress).await?;
            }
        }
        if let Some(p) = progress {
            p(image.size, image.size);
        }
        Ok(done)
    }

    /// Is the complete image at `key` (`size` bytes, uploaded by sqrx as `digest`) there?
    pub(crate) async fn has_object(
        &self,
        key: &str,
        size: u64,
        digest: &str,
    ) -> Result<bool, RemoteError> {
        match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => {
                let length = head.content_length().and_then(|l| u64::try_from(l).ok());
                let ours = head
                    .metadata()
                    .and_then(|m| m.get("sqrx-digest"))
                    .is_some_and(|d| d == digest);
                Ok(length == Some(size) && ours)
            }
            Err(e) => match self.failed("head", key, e) {
                RemoteError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// One `PutObject` with the image's SHA-256 for the service to check.
    async fn put_whole(&self, image: &Image<'_>, key: &str) -> Result<(), RemoteError> {
        let bytes = std::fs::read(image.path).map_err(RemoteError::io("read", image.path))?;
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        crate::faults::point("remote.put")?;
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha)
            .metadata("sqrx-digest", image.digest)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.failed("put", key, e))?;
        Ok(())
    }

    /// A multipart upload of the image, `config.concurrency` parts at a time, resuming an
    /// unfinished one of the same key: parts the service holds with the right size and
    /// SHA-256 are kept. A failure lets the parts in flight finish (so that the next push
    /// reuses them) and leaves the upload unfinished, invisible to readers.
    async fn put_in_parts(
        &self,
        image: &Image<'_>,
        key: &str,
        progress: Option<Progress<'_>>,
    ) -> Result<Uploaded, RemoteError> {
        let bucket = &self.config.bucket;
        let (upload_id, mut held) = match self.unfinished_upload(key).await? {
            Some(id) => {
                let parts = self.parts_of(key, &id).await?;
                (id, parts)
            }
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .metadata("sqrx-digest", image.digest)
                    .send()
                    .await
                    .map_err(|e| self.failed("create upload", key, e))?;
                let id = created
                    .upload_id()
                    .ok_or_else(|| self.service("create upload", key, "no upload id"))?
                    .to_string();
                (id, HashMap::new())
            }
        };
        let mut file =
            std::fs::File::open(image.path).map_err(RemoteError::io("open", image.path))?;
        let part_size = self.config.part_size;
        let count = image.size.div_ceil(part_size);
        let mut done = Uploaded::default();
        let mut shipped = 0u64;
        let mut completed: BTreeMap<i32, CompletedPart> = BTreeMap::new();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut failure: Option<RemoteError> = None;
        for index in 0..count {
            let number = match i32::try_from(index + 1) {
                Ok(n) => n,
                Err(_) => {
                    failure = Some(self.service("upload", key, "more than 2^31 parts"));
                    break;
                }
            };
            let offset = index * part_size;
            let len = part_size.min(image.size - offset);
            let mut chunk = vec![0u8; len as usize];
            if let Err(e) = file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut chunk))
            {
                failure = Some(RemoteError::io("read", image.path)(e));
                break;
            }
            let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&chunk));
            let keep = held
                .remove(&number)
                .filter(|p| p.size == len && p.sha256.as_deref().is_none_or(|s| s == sha));
            if let Some(p) = keep {
                done.reused += 1;
                shipped += len;
                completed.insert(number, completed_part(number, p.etag, sha));
                continue;
            }
            // Checked here, in order, so that a test stopping the n-th part stops exactly it.
            if let Err(e) = crate::faults::point("remote.part") {
                failure = Some(e.into());
                break;
            }
            while in_flight.len() >= self.config.concurrency.max(1) {
                if let Err(e) =
                    self.part_done(in_flight.join_next().await, key, &mut completed, &mut done)
                {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
            let request = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&sha)
                .body(ByteStream::from(chunk));
            in_flight.spawn(async move { (number, len, sha, request.send().await) });
            shipped += len;
            if let Some(p) = progress {
                p(shipped, image.size);
            }
        }
        // Parts in flight finish whatever happened: the next push reuses them.
        while !in_flight.is_empty() {
            let r = self.part_done(in_flight.join_next().await, key, &mut completed, &mut done);
            if let Err(e) = r {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        crate::faults::point("remote.complete")?;
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed.into_values().collect()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed("complete upload", key, e))?;
        Ok(done)
    }

    /// Record a part upload that finished (or why it failed).
    fn part_done(
        &self,
        joined: Option<Result<PartResult, tokio::task::JoinError>>,
        key: &str,
        completed: &mut BTreeMap<i32, CompletedPart>,
        done: &mut Uploaded,
    ) -> Result<(), RemoteError> {
        let Some(joined) = joined else {
            return Ok(());
        };
        let (number, len, sha, sent) = joined.map_err(|e| self.service("upload part", key, e))?;
        let output = sent.map_err(|e| self.failed("upload part", key, e))?;
        let etag = output.e_tag().unwrap_or_default().to_string();
        completed.insert(number, completed_part(number, etag, sha));
        done.sent += len;
        Ok(())
    }

    /// The newest unfinished multipart upload of `key`, if any.
    async fn unfinished_upload(&self, key: &str) -> Result<Option<String>, RemoteError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.config.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| self.failed("list uploads", key, e))?;
        Ok(listed
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(key))
            .max_by_key(|u| u.initiated().map(|t| (t.secs(), t.subsec_nanos())))
            .and_then(|u| u.upload_id().map(str::to_string)))
    }

    /// The parts an unfinished upload holds, by number.
    async fn parts_of(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<HashMap<i32, HeldPart>, RemoteError> {
        let mut parts = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.config.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| self.failed("list parts", key, e))?;
            for p in page.parts() {
                if let (Some(n), Some(etag), Some(size)) = (p.part_number(), p.e_tag(), p.size()) {
                    parts.insert(
                        n,
                        HeldPart {
                            etag: etag.to_string(),
                            size: u64::try_from(size).unwrap_or(0),
                            sha256: p.checksum_sha256().map(str::to_string),
                        },
                    );
                }
            }
            match page.next_part_number_marker() {
                Some(m) if page.is_truncated() == Some(true) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(parts)
    }
}

fn completed_part(number: i32, etag: String, sha: String) -> CompletedPart {
    CompletedPart::builder()
        .part_number(number)
        .e_tag(etag)
        .checksum_sha256(sha)
        .build()
}
