//! E2B's control plane: create, connect (resume), list, info, timeout, pause, kill. Answers
//! and errors in E2B's JSON shapes (`{"code": <status>, "message": ...}` for errors: the SDKs
//! read the body's `code`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::AppState;
use crate::tenants::Identity;

/// The lifetime of a sandbox created without `timeout` (E2B's v2 default).
const DEFAULT_TIMEOUT_V2: u64 = 300;
/// The lifetime of a sandbox created on the old route without `timeout` (E2B's v1 default).
const DEFAULT_TIMEOUT_V1: u64 = 15;

/// An error as E2B's control plane answers it.
pub struct E2bError(StatusCode, String);

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"code": self.0.as_u16(), "message": self.1})),
        )
            .into_response()
    }
}

impl From<sqrx_core::SandboxError> for E2bError {
    fn from(e: sqrx_core::SandboxError) -> Self {
        let status = crate::error::ApiError::status_of(e.kind());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "internal error in an E2B call");
            return E2bError(status, "internal error".into());
        }
        E2bError(status, e.to_string())
    }
}

impl From<crate::error::ApiError> for E2bError {
    fn from(e: crate::error::ApiError) -> Self {
        E2bError(e.status, e.message)
    }
}

/// A JSON request body (empty: every field's default); a bad one is a 400 in E2B's error
/// shape, as the SDKs read errors (axum's own rejection is plain text).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, E2bError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| E2bError(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// Who calls: a user whose key authentication accepted, the operator (`X-API-KEY` or
/// `Authorization: Bearer` carrying the server's token, or an open server); else `401`.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    authed: &crate::tenants::Authenticated,
) -> Result<Identity, E2bError> {
    if let Some(identity) = &authed.0 {
        return Ok(identity.clone());
    }
    let Some(token) = state.config().auth_token.as_deref() else {
        if state.tenants().is_some_and(|t| t.keys_exist()) {
            return Err(E2bError(StatusCode::UNAUTHORIZED, "Invalid API key".into()));
        }
        return Ok(Identity::Operator);
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if super::api_key_matches(headers, token) || crate::auth::bearer_matches(bearer, token) {
        Ok(Identity::Operator)
    } else {
        Err(E2bError(StatusCode::UNAUTHORIZED, "Invalid API key".into()))
    }
}

/// `POST /v2/sandboxes` and `POST /sandboxes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID", default = "base")]
    template_id: String,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "allow_internet_access")]
    allow_internet_access: Option<bool>,
    #[serde(flatten)]
    _other: BTreeMap<String, Value>,
}

fn base() -> String {
    "base".into()
}

/// The layers of a template: `base` is E2B's base image (`000-base` and the e2b preset's
/// `010-e2b`, made on first use; `000-base` alone when this host cannot make it); a session
/// template of that name (`[[template]]` in the server's config) gives its layers; any other
/// name is a layer put on top of the base image. Reads and may build layers: call off the
/// async threads.
fn template_layers(state: &AppState, template: &str) -> Result<Vec<String>, E2bError> {
    let base = sqrx_core::layer::BASE_LAYER.to_string();
    let image = || match state
        .runtime()
        .layers()
        .ensure_preset(&sqrx_core::BootstrapPreset::E2b)
    {
        Ok(_) => vec![base.clone(), sqrx_core::layer::E2B_LAYER.to_string()],
        Err(e) => {
            tracing::warn!(error = %e, "no E2B base image on this host; the base template is 000-base alone");
            vec![base.clone()]
        }
    };
    if template == "base" || template == base {
        return Ok(image());
    }
    if let Some(t) = state.config().templates.iter().find(|t| t.name == template) {
        return Ok(t.layers.clone());
    }
    let name = sqrx_core::LayerName::new(template).map_err(|_| {
        E2bError(
            StatusCode::BAD_REQUEST,
            format!("template {template:?} not found"),
        )
    })?;
    if !state.runtime().layers().contains(&name) {
        return Err(E2bError(
            StatusCode::NOT_FOUND,
            format!("template {template:?} not found (no layer of that name)"),
        ));
    }
    let mut layers = image();
    layers.push(template.to_string());
    Ok(layers)
}

/// The template a sandbox was made from: the session template with its layers, else its top
/// layer above E2B's base image, else `base`.
fn template_of(state: &AppState, sandbox: &sqrx_core::Sandbox) -> String {
    let layers = &sandbox.spec().layers;
    if let Some(t) = state
        .config()
        .templates
        .iter()
        .find(|t| &t.layers == layers && layers.len() > 1)
    {
        return t.name.clone();
    }
    match layers.as_slice() {
        [_, .., top] if top != sqrx_core::layer::E2B_LAYER => top.clone(),
        _ => "base".into(),
    }
}

