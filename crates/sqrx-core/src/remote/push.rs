//! Pushing a layer: its image once per digest (in parts, resumable, when large), then its
//! name's index.

use std::collections::HashMap;
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

/// A part already in an unfinished upload: its ETag, size and SHA-256 (base64).
struct Uploaded {
    etag: String,
    size: u64,
    sha256: Option<String>,
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
        self.rt.block_on(self.push_async(&layer, progress))
    }

    async fn push_async(
        &self,
        layer: &Layer,
        progress: Option<Progress<'_>>,
    ) -> Result<PushReport, RemoteError> {
        let key = self.object_key(&layer.digest);
        let mut report = PushReport {
            name: layer.name.to_string(),
            digest: layer.digest.clone(),
            key: key.clone(),
            uploaded_bytes: 0,
            parts_reused: 0,
            indexed: false,
        };
        if !self.has_object(&key, layer.size, &layer.digest).await? {
            if layer.size <= self.config.part_size {
                self.put_whole(layer, &key).await?;
                report.uploaded_bytes = layer.size;
            } else {
                let (sent, reused) = self.put_in_parts(layer, &key, progress).await?;
                report.uploaded_bytes = sent;
                report.parts_reused = reused;
            }
        }
        if let Some(p) = progress {
            p(layer.size, layer.size);
        }
        let names_it = match self.index(&layer.name).await {
            Ok(indexed) => indexed.digest == layer.digest,
            Err(RemoteError::NotFound { .. } | RemoteError::Corrupt { .. }) => false,
            Err(e) => return Err(e),
        };
        if !names_it {
            // Only now: a reader never finds an index whose image is not complete.
            let index_key = self.index_key(&layer.name);
            let json = serde_json::to_vec_pretty(layer).map_err(|e| RemoteError::Corrupt {
                bucket: self.config.bucket.clone(),
                key: index_key.clone(),
                reason: e.to_string(),
            })?;
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&index_key)
                .content_type("application/json")
                .body(ByteStream::from(json))
                .send()
                .await
                .map_err(|e| self.failed("put", &index_key, e))?;
            report.indexed = true;
        }
        tracing::info!(layer = %layer.name, key = %key, uploaded = report.uploaded_bytes, "layer pushed");
        Ok(report)
    }

    /// Is the complete image at `key` (`size` bytes, uploaded by sqrx as `digest`) there?
    async fn has_object(&self, key: &str, size: u64, digest: &str) -> Result<bool, RemoteError> {
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
    async fn put_whole(&self, layer: &Layer, key: &str) -> Result<(), RemoteError> {
        let bytes = std::fs::read(&layer.path).map_err(RemoteError::io("read", &layer.path))?;
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        crate::faults::point("remote.put")?;
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha)
            .metadata("sqrx-digest", &layer.digest)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.failed("put", key, e))?;
        Ok(())
    }

    /// A multipart upload of the image, resuming an unfinished one of the same key: parts the
    /// service holds with the right size and SHA-256 are kept. Bytes sent and parts reused.
    async fn put_in_parts(
        &self,
        layer: &Layer,
        key: &str,
        progress: Option<Progress<'_>>,
    ) -> Result<(u64, usize), RemoteError> {
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
                    .metadata("sqrx-digest", &layer.digest)
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
            std::fs::File::open(&layer.path).map_err(RemoteError::io("open", &layer.path))?;
        let part_size = self.config.part_size;
        let count = layer.size.div_ceil(part_size);
        let (mut sent, mut reused) = (0u64, 0usize);
        let mut completed = Vec::with_capacity(count as usize);
        for index in 0..count {
            let number = i32::try_from(index + 1)
                .map_err(|_| self.service("upload", key, "more than 2^31 parts"))?;
            let offset = index * part_size;
            let len = part_size.min(layer.size - offset);
            let mut chunk = vec![0u8; len as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut chunk))
                .map_err(RemoteError::io("read", &layer.path))?;
            let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&chunk));
            let keep = held
                .remove(&number)
                .filter(|p| p.size == len && p.sha256.as_deref().is_none_or(|s| s == sha));
            let etag = match keep {
                Some(p) => {
                    reused += 1;
                    p.etag
                }
                None => {
                    crate::faults::point("remote.part")?;
                    let done = self
                        .client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .checksum_algorithm(ChecksumAlgorithm::Sha256)
                        .checksum_sha256(&sha)
                        .body(ByteStream::from(chunk))
                        .send()
                        .await
                        .map_err(|e| self.failed("upload part", key, e))?;
                    sent += len;
                    done.e_tag().unwrap_or_default().to_string()
                }
            };
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .checksum_sha256(sha)
                    .build(),
            );
            if let Some(p) = progress {
                p(offset + len, layer.size);
            }
        }
        crate::faults::point("remote.complete")?;
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed("complete upload", key, e))?;
        Ok((sent, reused))
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
    ) -> Result<HashMap<i32, Uploaded>, RemoteError> {
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
                        Uploaded {
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
