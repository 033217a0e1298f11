//! `/v1/sandboxes/{id}/files/{path}`: read, list, write and remove files inside a sandbox.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::model::FileView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query, RawBody};
use crate::state::AppState;

/// Options of `GET .../files/{path}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ReadQuery {
    /// Present (`?list`): list the directory as JSON instead of reading a file.
    pub list: Option<String>,
    /// Present (`?stat`): describe the entry as JSON instead of reading it.
    pub stat: Option<String>,
}

/// Options of `PUT .../files/{path}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct WriteQuery {
    /// Permission bits in octal (default `644`).
    pub mode: Option<String>,
    /// Present (`?dir`): create a directory (and its parents) instead of writing a file.
    pub dir: Option<String>,
}

/// Options of `DELETE .../files/{path}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    /// Remove a directory and everything in it.
    #[serde(default)]
    pub recursive: bool,
}

/// The 413 answer to a read of a file larger than the server returns whole.
fn file_too_large(path: &str, size: u64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{path} is {size} bytes, over the server's maximum read of {max} bytes \
             (limits.max_file_read_bytes); download it with GET .../archive instead"
        ),
    )
}

fn abs(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

async fn read(
    state: AppState,
    id: String,
    path: String,
    q: ReadQuery,
) -> Result<Response, ApiError> {
    if q.list.is_some() {
        let files = state.blocking(move |rt| rt.get(&id)?.list(&path)).await?;
        let views: Vec<FileView> = files.into_iter().map(FileView::from).collect();
        return Ok(Json(views).into_response());
    }
    if q.stat.is_some() {
        let info = state.blocking(move |rt| rt.get(&id)?.stat(&path)).await?;
        return Ok(Json(FileView::from(info)).into_response());
    }
    // Files past the server's maximum are refused (413) rather than read into memory: looked
    // at first, and checked again after the read in case the file grew in between.
    let max = state.config().limits.max_file_read_bytes;
    let data = state
        .blocking(move |rt| {
            let sandbox = rt.get(&id)?;
            let size = sandbox.stat(&path)?.size;
            if size > max {
                return Ok(Err(file_too_large(&path, size, max)));
            }
            let data = sandbox.read_file(&path)?;
            let size = data.len() as u64;
            if size > max {
                return Ok(Err(file_too_large(&path, size, max)));
            }
            Ok::<_, sqrx_core::SandboxError>(Ok(data))
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// `GET /v1/sandboxes/{id}/files/{path}`: the file's bytes, or with `?list` the directory's
/// entries, or with `?stat` the entry itself.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/{path}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("path" = String, Path, description = "Path inside the sandbox"), ReadQuery),
    responses((status = 200, description = "File bytes (application/octet-stream), or JSON \
        with ?list / ?stat", body = Vec<FileView>),
              (status = 400, description = "Invalid path, or a directory read as a file", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 413, description = "The file is larger than the server's maximum read", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read(state, id, abs(&path), q).await
}

/// `GET /v1/sandboxes/{id}/files`: the root directory (as `?list`, or `?stat`).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"), ReadQuery),
    responses((status = 200, body = Vec<FileView>), (status = 404, body = ErrorBody)))]
pub async fn get_root(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(mut q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    if q.stat.is_none() {
        q.list = Some(String::new());
    }
    read(state, id, "/".into(), q).await
}

/// `PUT /v1/sandboxes/{id}/files/{path}`: write the body to the file (parents created), or
/// with `?dir` create the directory.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/{path}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("path" = String, Path, description = "Path inside the sandbox"), WriteQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Written", body = FileView),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    RawBody(body): RawBody,
) -> Result<Json<FileView>, ApiError> {
    let path = abs(&path);
    let mode = match &q.mode {
        None => 0o644,
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid mode {m:?}: expected octal bits like 644"))
            })?,
    };
    let make_dir = q.dir.is_some();
    let info = state
        .blocking(move |rt| {
            let s = rt.get(&id)?;
            if make_dir {
                s.mkdir(&path)?;
            } else {
                s.write_file(&path, &body, mode)?;
            }
            s.stat(&path)
        })
        .await?;
    Ok(Json(info.into()))
}

/// `DELETE /v1/sandboxes/{id}/files/{path}`.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/files/{path}", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("path" = String, Path, description = "Path inside the sandbox"), RemoveQuery),
    responses((status = 204, description = "Removed"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let path = abs(&path);
    state
        .blocking(move |rt| rt.get(&id)?.remove(&path, q.recursive))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
