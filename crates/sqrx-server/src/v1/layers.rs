//! `/v1/layers`: list, show, upload (streamed to disk) and remove layers.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::TryStreamExt;
use serde::Deserialize;
use sqrx_core::{BuildOptions, LayerName};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::model::LayerView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::tenants::{self, Caller, Identity};

/// `GET /v1/layers`: every layer, by name.
#[utoipa::path(get, path = "/v1/layers", tag = "v1",
    responses((status = 200, body = Vec<LayerView>)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<LayerView>>, ApiError> {
    let owners = tenants::layer_owners(&state, &caller).await?;
    let layers = state.blocking(|rt| rt.layers().list()).await?;
    Ok(Json(
        layers
            .into_iter()
            .filter(|l| tenants::may_use_layer(&caller, &owners, l.name.as_str()))
            .map(LayerView::from)
            .collect(),
    ))
}

/// 404 for a layer `caller` may not see, as for one that does not exist.
async fn visible(state: &AppState, caller: &Identity, name: &LayerName) -> Result<(), ApiError> {
    let owners = tenants::layer_owners(state, caller).await?;
    if tenants::may_use_layer(caller, &owners, name.as_str()) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("layer {name} not found")))
    }
}

fn layer_name(name: String) -> Result<LayerName, ApiError> {
    Ok(LayerName::new(name)?)
}

