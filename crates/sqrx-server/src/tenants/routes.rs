//! The multi-tenant API: `/api/admin/*` (users, their keys, the audit log), `/api/me*` (a
//! user's own keys) and `/api/sandboxes*` (a user's sandboxes; the same handlers as `/v1`).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{AuditQuery, AuditRecord, KeyInfo, Quota, StoreError, User};
use super::{Caller, Identity, Tenants, Usage, usage_of};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json as JsonBody, Path};
use crate::state::AppState;
use crate::v1::model::{CreateSandbox, SandboxView};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Exists { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Invalid { .. } => ApiError::bad_request(e.to_string()),
            StoreError::Db(_) | StoreError::Migrate(_) => {
                tracing::error!(error = %e, "tenant database");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the tenant database is unavailable",
                )
            }
            StoreError::Random(_) => ApiError::internal(e),
        }
    }
}

fn tenants(state: &AppState) -> Result<Tenants, ApiError> {
    state.tenants().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server has no tenant database",
        )
    })
}

/// The routes.
pub fn router() -> Router<AppState> {
    use crate::v1::sandboxes;
    Router::new()
        .route("/api/admin/users", post(create_user).get(list_users))
        .route(
            "/api/admin/users/{user_id}",
            get(show_user).put(update_user).delete(delete_user),
        )
        .route(
            "/api/admin/users/{user_id}/apikeys",
            post(create_user_key).get(list_user_keys),
        )
        .route("/api/admin/apikeys/{key_id}", delete(revoke_any_key))
        .route("/api/admin/audit", get(audit))
        .route("/api/me", get(me))
        .route("/api/me/apikeys", post(create_my_key).get(list_my_keys))
        .route("/api/me/apikeys/{key_id}", delete(revoke_my_key))
        .route("/api/sandboxes", get(list_sandboxes).post(create_sandbox))
        .route(
            "/api/sandboxes/{name}",
            get(sandboxes::get).delete(sandboxes::destroy),
        )
        .route("/api/sandboxes/{name}/pause", post(sandboxes::pause))
        .route("/api/sandboxes/{name}/resume", post(sandboxes::resume))
}

/// `POST /api/admin/users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique name.
    pub name: String,
    /// Admin (default false).
    #[serde(default)]
    pub admin: bool,
    /// Limits (default none).
    #[serde(default)]
    pub quota: Quota,
}

/// `PUT /api/admin/users/{id}` body: what changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Admin or not.
    #[serde(default)]
    pub admin: Option<bool>,
    /// Disabled (its keys stop working; its sandboxes keep running) or not.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// New limits (replace the old ones).
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// A new key's name and expiry.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A name for the key.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds from now until it stops working.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// When it stops working (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A made key: the key itself, shown this once, and its listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key (`sqrx_...`); only its hash is kept.
    pub key: String,
    /// Its listing.
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// A user with its keys and what its sandboxes use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The user.
    #[serde(flatten)]
    pub user: User,
    /// Its keys.
    pub apikeys: Vec<KeyInfo>,
    /// What its sandboxes use now.
    pub usage: UsageView,
}

/// Usage as shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// Sandboxes.
    pub sandboxes: u64,
    /// CPU cores.
    pub cpu: f64,
    /// Memory MiB.
    pub memory_mb: u64,
    /// Writable-layer MiB.
    pub disk_mb: u64,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            sandboxes: u.sandboxes,
            cpu: u.cpu,
            memory_mb: u.memory_mb,
            disk_mb: u.disk_mb,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Records, newest first.
    pub records: Vec<AuditRecord>,
    /// The `before` of the next page, when there is one.
    pub next: Option<String>,
}

async fn usage(state: &AppState, user: &str) -> Result<Usage, ApiError> {
    let user = user.to_string();
    let limits = &state.config().limits;
    let (cpu, mb) = (limits.default_cpu, limits.default_memory_mb);
    state
        .blocking(move |rt| Ok::<_, ApiError>(usage_of(rt, &user, cpu, mb)))
        .await
}

