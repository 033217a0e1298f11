//! Sessions (squarex's API): `POST /v1/try`, `GET /v1/status/{session_id}`,
//! `POST|DELETE /v1/stop/{termination_token}`, and ours: `POST /v1/extend/{termination_token}`. The client reaches the session's service at the
//! returned `session` address (`GET /{session_id}/ws`, see [`crate::proxy::session`]).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqrx_core::session::{Session, SessionStatus};
use tokio::sync::oneshot;

use super::model::seconds;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, RawBody};
use crate::state::AppState;
use crate::tenants::{self, Caller, Tenants, Usage};

/// The optional body of `POST /v1/try`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryRequest {
    /// The template (default: `default`, the built-in info service).
    #[serde(default)]
    pub template: Option<String>,
    /// Time to live in seconds (default: the template's; at most the server's maximum).
    #[serde(default)]
    pub ttl: Option<f64>,
}

/// The body of `POST /v1/extend/{termination_token}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Seconds to add to the session's `valid_till`. A session never lives past the server's
    /// maximum TTL counted from its creation: a longer extension stops there.
    pub seconds: f64,
}

/// A session just opened.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TryResponse {
    /// Where the client connects: `<public-host>/<session-id>/ws` (a WebSocket).
    pub session: String,
    /// The session's id.
    pub session_id: String,
    /// Stops the session (`POST /v1/stop/{termination_token}`); shown only here.
    pub termination_token: String,
    /// When the session was opened (RFC 3339, microseconds, `+00:00`).
    pub created_at: String,
    /// When its service accepted its first connection.
    pub started_at: Option<String>,
    /// When it ends.
    pub valid_till: String,
}

/// Where a session is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusResponse {
    /// The session's id.
    pub session_id: String,
    /// `starting`, `running`, `stopped` or `expired`.
    #[schema(value_type = String, example = "running")]
    pub status: SessionStatus,
    /// When it ends (or ended).
    pub valid_till: String,
}

/// A time as the original squarex service writes it: RFC 3339 with microseconds and a
/// numeric offset (`2025-01-31T12:00:00.123456+00:00`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

impl StatusResponse {
    fn of(s: &Session) -> Self {
        StatusResponse {
            session_id: s.id.clone(),
            status: s.status,
            valid_till: timestamp(s.valid_till),
        }
    }
}

/// The host clients reach this server by: `--public-host`, else the request's `Host`.
fn public_host(state: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(h) = &state.config().public_host {
        return h.clone();
    }
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| state.config().listen.clone())
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<TryRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TryRequest::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct.eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(ApiError::unsupported_media_type(
            "expected Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// `POST /v1/try`: open a session.
#[utoipa::path(post, path = "/v1/try", tag = "sessions",
    request_body(content = Option<TryRequest>, description = "Optional; an empty body opens the default template"),
    responses((status = 201, description = "Open; its service accepts connections", body = TryResponse),
              (status = 400, description = "Invalid body or ttl", body = ErrorBody),
              (status = 404, description = "No such template", body = ErrorBody),
              (status = 415, description = "A body that is not application/json", body = ErrorBody),
              (status = 429, description = "Session or sandbox limit reached", body = ErrorBody),
              (status = 503, description = "The service did not start in time", body = ErrorBody)))]
