//! `/v1/sandboxes/{id}/archive?path=DIR`: a directory inside a sandbox as a tar stream, both
//! ways (`sqrx sandbox put`/`get` of a directory over HTTP). Bodies stream; neither side is
//! held in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::layers::{Limited, content_length};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// Pipe buffer between the archiver's thread and the response body.
const PIPE: usize = 64 * 1024;

/// The directory of an archive route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ArchiveQuery {
    /// Directory inside the sandbox (created with its parents on upload).
    pub path: String,
}

/// What an upload unpacked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unpacked {
    /// Entries written.
    pub entries: u64,
}

/// `PUT /v1/sandboxes/{id}/archive?path=DIR`: unpack the tar body into `DIR`.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/archive", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"), ArchiveQuery),
    request_body(description = "A tar stream (modes, owners, times, symlinks and hard links kept; \
        entries leaving DIR and device nodes are refused)", content_type = "application/x-tar",
        content = Vec<u8>),
    responses((status = 200, body = Unpacked),
              (status = 400, description = "Invalid path or archive", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 413, description = "Larger than the upload limit", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ArchiveQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Unpacked>, ApiError> {
    let limit = state.config().max_upload_bytes;
    if content_length(&headers).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let reader = Limited {
        // The bridge blocks on the async body from the blocking thread the unpacking runs on.
        inner: SyncIoBridge::new(StreamReader::new(
            body.into_data_stream().map_err(std::io::Error::other),
        )),
        remaining: limit,
        exceeded: Arc::clone(&exceeded),
    };
    let unpacked = state
        .blocking(move |rt| rt.get(&id)?.upload_tar(&q.path, reader))
        .await;
    if exceeded.load(Ordering::Relaxed) {
        return Err(ApiError::too_large(limit));
    }
    Ok(Json(Unpacked { entries: unpacked? }))
}

/// `GET /v1/sandboxes/{id}/archive?path=DIR`: `DIR` as a tar stream. The directory is checked
/// before the answer starts (404 and 400 come as JSON); a failure while streaming cuts the
/// stream short.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/archive", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"), ArchiveQuery),
    responses((status = 200, description = "A tar stream of the directory", content_type = "application/x-tar", body = Vec<u8>),
              (status = 400, description = "Invalid path, or not a directory", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ArchiveQuery>,
) -> Result<Response, ApiError> {
    let (sid, path) = (id.clone(), q.path.clone());
    let info = state.blocking(move |rt| rt.get(&sid)?.stat(&path)).await?;
    if info.kind != "dir" {
        return Err(ApiError::bad_request(format!(
            "{} is not a directory",
            q.path
        )));
    }
    let (writer, reader) = tokio::io::duplex(PIPE);
    let writer = SyncIoBridge::new(writer);
    let dir = q.path;
    tokio::spawn(async move {
        let done = state
            .blocking(move |rt| rt.get(&id)?.download_tar(&dir, writer))
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "archive download cut short");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(ReaderStream::new(reader)),
    )
        .into_response())
}
