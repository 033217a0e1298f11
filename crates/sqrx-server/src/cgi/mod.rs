//! The sq-sandbox compatible API under `/cgi-bin`: the original's paths, bodies, responses and
//! status codes, so its clients work unchanged. Validation, duplicate and limit failures are
//! 400 (as the original answers), unknown sandboxes 404 `not found: <id>`, a POST without
//! `application/json` 415, and a wrong method 400.

pub mod model;

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value};
use sqrx_core::{Command, ErrorKind, ExecRequest, Sandbox, SandboxSpec};

use self::model::{
    CgiCreate, CgiExec, CgiExecBody, CgiHealth, CgiInfo, CgiLabel, CgiModule, CgiModuleBody,
    CgiSnapshot, CgiSnapshotTaken, allow_net_policy, count, iso, list, number, object, text,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, RawBody};
use crate::metrics::ExecOutcome;
use crate::state::AppState;

/// The defaults of the original's create.
const DEFAULT_CPU: f64 = 2.0;
const DEFAULT_MEMORY_MB: u64 = 1024;
const DEFAULT_EXEC_TIMEOUT_S: f64 = 300.0;

/// The `/cgi-bin` routes. Every path takes any method and answers a wrong one with 400, as the
/// original's CGI scripts do.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/cgi-bin/health", any(health))
        .route("/cgi-bin/api/modules", any(modules))
        .route("/cgi-bin/api/sandboxes", any(collection))
        .route("/cgi-bin/api/sandboxes/", any(collection))
        .route("/cgi-bin/api/sandboxes/{id}", any(instance))
        .route("/cgi-bin/api/sandboxes/{id}/{action}", any(action))
}

/// A failure of an operation on an existing sandbox (or of a create): 400 with the core's
/// message, as the original answers, except genuine internal faults.
fn op_error(kind: ErrorKind, message: impl std::fmt::Display) -> ApiError {
    match kind {
        ErrorKind::Internal => ApiError::internal(message),
        ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::InvalidArgument
        | ErrorKind::LimitExceeded
        | ErrorKind::Conflict
        | ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::PermissionDenied => ApiError::bad_request(message.to_string()),
        // Not the client's fault, and worth telling apart: 507 as on the native API.
        ErrorKind::InsufficientStorage => ApiError::from_kind(kind, message),
    }
}

fn sandbox_error(e: sqrx_core::SandboxError) -> ApiError {
    op_error(e.kind(), e)
}

/// sq-sandbox's 404 for a sandbox (also what another user's sandbox looks like).
pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("not found: {id}"))
}

fn method_not_allowed(text: &str) -> ApiError {
    ApiError::bad_request(text)
}

/// The sandbox `id`, or 404 `not found: <id>` (an id that breaks the naming rule cannot
/// exist either).
async fn existing(state: &AppState, id: &str) -> Result<Sandbox, ApiError> {
    let owned = id.to_string();
    let found = state
        .blocking(move |rt| Ok::<_, ApiError>(rt.get(&owned)))
        .await?;
    match found {
        Ok(s) => Ok(s),
        Err(e) => match e.kind() {
            ErrorKind::NotFound | ErrorKind::InvalidArgument => Err(not_found(id)),
            ErrorKind::Internal => Err(ApiError::internal(e)),
            ErrorKind::AlreadyExists
            | ErrorKind::LimitExceeded
            | ErrorKind::Conflict
            | ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::PermissionDenied
            | ErrorKind::InsufficientStorage => Err(op_error(e.kind(), e)),
        },
    }
}

/// The sq-sandbox view of `sandbox` (reads its history: call off the async threads).
pub fn info_of(sandbox: &Sandbox) -> CgiInfo {
    let info = sandbox.info();
    let spec = sandbox.spec();
    let logs = sandbox.logs();
    let snapshots = match sandbox.snapshots() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(sandbox = %info.id, error = %e, "cannot list snapshots");
            Vec::new()
        }
    };
    let exec_count = logs.iter().map(|e| e.seq).max().unwrap_or(0);
    let last_active = logs
        .iter()
        .map(|e| e.finished)
        .max()
        .unwrap_or(info.created);
    CgiInfo {
        id: info.id,
        owner: spec.owner.clone().unwrap_or_default(),
        task: spec.task.clone().unwrap_or_default(),
        layers: info.layers,
        created: iso(info.created),
        last_active: iso(last_active),
        mounted: info.status != "dead",
        exec_count,
        upper_bytes: info.upper_bytes,
        snapshots: snapshots
            .into_iter()
            .map(|s| CgiSnapshot {
                label: s.label,
                created: iso(s.created),
                size: s.size,
            })
            .collect(),
        active_snapshot: info.active_snapshot,
        cpu: spec.cpu,
        memory_mb: spec.memory_mb,
        max_lifetime_s: spec.max_lifetime,
        allow_net: spec.allow_net.clone(),
        network: sandbox.network_policy().clone(),
    }
}

