//! Snapshots, restore, activate and clone: `/v1/sandboxes/{id}/snapshot|snapshots|restore|
//! activate|clone`. All of them pack or remount layers, so they run on the blocking pool and
//! have no request timeout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::SandboxView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path};
use crate::state::AppState;
use crate::tenants::Caller;

/// A snapshot of a sandbox's filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// Its label, unique in the sandbox.
    pub label: String,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// Image size, bytes.
    pub size: u64,
    /// `sha256:<hex>` of the image.
    pub digest: String,
    /// The snapshot the sandbox had been restored to when this one was taken.
    pub parent: Option<String>,
    /// The store layers below it, base first.
    pub layers: Vec<String>,
    /// Where it went in the bucket, when the request asked for `push` (pushes in the
    /// background otherwise, see `GET /v1/remote/uploads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<SnapshotPushView>,
}

/// A snapshot pushed into the bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotPushView {
    /// The manifest's key in the bucket.
    pub key: String,
    /// Image bytes sent (0: the bucket had every image of its chain).
    pub uploaded_bytes: u64,
    /// Whether it is now the sandbox's latest snapshot in the bucket.
    pub latest: bool,
}

impl From<sqrx_core::remote::SnapshotPushReport> for SnapshotPushView {
    fn from(r: sqrx_core::remote::SnapshotPushReport) -> Self {
        SnapshotPushView {
            key: r.key,
            uploaded_bytes: r.uploaded_bytes,
            latest: r.latest,
        }
    }
}

impl From<sqrx_core::sandbox::SnapshotInfo> for SnapshotView {
    fn from(s: sqrx_core::sandbox::SnapshotInfo) -> Self {
        SnapshotView {
            label: s.label,
            created: s.created,
            size: s.size,
            digest: s.digest,
            parent: s.parent,
            layers: s.layers,
            pushed: None,
        }
    }
}

/// `POST .../snapshot` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$` (default: the current time).
    #[serde(default)]
    pub label: Option<String>,
    /// Push it into the bucket before answering (502 if that fails: the snapshot is kept
    /// here, and pushed in the background later).
    #[serde(default)]
    pub push: bool,
}

/// `POST .../restore` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The snapshot to go back to.
    pub label: String,
}

/// `POST .../activate` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    /// The store layer to add on top of the sandbox's layers.
    pub layer: String,
}

/// `POST .../clone` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneBody {
    /// The new sandbox's id.
    pub id: String,
}

/// Pack the sandbox's writable layer into a snapshot (the sandbox is frozen meanwhile).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/snapshot", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = SnapshotBody,
    responses((status = 201, body = SnapshotView),
              (status = 400, description = "Invalid label", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The label is taken", body = ErrorBody),
              (status = 429, description = "The user's disk quota is reached", body = ErrorBody),
              (status = 501, description = "`push` on a server without a bucket", body = ErrorBody),
              (status = 502, description = "`push`: the bucket refused or failed", body = ErrorBody)))]
pub async fn snapshot(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SnapshotBody>,
) -> Result<(StatusCode, Json<SnapshotView>), ApiError> {
    let sandbox = state.sandbox(&id).await?;
    // Room in the user's disk quota, held while the snapshot is taken.
    let held = crate::tenants::hold_snapshot(&state, &caller, &sandbox).await?;
    if body.push {
        crate::v1::remote::bucket(&state)?;
    }
    let (info, pushed) = state
        .blocking(move |_| {
            let _held = held;
            let info = sandbox.snapshot(body.label.as_deref())?;
            let pushed = match body.push {
                true => Some(sandbox.push_snapshot(&info.label).map_err(ApiError::from)),
                false => None,
            };
            Ok::<_, ApiError>((info, pushed))
        })
        .await?;
    let mut view = SnapshotView::from(info);
    view.pushed = pushed.transpose()?.map(SnapshotPushView::from);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Push the snapshot `label` into the bucket now (with its chain's images).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/snapshots/{label}/push", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"),
           ("label" = String, Path, description = "Snapshot label")),
    responses((status = 200, body = SnapshotPushView),
              (status = 404, description = "No such sandbox or snapshot", body = ErrorBody),
              (status = 501, description = "The server has no bucket", body = ErrorBody),
              (status = 502, description = "The bucket refused or failed", body = ErrorBody)))]
pub async fn push(
    State(state): State<AppState>,
    Path((id, label)): Path<(String, String)>,
) -> Result<Json<SnapshotPushView>, ApiError> {
    crate::v1::remote::bucket(&state)?;
    let sandbox = state.sandbox(&id).await?;
    let r = state
        .blocking(move |_| sandbox.push_snapshot(&label))
        .await?;
    Ok(Json(r.into()))
}

/// The sandbox's snapshots, oldest first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/snapshots", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = Vec<SnapshotView>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<SnapshotView>>, ApiError> {
    let snaps = state.blocking(move |rt| rt.get(&id)?.snapshots()).await?;
    Ok(Json(snaps.into_iter().map(SnapshotView::from).collect()))
}

/// Go back to a snapshot: the filesystem becomes what it was; every process is stopped.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/restore", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = RestoreBody,
    responses((status = 200, body = SandboxView),
              (status = 400, body = ErrorBody),
              (status = 404, description = "No such sandbox or snapshot", body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RestoreBody>,
) -> Result<Json<SandboxView>, ApiError> {
    let view = state
        .blocking(move |rt| {
            let mut s = rt.get(&id)?;
            s.restore(&body.label)?;
            Ok::<_, sqrx_core::SandboxError>(SandboxView::of(&s))
        })
        .await?;
    Ok(Json(view))
}

/// Add a store layer on top (files written in the sandbox are kept; processes restart).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/activate", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ActivateBody,
    responses((status = 200, body = SandboxView),
              (status = 400, body = ErrorBody),
              (status = 404, description = "No such sandbox or layer", body = ErrorBody),
              (status = 409, description = "Already active", body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> Result<Json<SandboxView>, ApiError> {
    let view = state
        .blocking(move |rt| {
            let mut s = rt.get(&id)?;
            s.activate(&body.layer)?;
            Ok::<_, sqrx_core::SandboxError>(SandboxView::of(&s))
        })
        .await?;
    Ok(Json(view))
}

/// Start a new sandbox from this one's current state (layers, limits, a copy of its files).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/clone", tag = "v1",
    params(("id" = String, Path, description = "The source sandbox")),
    request_body = CloneBody,
    responses((status = 201, body = SandboxView),
              (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The new id is taken", body = ErrorBody),
              (status = 429, description = "Sandbox limit reached", body = ErrorBody)))]
pub async fn clone(
    State(state): State<AppState>,
    caller: crate::tenants::Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CloneBody>,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    // The clone is its source's owner's too, and counts against that user's quota.
    let source = state.sandbox(&id).await?;
    let limits = &state.config().limits;
    let more =
        crate::tenants::Usage::of(source.spec(), limits.default_cpu, limits.default_memory_mb);
    let new_id = body.id.clone();
    let view = crate::tenants::within_quota(&state, &caller.0, new_id, more, move |rt| {
        Ok(rt
            .clone_sandbox(&id, &body.id)
            .map(|s| SandboxView::of(&s))?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
