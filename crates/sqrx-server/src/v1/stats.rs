//! `GET /v1/sandboxes/{id}/stats`: what a sandbox uses now, from its cgroup. The console polls
//! it for the live CPU and memory of its sandbox list.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::state::AppState;

/// A sandbox's resource usage at one instant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    /// The sandbox.
    pub id: String,
    /// When the cgroup was read.
    pub time: DateTime<Utc>,
    /// CPU time used by the sandbox since it started, in microseconds (cumulative: a CPU
    /// share is the difference of two readings over the time between them).
    pub cpu_usage_usec: u64,
    /// Memory charged to the sandbox now (files in its tmpfs upper and `/tmp` included).
    pub memory_bytes: u64,
    /// Its memory limit in bytes; `null` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Tasks (processes and threads) running in it now.
    pub pids: u64,
}

/// Read a sandbox's CPU time, memory and task count.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/stats", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = StatsView),
              (status = 404, body = ErrorBody),
              (status = 500, description = "The cgroup could not be read", body = ErrorBody)))]
pub async fn stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StatsView>, ApiError> {
    let sandbox = state.sandbox(&id).await?;
    let stats = tokio::task::spawn_blocking(move || sandbox.stats())
        .await
        .map_err(|e| ApiError::internal(format!("the stats reader failed: {e}")))??;
    Ok(Json(StatsView {
        id,
        time: Utc::now(),
        cpu_usage_usec: stats.cpu_usage_usec,
        memory_bytes: stats.memory_bytes,
        memory_limit_bytes: stats.memory_limit_bytes,
        pids: stats.pids,
    }))
}