fn exit_code(timed_out: bool, code: Option<i32>, signal: Option<i32>) -> i32 {
    if timed_out {
        124
    } else if let Some(c) = code {
        c
    } else {
        128 + signal.unwrap_or(0)
    }
}

fn body_of(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    object(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
    )
}

/// `GET /cgi-bin/health` (no token needed).
#[utoipa::path(get, path = "/cgi-bin/health", tag = "cgi-bin",
    responses((status = 200, body = CgiHealth)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<CgiHealth>, ApiError> {
    let health = state
        .blocking(|rt| {
            let layers = rt.layers().list()?;
            let base_ready = layers
                .iter()
                .any(|l| l.name.as_str() == sqrx_core::layer::BASE_LAYER);
            Ok::<_, sqrx_core::LayerError>(CgiHealth {
                status: "ok".into(),
                backend: "chroot".into(),
                sandboxes: rt.list().len(),
                modules: layers.len(),
                base_ready,
            })
        })
        .await?;
    Ok(Json(health))
}

/// `GET /cgi-bin/api/modules`: the layers.
#[utoipa::path(get, path = "/cgi-bin/api/modules", tag = "cgi-bin",
    responses((status = 200, body = Vec<CgiModule>)))]
pub async fn modules(
    State(state): State<AppState>,
    crate::tenants::Caller(caller): crate::tenants::Caller,
) -> Result<Json<Vec<CgiModule>>, ApiError> {
    let owners = crate::tenants::layer_owners(&state, &caller).await?;
    let layers = state.blocking(|rt| rt.layers().list()).await?;
    Ok(Json(
        layers
            .into_iter()
            .filter(|l| crate::tenants::may_use_layer(&caller, &owners, l.name.as_str()))
            .map(|l| CgiModule {
                name: l.name.to_string(),
                size: l.size,
                location: "local".into(),
            })
            .collect(),
    ))
}

async fn collection(
    method: Method,
    State(state): State<AppState>,
    crate::tenants::Caller(caller): crate::tenants::Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    match method {
        Method::GET => Ok(list_sandboxes(state, caller).await?.into_response()),
        Method::POST => {
            let fields = body_of(&headers, &body)?;
            Ok(create(state, caller, fields).await?.into_response())
        }
        _ => Err(method_not_allowed("method not allowed")),
    }
}

async fn instance(
    method: Method,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match method {
        Method::GET => Ok(get(state, id).await?.into_response()),
        Method::DELETE => Ok(destroy(state, id).await?.into_response()),
        _ => Err(method_not_allowed("method not allowed")),
    }
}

async fn action(
    method: Method,
    State(state): State<AppState>,
    crate::tenants::Caller(caller): crate::tenants::Caller,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    // The original checks that the sandbox exists before anything else.
    let sandbox = existing(&state, &id).await?;
    let post_only = || {
        if method == Method::POST {
            Ok(())
        } else {
            Err(method_not_allowed("POST only"))
        }
    };
    match action.as_str() {
        "exec" => {
            post_only()?;
            let fields = body_of(&headers, &body)?;
            Ok(exec(state, sandbox, fields).await?.into_response())
        }
        "activate" => {
            post_only()?;
            let fields = body_of(&headers, &body)?;
            Ok(activate(state, sandbox, fields).await?.into_response())
        }
        "snapshot" => {
            post_only()?;
            let fields = body_of(&headers, &body)?;
            let _held = crate::tenants::hold_snapshot(&state, &caller, &sandbox).await?;
            Ok(snapshot(state, sandbox, fields).await?.into_response())
        }
        "restore" => {
            post_only()?;
            let fields = body_of(&headers, &body)?;
            Ok(restore(state, sandbox, fields).await?.into_response())
        }
        "logs" => {
            if method != Method::GET {
                return Err(method_not_allowed("GET only"));
            }
            Ok(logs(state, sandbox).await?.into_response())
        }
        other => Err(ApiError::not_found(format!("unknown action: {other}"))),
    }
}