async fn view(state: &AppState, t: &Tenants, user: User) -> Result<UserView, ApiError> {
    Ok(UserView {
        apikeys: t.store().keys(&user.id).await?,
        usage: usage(state, &user.id).await?.into(),
        user,
    })
}

#[utoipa::path(post, path = "/api/admin/users", tag = "tenants", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody), (status = 503, description = "The tenant database is unavailable", body = ErrorBody)))]
/// `POST /api/admin/users`: make a user.
pub async fn create_user(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let t = tenants(&state)?;
    let user = t
        .store()
        .create_user(&body.name, body.admin, &body.quota)
        .await?;
    t.changed();
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/api/admin/users", tag = "tenants",
    responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody), (status = 503, description = "The tenant database is unavailable", body = ErrorBody)))]
/// `GET /api/admin/users`: every user.
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(tenants(&state)?.store().users().await?))
}

#[utoipa::path(get, path = "/api/admin/users/{user_id}", tag = "tenants",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/admin/users/{user_id}`: a user, its keys and its usage.
pub async fn show_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let t = tenants(&state)?;
    let user = t.store().user(&id).await?;
    Ok(Json(view(&state, &t, user).await?))
}

#[utoipa::path(put, path = "/api/admin/users/{user_id}", tag = "tenants", request_body = UserChange,
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `PUT /api/admin/users/{user_id}`: change flags and limits.
pub async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> Result<Json<User>, ApiError> {
    let t = tenants(&state)?;
    let old = t.store().user(&id).await?;
    let user = t
        .store()
        .update_user(
            &id,
            change.admin.unwrap_or(old.admin),
            change.disabled.unwrap_or(old.disabled),
            &change.quota.unwrap_or(old.quota),
        )
        .await?;
    t.changed();
    Ok(Json(user))
}

#[utoipa::path(delete, path = "/api/admin/users/{user_id}", tag = "tenants",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted with its keys; its sandboxes stay"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `DELETE /api/admin/users/{user_id}`.
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let t = tenants(&state)?;
    t.store().delete_user(&id).await?;
    t.changed();
    t.refresh_any_key().await;
    Ok(StatusCode::NO_CONTENT)
}

fn expiry(k: &NewKey) -> Result<Option<DateTime<Utc>>, ApiError> {
    match (k.expires_in, k.expires_at) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give expires_in or expires_at, not both",
        )),
        (Some(secs), None) => {
            let secs = i64::try_from(secs)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .ok_or_else(|| ApiError::bad_request(format!("expires_in {secs} is too large")))?;
            Ok(Utc::now().checked_add_signed(secs))
        }
        (None, at) => Ok(at),
    }
}

/// An optional JSON body: empty is the default.
fn optional_body(bytes: &[u8]) -> Result<NewKey, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(NewKey::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

async fn make_key(
    state: &AppState,
    user_id: &str,
    body: &[u8],
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let t = tenants(state)?;
    let body = optional_body(body)?;
    let expires = expiry(&body)?;
    let name = body.name.unwrap_or_else(|| "key".into());
    let (info, key) = t.store().create_key(user_id, &name, expires).await?;
    t.changed();
    Ok((StatusCode::CREATED, Json(CreatedKey { key, info })))
}

#[utoipa::path(post, path = "/api/admin/users/{user_id}/apikeys", tag = "tenants", request_body(content = Option<NewKey>),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 201, description = "The key, shown this once", body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `POST /api/admin/users/{user_id}/apikeys`: a key for the user.
pub async fn create_user_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    make_key(&state, &id, &body).await
}

#[utoipa::path(get, path = "/api/admin/users/{user_id}/apikeys", tag = "tenants",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Vec<KeyInfo>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/admin/users/{user_id}/apikeys`.
pub async fn list_user_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let t = tenants(&state)?;
    t.store().user(&id).await?;
    Ok(Json(t.store().keys(&id).await?))
}