/// `GET /v1/layers/{name}`.
#[utoipa::path(get, path = "/v1/layers/{name}", tag = "v1",
    params(("name" = String, Path, description = "Layer name, NNN-name")),
    responses((status = 200, body = LayerView),
              (status = 400, description = "Invalid name", body = ErrorBody),
              (status = 404, description = "No such layer", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<LayerView>, ApiError> {
    let name = layer_name(name)?;
    visible(&state, &caller, &name).await?;
    let layer = state.blocking(move |rt| rt.layers().get(&name)).await?;
    Ok(Json(layer.into()))
}

/// `DELETE /v1/layers/{name}`: refused (409) while a sandbox uses it.
#[utoipa::path(delete, path = "/v1/layers/{name}", tag = "v1",
    params(("name" = String, Path, description = "Layer name")),
    responses((status = 204, description = "Removed"),
              (status = 404, body = ErrorBody),
              (status = 409, description = "In use by a sandbox", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(name)?;
    writable(&state, &caller, &name).await?;
    let removed = name.clone();
    state.blocking(move |rt| rt.remove_layer(&name)).await?;
    if let Some(t) = state.tenants() {
        t.store().forget_layer(removed.as_str()).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Users may replace or remove only the layers they uploaded (another user's is missing to
/// them; a shared one is the operator's: 403).
async fn writable(state: &AppState, caller: &Identity, name: &LayerName) -> Result<(), ApiError> {
    let Some(me) = caller.scope() else {
        return Ok(());
    };
    let owners = tenants::layer_owners(state, caller).await?;
    match owners.get(name.as_str()) {
        Some(owner) if owner == me => Ok(()),
        Some(_) => Err(ApiError::not_found(format!("layer {name} not found"))),
        None => {
            let lookup = name.clone();
            let exists = state
                .blocking(move |rt| Ok::<_, ApiError>(rt.layers().contains(&lookup)))
                .await?;
            if exists {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("layer {name} is shared: only an admin may change it"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Options of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// Replace an existing layer of the same name.
    #[serde(default)]
    pub force: bool,
    /// Push the layer into the bucket before answering (502 if that fails: the layer is
    /// stored, and pushed in the background later). Without it, a server with a bucket
    /// pushes it in the background (`GET /v1/remote/uploads`).
    #[serde(default)]
    pub sync: bool,
}

/// What an upload holds, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// A ready squashfs image, verified before it is stored.
    Image,
    /// A tar stream (plain, gzip or zstd), packed into an image.
    Tar,
}

/// Content types of squashfs images.
pub const IMAGE_TYPES: [&str; 2] = ["application/vnd.squashfs", "application/x-squashfs"];
/// Content types of tar streams (compression is detected from the bytes).
pub const TAR_TYPES: [&str; 7] = [
    "application/x-tar",
    "application/tar",
    "application/gzip",
    "application/x-gzip",
    "application/x-gtar",
    "application/zstd",
    "application/x-zstd",
];

/// The kind of upload `headers` announce.
pub fn upload_kind(headers: &HeaderMap) -> Result<UploadKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if IMAGE_TYPES.contains(&essence.as_str()) {
        Ok(UploadKind::Image)
    } else if TAR_TYPES.contains(&essence.as_str()) {
        Ok(UploadKind::Tar)
    } else {
        Err(ApiError::unsupported_media_type(format!(
            "Content-Type {ct:?} is neither a squashfs image ({}) nor a tar stream ({})",
            IMAGE_TYPES.join(", "),
            TAR_TYPES.join(", ")
        )))
    }
}

/// A reader that fails once more than `remaining` bytes came through, and says so.
pub(crate) struct Limited<R> {
    pub(crate) inner: R,
    pub(crate) remaining: u64,
    pub(crate) exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("upload larger than the limit"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The length a request announces, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `PUT /v1/layers/{name}`: store the body as a layer. The body is streamed into the store
/// (a tar is packed as it arrives, an image is copied then verified), never held in memory.
#[utoipa::path(put, path = "/v1/layers/{name}", tag = "v1",
    params(("name" = String, Path, description = "Layer name"), UploadQuery),
    request_body(description = "A squashfs image (application/vnd.squashfs) or a tar stream \
        (application/x-tar, application/gzip, application/zstd)", content_type = "application/octet-stream",
        content = Vec<u8>),
    responses((status = 201, body = LayerView),
              (status = 400, description = "Invalid name or archive", body = ErrorBody),
              (status = 409, description = "Exists (use ?force=true)", body = ErrorBody),
              (status = 413, description = "Larger than the upload limit", body = ErrorBody),
              (status = 415, description = "Unknown Content-Type", body = ErrorBody),
              (status = 501, description = "`sync` on a server without a bucket", body = ErrorBody),
              (status = 502, description = "`sync`: the bucket refused or failed", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<LayerView>), ApiError> {
    let name = layer_name(name)?;
    writable(&state, &caller, &name).await?;
    if q.sync {
        crate::v1::remote::bucket(&state)?;
    }
    let owned = name.clone();
    let kind = upload_kind(&headers)?;
    let limit = state.config().max_upload_bytes;
    if content_length(&headers).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let exceeded = Arc::new(AtomicBool::new(false));
    let reader = Limited {
        // The bridge blocks on the async body from the blocking thread the import runs on.
        inner: SyncIoBridge::new(StreamReader::new(stream)),
        remaining: limit,
        exceeded: Arc::clone(&exceeded),
    };
    let force = q.force;
    let origin = format!("upload:{name}");
    let stored = state
        .blocking(move |rt| match kind {
            UploadKind::Image => rt.layers().import_image(&name, reader, &origin, force),
            UploadKind::Tar => {
                let opts = BuildOptions {
                    force,
                    ..BuildOptions::default()
                };
                rt.layers()
                    .import_tar(&name, reader, &origin, &opts)
                    .map(|r| r.layer)
            }
        })
        .await;
    if exceeded.load(Ordering::Relaxed) {
        return Err(ApiError::too_large(limit));
    }
    let stored = stored?;
    // A user's upload is the user's; the operator's and admins' are shared.
    if let (Some(me), Some(t)) = (caller.scope(), state.tenants()) {
        t.store().set_layer_owner(owned.as_str(), me).await?;
    }
    // Into the bucket: now with `?sync=true`, else in the background.
    let pushed = owned.clone();
    if q.sync {
        crate::v1::remote::with_remote(&state, move |remote, rt| {
            remote.push(rt.layers(), &pushed, None)
        })
        .await?;
    } else if state.config().remote.is_some() {
        state
            .blocking(move |rt| rt.queue_layer_push(&pushed))
            .await?;
    }
    Ok((StatusCode::CREATED, Json(stored.into())))
}