/// `GET /cgi-bin/api/sandboxes`.
#[utoipa::path(get, path = "/cgi-bin/api/sandboxes", tag = "cgi-bin",
    responses((status = 200, body = Vec<CgiInfo>)))]
pub async fn list_sandboxes(
    state: AppState,
    caller: crate::tenants::Identity,
) -> Result<Json<Vec<CgiInfo>>, ApiError> {
    let infos = state
        .blocking(move |rt| {
            Ok::<_, ApiError>(
                rt.list()
                    .iter()
                    .filter(|s| caller.may_see(s.spec().owner.as_deref()))
                    .map(info_of)
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(Json(infos))
}

/// `POST /cgi-bin/api/sandboxes`: create a sandbox.
#[utoipa::path(post, path = "/cgi-bin/api/sandboxes", tag = "cgi-bin",
    request_body = CgiCreate,
    responses((status = 201, body = CgiInfo),
              (status = 400, description = "Invalid (a bad allow_net rule: the rule and why), duplicate, unknown layer or limit reached", body = ErrorBody),
              (status = 415, body = ErrorBody)))]
pub async fn create(
    state: AppState,
    caller: crate::tenants::Identity,
    fields: Map<String, Value>,
) -> Result<(StatusCode, Json<CgiInfo>), ApiError> {
    let id = text(&fields, "id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("id required"))?;
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(ApiError::bad_request(
            "id: alphanumeric/dash/underscore only",
        ));
    }
    let mut spec = SandboxSpec::new(id);
    spec.owner = Some(text(&fields, "owner")?.unwrap_or_else(|| "anon".into()));
    if let Some(layers) = list(&fields, "layers")?.filter(|l| !l.is_empty()) {
        spec.layers = layers;
    }
    spec.task = text(&fields, "task")?;
    spec.cpu = Some(number(&fields, "cpu")?.unwrap_or(DEFAULT_CPU));
    spec.memory_mb = Some(count(&fields, "memory_mb")?.unwrap_or(DEFAULT_MEMORY_MB));
    spec.max_lifetime = count(&fields, "max_lifetime_s")?.unwrap_or(0);
    spec.allow_net = list(&fields, "allow_net")?;
    spec.network = allow_net_policy(&fields, &state.config().network.cgi_default)?;
    spec.upper_mb = state.config().upper_mb;
    // A user's sandbox is the user's, whatever `owner` says.
    if let crate::tenants::Identity::User(p) = &caller {
        spec.owner = Some(p.user.id.clone());
    }
    spec.max_lifetime = crate::tenants::Tenants::lifetime(&caller, spec.max_lifetime)?;
    let more = crate::tenants::Usage::of(&spec, DEFAULT_CPU, DEFAULT_MEMORY_MB);
    let info = crate::tenants::within_quota(&state, &caller, spec.id.clone(), more, move |rt| {
        rt.create(spec).map(|s| info_of(&s)).map_err(sandbox_error)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /cgi-bin/api/sandboxes/{id}`.
#[utoipa::path(get, path = "/cgi-bin/api/sandboxes/{id}", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = CgiInfo), (status = 404, body = ErrorBody)))]
pub async fn get(state: AppState, id: String) -> Result<Json<CgiInfo>, ApiError> {
    let sandbox = existing(&state, &id).await?;
    let info = state
        .blocking(move |_| Ok::<_, ApiError>(info_of(&sandbox)))
        .await?;
    Ok(Json(info))
}

/// `DELETE /cgi-bin/api/sandboxes/{id}`.
#[utoipa::path(delete, path = "/cgi-bin/api/sandboxes/{id}", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 204, description = "Destroyed"), (status = 404, body = ErrorBody)))]
pub async fn destroy(state: AppState, id: String) -> Result<StatusCode, ApiError> {
    let sandbox = existing(&state, &id).await?;
    state
        .blocking(move |_| Ok::<_, ApiError>(sandbox.destroy().map_err(sandbox_error)))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /cgi-bin/api/sandboxes/{id}/exec`: run a shell command; 200 whatever its exit code.
#[utoipa::path(post, path = "/cgi-bin/api/sandboxes/{id}/exec", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = CgiExecBody,
    responses((status = 200, body = CgiExec),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
pub async fn exec(
    state: AppState,
    sandbox: Sandbox,
    fields: Map<String, Value>,
) -> Result<Json<CgiExec>, ApiError> {
    let cmd = text(&fields, "cmd")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("cmd required"))?;
    let workdir = text(&fields, "workdir")?.unwrap_or_else(|| "/".into());
    let timeout = number(&fields, "timeout")?.unwrap_or(DEFAULT_EXEC_TIMEOUT_S);
    let timeout = crate::v1::model::seconds("timeout", timeout)?;
    let mut req = ExecRequest::new(Command::Shell(cmd.clone()));
    req.workdir = Some(workdir.clone());
    req.timeout = Some(timeout);
    let started = Instant::now();
    let result = sandbox.exec(req).await;
    let outcome = match &result {
        Ok(r) => ExecOutcome::of(r),
        Err(_) => ExecOutcome::Error,
    };
    state
        .metrics()
        .exec(outcome, started.elapsed().as_secs_f64());
    let r = result.map_err(sandbox_error)?;
    Ok(Json(CgiExec {
        seq: r.seq,
        exit_code: exit_code(r.timed_out, r.exit_code, r.signal),
        cmd,
        workdir,
        started: iso(r.started),
        finished: iso(r.finished),
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
    }))
}

/// `GET /cgi-bin/api/sandboxes/{id}/logs`: the exec history.
#[utoipa::path(get, path = "/cgi-bin/api/sandboxes/{id}/logs", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = Vec<CgiExec>), (status = 404, body = ErrorBody)))]
pub async fn logs(state: AppState, sandbox: Sandbox) -> Result<Json<Vec<CgiExec>>, ApiError> {
    let entries = state
        .blocking(move |_| Ok::<_, ApiError>(sandbox.logs()))
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| CgiExec {
                seq: e.seq,
                exit_code: exit_code(e.timed_out, e.exit_code, e.signal),
                cmd: e.command,
                workdir: e.workdir.unwrap_or_else(|| "/".into()),
                started: iso(e.started),
                finished: iso(e.finished),
                stdout: e.stdout,
                stderr: e.stderr,
            })
            .collect(),
    ))
}

/// `POST /cgi-bin/api/sandboxes/{id}/activate`: add a layer on top.
#[utoipa::path(post, path = "/cgi-bin/api/sandboxes/{id}/activate", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = CgiModuleBody,
    responses((status = 200, body = CgiInfo), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn activate(
    state: AppState,
    mut sandbox: Sandbox,
    fields: Map<String, Value>,
) -> Result<Json<CgiInfo>, ApiError> {
    let module = text(&fields, "module")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("module required"))?;
    if !module
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err(ApiError::bad_request(
            "module: alphanumeric/dash/underscore/dot only",
        ));
    }
    let info = state
        .blocking(move |_| {
            Ok::<_, ApiError>(
                sandbox
                    .activate(&module)
                    .map(|()| info_of(&sandbox))
                    .map_err(sandbox_error),
            )
        })
        .await??;
    Ok(Json(info))
}