/// A new sandbox id (E2B's are short lowercase alphanumerics).
fn new_id() -> String {
    let mut b = [0u8; 10];
    let _ = getrandom::fill(&mut b);
    format!("i{}", hex::encode(b))
}

/// The `Sandbox` answer of create and connect.
fn sandbox_json(state: &AppState, sb: &sqrx_core::Sandbox) -> Value {
    let created = sb.info().created;
    json!({
        "templateID": template_of(state, sb),
        "alias": template_of(state, sb),
        "sandboxID": sb.id(),
        "clientID": "sqrx",
        "envdVersion": super::ENVD_VERSION,
        "envdAccessToken": super::access_token(state, sb.id(), created),
        "domain": state.config().public_host,
    })
}

/// The `SandboxDetail` / `ListedSandbox` of a sandbox whose info is `info`.
fn detail_json(state: &AppState, sb: &sqrx_core::Sandbox, info: &sqrx_core::SandboxInfo) -> Value {
    let spec = sb.spec();
    let end = info
        .expires
        .unwrap_or_else(|| info.created + chrono::Duration::days(36500));
    json!({
        "templateID": template_of(state, sb),
        "alias": template_of(state, sb),
        "sandboxID": sb.id(),
        "clientID": "sqrx",
        "startedAt": info.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endAt": end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "cpuCount": info.cpu.map(|c| c.ceil() as u64).unwrap_or(1).max(1),
        "memoryMB": info.memory_mb.unwrap_or(0),
        "diskSizeMB": info.upper_mb,
        "state": if info.status == "paused" { "paused" } else { "running" },
        "envdVersion": super::ENVD_VERSION,
        "envdAccessToken": super::access_token(state, sb.id(), info.created),
        "metadata": spec.metadata,
        "domain": state.config().public_host,
    })
}

async fn create_with(
    state: AppState,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    body: NewSandbox,
    default_timeout: u64,
) -> Result<Response, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let (st, template) = (state.clone(), body.template_id.clone());
    let layers = tokio::task::spawn_blocking(move || template_layers(&st, &template))
        .await
        .map_err(|e| E2bError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let config = state.config();
    let mut spec = sqrx_core::SandboxSpec::new(new_id());
    // E2B's base image has passwordless sudo; setuid works only inside a user namespace.
    spec.setuid = layers.iter().any(|l| l == sqrx_core::layer::E2B_LAYER)
        && state.runtime().isolation() == sqrx_core::sandbox::Isolation::UserNamespace;
    spec.layers = layers;
    spec.cpu = Some(config.limits.default_cpu);
    spec.memory_mb = Some(config.limits.default_memory_mb);
    spec.pids_max = Some(config.limits.default_pids_max);
    spec.upper_mb = config.upper_mb;
    spec.max_lifetime = body.timeout.unwrap_or(default_timeout).max(1);
    spec.env = body.env_vars.unwrap_or_default();
    spec.metadata = body.metadata.unwrap_or_default();
    spec.network = match body.allow_internet_access {
        Some(true) => sqrx_core::network::NetworkPolicy::All,
        Some(false) => sqrx_core::network::NetworkPolicy::None,
        None => config.network.default.clone(),
    };
    let sb = crate::tenants::create_sandbox(&state, &caller, spec).await?;
    Ok((StatusCode::CREATED, Json(sandbox_json(&state, &sb))).into_response())
}

/// `POST /v2/sandboxes`: create a sandbox from a template.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    body: axum::body::Bytes,
) -> Result<Response, E2bError> {
    create_with(state, headers, authed, parse(&body)?, DEFAULT_TIMEOUT_V2).await
}

/// `POST /sandboxes` (the SDKs before 2.5x).
pub async fn create_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    body: axum::body::Bytes,
) -> Result<Response, E2bError> {
    create_with(state, headers, authed, parse(&body)?, DEFAULT_TIMEOUT_V1).await
}

fn not_found(id: &str) -> E2bError {
    E2bError(StatusCode::NOT_FOUND, format!("sandbox {id} not found"))
}

/// The sandbox `id`, if `caller` may see it (another user's is as missing as none).
async fn find(
    state: &AppState,
    caller: &Identity,
    id: String,
) -> Result<sqrx_core::Sandbox, E2bError> {
    let shown = id.clone();
    let sb = state.blocking(move |rt| rt.get(&id)).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            not_found(&shown)
        } else {
            e.into()
        }
    })?;
    if !caller.may_see(sb.spec().owner.as_deref()) {
        return Err(not_found(&shown));
    }
    Ok(sb)
}

/// `GET /sandboxes/{id}`.
pub async fn get_info(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let sb = find(&state, &caller, id).await?;
    let info = state
        .blocking({
            let sb = sb.clone();
            move |_| Ok::<_, sqrx_core::SandboxError>(sb.info())
        })
        .await?;
    Ok(Json(detail_json(&state, &sb, &info)))
}