#[utoipa::path(delete, path = "/api/admin/apikeys/{key_id}", tag = "tenants",
    params(("key_id" = String, Path, description = "Key id (the 16 hex digits after sqrx_)")),
    responses((status = 200, description = "Revoked", body = KeyInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `DELETE /api/admin/apikeys/{key_id}`: revoke any key.
pub async fn revoke_any_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    let t = tenants(&state)?;
    let key = t.store().revoke_key(&id).await?;
    t.changed();
    Ok(Json(key))
}

#[utoipa::path(get, path = "/api/admin/audit", tag = "tenants", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody), (status = 503, description = "The tenant database is unavailable", body = ErrorBody)))]
/// `GET /api/admin/audit`: the audit log, newest first, paged.
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (records, next) = tenants(&state)?.store().audit_records(&q).await?;
    Ok(Json(AuditPage { records, next }))
}

fn user_of(caller: &Identity) -> Result<&User, ApiError> {
    match caller {
        Identity::User(p) => Ok(&p.user),
        Identity::Operator => Err(ApiError::bad_request(
            "the operator token belongs to no user: use /api/admin/users",
        )),
    }
}

#[utoipa::path(get, path = "/api/me", tag = "tenants",
    responses((status = 200, description = "The caller, its keys and usage", body = UserView), (status = 401, body = ErrorBody)))]
/// `GET /api/me`.
pub async fn me(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    match &caller {
        Identity::Operator => Ok(Json(serde_json::json!({"id": "operator", "admin": true}))),
        Identity::User(p) => {
            let t = tenants(&state)?;
            let v = view(&state, &t, p.user.clone()).await?;
            let mut json = serde_json::to_value(v).map_err(ApiError::internal)?;
            json["key_id"] = serde_json::Value::String(p.key_id.clone());
            Ok(Json(json))
        }
    }
}

#[utoipa::path(post, path = "/api/me/apikeys", tag = "tenants", request_body(content = Option<NewKey>),
    responses((status = 201, description = "The key, shown this once", body = CreatedKey), (status = 400, body = ErrorBody)))]
/// `POST /api/me/apikeys`: another key for the caller.
pub async fn create_my_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let id = user_of(&caller)?.id.clone();
    make_key(&state, &id, &body).await
}

#[utoipa::path(get, path = "/api/me/apikeys", tag = "tenants",
    responses((status = 200, body = Vec<KeyInfo>), (status = 400, body = ErrorBody)))]
/// `GET /api/me/apikeys`.
pub async fn list_my_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let id = user_of(&caller)?.id.clone();
    Ok(Json(tenants(&state)?.store().keys(&id).await?))
}

#[utoipa::path(delete, path = "/api/me/apikeys/{key_id}", tag = "tenants",
    params(("key_id" = String, Path, description = "Key id")),
    responses((status = 200, description = "Revoked", body = KeyInfo), (status = 404, description = "Not one of the caller's keys", body = ErrorBody)))]
/// `DELETE /api/me/apikeys/{key_id}`: revoke one of the caller's keys.
pub async fn revoke_my_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    let me = user_of(&caller)?.id.clone();
    let t = tenants(&state)?;
    match t.store().key(&key_id).await {
        Ok(k) if k.user_id == me => {}
        // Another user's key does not exist for this one.
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!("API key {key_id} not found")));
        }
        Err(e) => return Err(e.into()),
    }
    let key = t.store().revoke_key(&key_id).await?;
    t.changed();
    Ok(Json(key))
}

#[utoipa::path(get, path = "/api/sandboxes", tag = "tenants",
    responses((status = 200, description = "The caller's sandboxes (every one for admins)", body = Vec<SandboxView>)))]
/// `GET /api/sandboxes`.
pub async fn list_sandboxes(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<SandboxView>>, ApiError> {
    crate::v1::sandboxes::list(State(state), Caller(caller)).await
}

#[utoipa::path(post, path = "/api/sandboxes", tag = "tenants", request_body = CreateSandbox,
    responses((status = 201, body = SandboxView), (status = 400, body = ErrorBody),
              (status = 429, description = "quota_exceeded (with quota, limit, current, asked) or the sandbox limit", body = ErrorBody)))]
/// `POST /api/sandboxes`: create a sandbox owned by the caller, within its quota.
pub async fn create_sandbox(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: JsonBody<CreateSandbox>,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    crate::v1::sandboxes::create(State(state), Caller(caller), body).await
}
