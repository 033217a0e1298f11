//! The layer store's copy in S3 (`SQRX_S3_*`, see docs/s3.md): push and pull layers, sync,
//! list the bucket. Transfers run on the blocking pool; admins only on a server with users.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqrx_core::LayerName;
use sqrx_core::remote::{Remote, RemoteError};

use super::model::LayerView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, RawBody};
use crate::state::AppState;

/// What a push did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushView {
    /// The layer.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// The image's key in the bucket.
    pub key: String,
    /// Bytes sent (0: the bucket had the image).
    pub uploaded_bytes: u64,
    /// Parts of an interrupted upload that were reused.
    pub parts_reused: usize,
}

/// What a pull did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PullView {
    /// The layer.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// Bytes downloaded (0: it was here).
    pub downloaded_bytes: u64,
}

/// `POST /v1/layers/{name}/pull` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// Replace a local layer of that name that is another image.
    #[serde(default)]
    pub force: bool,
}

/// What a sync did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncView {
    /// Layers uploaded.
    pub pushed: Vec<String>,
    /// Layers downloaded.
    pub pulled: Vec<String>,
}

impl From<RemoteError> for ApiError {
    fn from(e: RemoteError) -> Self {
        let status = match &e {
            RemoteError::NotFound { .. } => StatusCode::NOT_FOUND,
            RemoteError::Diverged { .. } => StatusCode::CONFLICT,
            // The bucket refused or failed this server, not the client.
            RemoteError::NoCredentials { .. }
            | RemoteError::Denied { .. }
            | RemoteError::Service { .. }
            | RemoteError::Corrupt { .. } => StatusCode::BAD_GATEWAY,
            other => ApiError::status_of(other.kind()),
        };
        ApiError::new(status, e.to_string())
    }
}

/// 501 unless the server has a bucket.
pub(crate) fn bucket(state: &AppState) -> Result<(), ApiError> {
    match state.config().remote {
        Some(_) => Ok(()),
        None => Err(no_bucket()),
    }
}

fn no_bucket() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "this server has no bucket: start it with SQRX_S3_BUCKET (see docs/s3.md)",
    )
}

/// Run `f` with the runtime's connection to the bucket, on the blocking pool.
pub(crate) async fn with_remote<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Remote, &sqrx_core::Runtime) -> Result<T, RemoteError> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .blocking(move |rt| {
            let remote = rt.remote().map_err(ApiError::from)?.ok_or_else(no_bucket)?;
            f(remote, rt).map_err(ApiError::from)
        })
        .await
}

/// Upload a layer to the bucket (once per image; an interrupted upload resumes).
#[utoipa::path(post, path = "/v1/layers/{name}/push", tag = "v1",
    params(("name" = String, Path, description = "Layer name")),
    responses((status = 200, body = PushView),
              (status = 404, description = "No such layer", body = ErrorBody),
              (status = 501, description = "The server has no bucket", body = ErrorBody),
              (status = 502, description = "The bucket refused or failed", body = ErrorBody)))]
pub async fn push(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PushView>, ApiError> {
    let name = LayerName::new(name.as_str())?;
    let r = with_remote(&state, move |remote, rt| {
        remote.push(rt.layers(), &name, None)
    })
    .await?;
    Ok(Json(PushView {
        name: r.name,
        digest: r.digest,
        key: r.key,
        uploaded_bytes: r.uploaded_bytes,
        parts_reused: r.parts_reused,
    }))
}

/// Download a layer from the bucket, verified against its digest.
#[utoipa::path(post, path = "/v1/layers/{name}/pull", tag = "v1",
    params(("name" = String, Path, description = "Layer name")),
    request_body(content = Option<PullBody>),
    responses((status = 200, body = PullView),
              (status = 404, description = "Not in the bucket", body = ErrorBody),
              (status = 409, description = "A local layer of that name is another image", body = ErrorBody),
              (status = 501, description = "The server has no bucket", body = ErrorBody),
              (status = 502, description = "The bucket refused or failed, or the object is corrupt", body = ErrorBody)))]
pub async fn pull(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<PullView>, ApiError> {
    let name = LayerName::new(name.as_str())?;
    let force = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<PullBody>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
            .force
    };
    let r = with_remote(&state, move |remote, rt| {
        remote.pull(rt.layers(), &name, force, None)
    })
    .await?;
    Ok(Json(PullView {
        name: r.name,
        digest: r.digest,
        downloaded_bytes: r.downloaded_bytes,
    }))
}

/// Push the layers the bucket lacks, pull the ones this server lacks.
#[utoipa::path(post, path = "/v1/layers/sync", tag = "v1",
    responses((status = 200, body = SyncView),
              (status = 409, description = "A layer differs here and in the bucket", body = ErrorBody),
              (status = 501, description = "The server has no bucket", body = ErrorBody),
              (status = 502, description = "The bucket refused or failed", body = ErrorBody)))]
pub async fn sync(State(state): State<AppState>) -> Result<Json<SyncView>, ApiError> {
    let r = with_remote(&state, |remote, rt| remote.sync(rt.layers())).await?;
    Ok(Json(SyncView {
        pushed: r.pushed,
        pulled: r.pulled,
    }))
}

/// The layers in the bucket.
#[utoipa::path(get, path = "/v1/remote/layers", tag = "v1",
    responses((status = 200, body = Vec<LayerView>),
              (status = 501, description = "The server has no bucket", body = ErrorBody),
              (status = 502, description = "The bucket refused or failed", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<LayerView>>, ApiError> {
    let layers = with_remote(&state, |remote, _| remote.list()).await?;
    Ok(Json(layers.into_iter().map(LayerView::from).collect()))
}

/// One object's upload to the bucket (see `docs/s3.md`, background pushes).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadView {
    /// `layer` or `snapshot`.
    pub kind: String,
    /// The layer's name, or `<sandbox id>@<label>`.
    pub name: String,
    /// The image's digest.
    pub digest: String,
    /// `queued`, `pushing`, `pushed` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the state last changed.
    pub updated: chrono::DateTime<chrono::Utc>,
    /// When a failed upload is tried again (none: given up).
    pub next_attempt: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<sqrx_core::remote::Upload> for UploadView {
    fn from(u: sqrx_core::remote::Upload) -> Self {
        UploadView {
            kind: u.kind.as_str().into(),
            name: u.name,
            digest: u.digest,
            state: u.state.as_str().into(),
            attempts: u.attempts,
            error: u.error,
            updated: u.updated,
            next_attempt: u.next_attempt,
        }
    }
}

/// Where each layer and snapshot stands in its way to the bucket (pushed in the background).
#[utoipa::path(get, path = "/v1/remote/uploads", tag = "v1",
    responses((status = 200, body = Vec<UploadView>),
              (status = 501, description = "The server has no bucket", body = ErrorBody)))]
pub async fn uploads(State(state): State<AppState>) -> Result<Json<Vec<UploadView>>, ApiError> {
    bucket(&state)?;
    let list = state.blocking(|rt| rt.uploads().list()).await?;
    Ok(Json(list.into_iter().map(UploadView::from).collect()))
}