pub async fn try_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<TryResponse>), ApiError> {
    let req = parse_body(&headers, &body)?;
    let ttl = req.ttl.map(|t| seconds("ttl", t)).transpose()?;
    let template = req.template;
    let sessions = state.sessions().clone();
    // A user's session is its own sandbox: owned by it, within its quota and lifetime.
    let owner = caller.scope().map(str::to_string);
    let held = match (&owner, sessions.template(template.as_deref())) {
        (Some(_), Some(t)) => {
            let lives = ttl.unwrap_or(t.ttl()).as_secs().max(1);
            Tenants::lifetime(&caller, lives)?;
            let limits = &state.config().limits;
            let more = Usage {
                sandboxes: 1,
                cpu: t.cpu.unwrap_or(limits.default_cpu),
                memory_mb: t.memory_mb.unwrap_or(limits.default_memory_mb),
                disk_mb: sqrx_core::SandboxSpec::new("session").upper_mb,
            };
            static OPENING: AtomicU64 = AtomicU64::new(0);
            let pending = format!(
                "session-opening-{}",
                OPENING.fetch_add(1, Ordering::Relaxed)
            );
            tenants::hold(&state, &caller, pending, more).await?
        }
        // An unknown template: `open` says so.
        _ => None,
    };
    // Opening outlives this request if the client leaves or the request times out: a
    // session whose token nobody received is stopped at once instead of running on.
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let opened = sessions
            .open(template.as_deref(), owner.as_deref(), ttl)
            .await;
        // The session's sandbox now counts by itself.
        drop(held);
        if let Err(Ok(orphan)) = tx.send(opened) {
            let _ = sessions.stop(&orphan.termination_token).await;
        }
    });
    let opened = rx
        .await
        .map_err(|e| ApiError::internal(format!("the session task failed: {e}")))?;
    state.metrics().session_opened(opened.is_ok());
    let s = opened?;
    let host = public_host(&state, &headers, &uri);
    Ok((
        StatusCode::CREATED,
        Json(TryResponse {
            session: format!("{host}/{}/ws", s.id),
            session_id: s.id.clone(),
            termination_token: s.termination_token.clone(),
            created_at: timestamp(s.created_at),
            started_at: s.started_at.map(timestamp),
            valid_till: timestamp(s.valid_till),
        }),
    ))
}

/// `GET /v1/status/{session_id}`.
#[utoipa::path(get, path = "/v1/status/{session_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "Session id")),
    responses((status = 200, body = StatusResponse),
              (status = 404, body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let s = state.sessions().status(&session_id)?;
    Ok(Json(StatusResponse::of(&s)))
}

/// `POST /v1/stop/{termination_token}`: end the session and destroy its sandbox. Stopping an
/// ended session again answers 200 with its status.
#[utoipa::path(post, path = "/v1/stop/{termination_token}", tag = "sessions",
    params(("termination_token" = String, Path, description = "The token from POST /v1/try")),
    responses((status = 200, body = StatusResponse),
              (status = 404, description = "No session has this token", body = ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let s = state.sessions().stop(&token).await?;
    Ok(Json(StatusResponse::of(&s)))
}

/// `DELETE /v1/stop/{termination_token}`: the same as `POST`.
#[utoipa::path(delete, path = "/v1/stop/{termination_token}", tag = "sessions",
    params(("termination_token" = String, Path, description = "The token from POST /v1/try")),
    responses((status = 200, body = StatusResponse),
              (status = 404, description = "No session has this token", body = ErrorBody)))]
pub async fn stop_delete(
    state: State<AppState>,
    token: Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    stop(state, token).await
}

/// `POST /v1/extend/{termination_token}`: push the session's end back (up to the server's
/// maximum TTL from its creation). The answer has the new `valid_till`.
#[utoipa::path(post, path = "/v1/extend/{termination_token}", tag = "sessions",
    params(("termination_token" = String, Path, description = "The token from POST /v1/try")),
    request_body = ExtendRequest,
    responses((status = 200, body = StatusResponse),
              (status = 400, description = "Not a number of seconds, or the session has ended", body = ErrorBody),
              (status = 404, description = "No session has this token", body = ErrorBody)))]
pub async fn extend(
    State(state): State<AppState>,
    Path(token): Path<String>,
    crate::extract::Json(req): crate::extract::Json<ExtendRequest>,
) -> Result<Json<StatusResponse>, ApiError> {
    let by = seconds("seconds", req.seconds)?;
    let s = state.sessions().extend(&token, by)?;
    Ok(Json(StatusResponse::of(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_squarex_shaped() {
        let t = DateTime::parse_from_rfc3339("2025-01-31T12:00:00.5Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2025-01-31T12:00:00.500000+00:00");
    }

    #[test]
    fn bodies() {
        let mut h = HeaderMap::new();
        assert!(parse_body(&h, b"").expect("empty").template.is_none());
        assert_eq!(
            parse_body(&h, b"{}").expect_err("no type").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        h.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("ct"),
        );
        let r = parse_body(&h, br#"{"template":"x","ttl":3}"#).expect("body");
        assert_eq!(r.template.as_deref(), Some("x"));
        assert_eq!(r.ttl, Some(3.0));
        assert_eq!(
            parse_body(&h, br#"{"tl":3}"#).expect_err("unknown").status,
            StatusCode::BAD_REQUEST
        );
    }
}