/// `DELETE /sandboxes/{id}`.
pub async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let sb = find(&state, &caller, id).await?;
    state.blocking(move |_| sb.destroy()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A body with a `timeout` in seconds.
#[derive(Debug, Default, Deserialize)]
pub struct TimeoutBody {
    #[serde(default)]
    timeout: Option<u64>,
}

/// `POST /sandboxes/{id}/timeout`: expire `timeout` seconds from now.
pub async fn set_timeout(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let body: TimeoutBody = parse(&body)?;
    let Some(secs) = body.timeout else {
        return Err(E2bError(
            StatusCode::BAD_REQUEST,
            "timeout (seconds) is required".into(),
        ));
    };
    let mut sb = find(&state, &caller, id).await?;
    state
        .blocking(move |_| sb.set_timeout(Duration::from_secs(secs.max(1))))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/pause`: freeze every process; 409 when it is paused already.
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let sb = find(&state, &caller, id.clone()).await?;
    if sb.info().status == "paused" {
        return Err(E2bError(
            StatusCode::CONFLICT,
            format!("sandbox {id} is already paused"),
        ));
    }
    state.blocking(move |_| sb.pause()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v2/sandboxes/{id}/connect` (and `/sandboxes/{id}/connect`, and E2B's deprecated
/// `/sandboxes/{id}/resume`): resume it if paused, extend its lifetime to at least `timeout`;
/// 201 when it was resumed, 200 otherwise.
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let timeout = parse::<TimeoutBody>(&body)?.timeout;
    let mut sb = find(&state, &caller, id).await?;
    let paused = sb.info().status == "paused";
    let secs = timeout.unwrap_or(DEFAULT_TIMEOUT_V2).max(1);
    let sb = state
        .blocking(move |_| {
            if paused {
                sb.resume()?;
            }
            // The lifetime is only ever extended here.
            let now = chrono::Utc::now();
            let wanted = now + chrono::Duration::seconds(secs as i64);
            if sb.info().expires.is_some_and(|t| t < wanted) {
                sb.set_timeout(Duration::from_secs(secs))?;
            }
            Ok::<_, sqrx_core::SandboxError>(sb)
        })
        .await?;
    let status = if paused {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sandbox_json(&state, &sb))).into_response())
}

/// The query of `GET /v2/sandboxes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    next_token: Option<String>,
}

/// Parse `k1=v1&k2=v2` (each part percent-encoded).
fn parse_metadata_filter(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let h = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `GET /v2/sandboxes` (and E2B's deprecated `GET /sandboxes`): newest first, filtered by
/// `state` and `metadata`, `limit` per page, the next page's token in `X-Next-Token`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    authed: crate::tenants::Authenticated,
    Query(q): Query<ListQuery>,
) -> Result<Response, E2bError> {
    let caller = authorize(&state, &headers, &authed)?;
    let wanted_states: Option<Vec<String>> = q
        .state
        .as_deref()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let meta = q
        .metadata
        .as_deref()
        .map(parse_metadata_filter)
        .unwrap_or_default();
    let limit = q.limit.unwrap_or(100).clamp(1, 100);
    // One look at each sandbox (its status reads the kernel), off the async threads.
    let mut all = state
        .blocking(move |rt| {
            Ok::<_, sqrx_core::SandboxError>(
                rt.list()
                    .into_iter()
                    .filter(|sb| caller.may_see(sb.spec().owner.as_deref()))
                    .map(|sb| {
                        let info = sb.info();
                        (sb, info)
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    all.sort_by(|(a, ai), (b, bi)| bi.created.cmp(&ai.created).then_with(|| a.id().cmp(b.id())));
    let mut items: Vec<&(sqrx_core::Sandbox, sqrx_core::SandboxInfo)> = all
        .iter()
        .filter(|(sb, info)| {
            let st = if info.status == "paused" {
                "paused"
            } else {
                "running"
            };
            wanted_states
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| x == st))
                && meta
                    .iter()
                    .all(|(k, v)| sb.spec().metadata.get(k) == Some(v))
        })
        .collect();
    if let Some(after) = &q.next_token
        && let Some(pos) = items.iter().position(|(s, _)| s.id() == after)
    {
        items.drain(..=pos);
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let body: Vec<Value> = items
        .iter()
        .map(|(sb, info)| detail_json(&state, sb, info))
        .collect();
    let mut r = Json(body).into_response();
    if more
        && let Some((last, _)) = items.last()
        && let Ok(v) = HeaderValue::from_str(last.id())
    {
        r.headers_mut().insert("x-next-token", v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filters_are_query_strings() {
        let m = parse_metadata_filter("user%20id=a%26b&k=v+w");
        assert_eq!(m.get("user id").map(String::as_str), Some("a&b"));
        assert_eq!(m.get("k").map(String::as_str), Some("v w"));
    }
}
