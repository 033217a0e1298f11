//! The access decisions that every path into the server shares (the router's middleware,
//! the proxy's relay and its direct path): a key to an identity, whether an identity may
//! reach a sandbox, and the audit row of each decision. One copy, so the paths cannot drift.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AuditRecord, AuthFailure, Identity, Tenants};
use crate::error::ApiError;
use crate::state::AppState;

/// One request, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its route (the router's pattern, or the proxy's route label).
    pub route: &'a str,
    /// The sandbox it names, if any.
    pub target: Option<&'a str>,
    /// The client's address.
    pub source_ip: Option<String>,
}

impl Attempt<'_> {
    /// The audit row of this request's outcome.
    pub fn record(
        &self,
        user: Option<String>,
        key_id: Option<String>,
        status: StatusCode,
        result: &str,
    ) -> AuditRecord {
        AuditRecord {
            id: String::new(),
            at: chrono::Utc::now(),
            user,
            key_id,
            action: format!("{} {}", self.method, self.route),
            target: self.target.map(str::to_string),
            result: result.into(),
            status: status.as_u16(),
            source_ip: self.source_ip.clone(),
        }
    }

    /// The audit row of `identity`'s request.
    pub fn by(&self, identity: &Identity, status: StatusCode, result: &str) -> AuditRecord {
        self.record(
            Some(identity.audit_user()),
            identity.key_id(),
            status,
            result,
        )
    }

    /// Audit a request whose handler answered `status`, if it changes something.
    pub fn finished(&self, tenants: &Tenants, identity: &Identity, status: StatusCode) {
        if matches!(*self.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return;
        }
        let result = if status.is_success() || status.is_redirection() {
            "ok"
        } else {
            "error"
        };
        tenants.audit(self.by(identity, status, result));
    }
}

/// Why a key did not open the server.
#[derive(Debug)]
pub enum Refusal {
    /// The key is missing, unknown, expired, revoked, its user disabled, or the database down.
    Key(AuthFailure),
    /// The key's rate limit is reached: retry after this long.
    RateLimited(Duration),
}

impl Refusal {
    /// The answer to the client; a refused key is audited.
    pub fn answer(self, tenants: &Tenants, attempt: &Attempt<'_>) -> Response {
        match self {
            Refusal::RateLimited(wait) => rate_limited(wait),
            Refusal::Key(failure) => {
                let (user, key_id) = failure.who();
                tenants.audit(attempt.record(user, key_id, StatusCode::UNAUTHORIZED, "denied"));
                match failure {
                    AuthFailure::Unavailable => {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, failure.to_string())
                            .into_response()
                    }
                    AuthFailure::Unknown { .. } => crate::auth::unauthorized(),
                    other => unauthorized_because(&other.to_string()),
                }
            }
        }
    }
}

/// The identity of a request offering `key` (the operator's token already ruled out), within
/// its rate limit.
pub async fn identify(tenants: &Tenants, key: Option<&str>) -> Result<Identity, Refusal> {
    let identity = match key {
        Some(key) => tenants.authenticate(key).await.map_err(Refusal::Key)?,
        None => return Err(Refusal::Key(AuthFailure::Unknown { key_id: None })),
    };
    if let Identity::User(p) = &identity {
        tenants.rate_check(p).map_err(Refusal::RateLimited)?;
    }
    Ok(identity)
}

/// May `identity` reach sandbox `id`? Admins reach every one; a user only its own, and a
/// sandbox that does not exist is treated like another user's (the caller answers both with
/// the same 404). One `stat` per call (see [`sqrx_core::Runtime::owner_of`]).
pub fn may_reach(state: &AppState, identity: &Identity, id: &str) -> bool {
    if identity.scope().is_none() {
        return true;
    }
    match state.runtime().owner_of(id) {
        Ok(owner) => identity.may_see(owner.as_deref()),
        Err(_) => false,
    }
}

/// Audit the refusal `answer` of `identity`'s request and return it.
pub fn deny(
    tenants: &Tenants,
    identity: &Identity,
    attempt: &Attempt<'_>,
    answer: Response,
) -> Response {
    tenants.audit(attempt.by(identity, answer.status(), "denied"));
    answer
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn rate_limited(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit of this API key reached; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// 401 with the reason the key was refused.
fn unauthorized_because(reason: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}