/// `POST /cgi-bin/api/sandboxes/{id}/snapshot`: pack the writable layer into a snapshot.
#[utoipa::path(post, path = "/cgi-bin/api/sandboxes/{id}/snapshot", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = CgiLabel,
    responses((status = 200, body = CgiSnapshotTaken), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn snapshot(
    state: AppState,
    sandbox: Sandbox,
    fields: Map<String, Value>,
) -> Result<Json<CgiSnapshotTaken>, ApiError> {
    let label = text(&fields, "label")?.filter(|l| !l.is_empty());
    let info = state
        .blocking(move |_| {
            Ok::<_, ApiError>(sandbox.snapshot(label.as_deref()).map_err(sandbox_error))
        })
        .await??;
    Ok(Json(CgiSnapshotTaken {
        snapshot: info.label,
        size: info.size,
    }))
}

/// `POST /cgi-bin/api/sandboxes/{id}/restore`: go back to a snapshot.
#[utoipa::path(post, path = "/cgi-bin/api/sandboxes/{id}/restore", tag = "cgi-bin",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = CgiLabel,
    responses((status = 200, body = CgiInfo), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn restore(
    state: AppState,
    mut sandbox: Sandbox,
    fields: Map<String, Value>,
) -> Result<Json<CgiInfo>, ApiError> {
    let label = text(&fields, "label")?
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::bad_request("label required"))?;
    let info = state
        .blocking(move |_| {
            Ok::<_, ApiError>(
                sandbox
                    .restore(&label)
                    .map(|()| info_of(&sandbox))
                    .map_err(sandbox_error),
            )
        })
        .await??;
    Ok(Json(info))
}
