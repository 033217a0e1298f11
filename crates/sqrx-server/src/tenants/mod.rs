//! Many users on one server: users, API keys, ownership, quotas, rate limits and an audit
//! log, kept in a real database ([`store`]: SQLite in the data directory by default,
//! PostgreSQL with `--database-url`). See docs/tenants.md.
//!
//! Who calls is an [`Identity`]: the server's own token (`--auth-token`) is the operator, who
//! sees and may do everything, as do users marked admin; any other user sees and touches only
//! the sandboxes it owns (a sandbox's `owner` is its user id). Without an operator token and
//! without any key the server stays open as before (every caller is the operator); once a key
//! exists, every non-public route needs one.

pub mod access;
pub mod guard;
pub mod keys;
pub mod routes;
pub mod store;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, RateLimiter};

pub use store::{AuditQuery, AuditRecord, KeyInfo, Quota, Store, StoreError, User};

/// How long a looked-up key or user is trusted before it is read again. Changes through the
/// API take effect at once (the cache is dropped); changes by `sqrx admin` from another
/// process within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// `last_used` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A user calling with one of its keys.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The key it called with.
    pub key_id: String,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The server's own token (or an open server): everything is allowed.
    Operator,
    /// A user's key.
    User(Arc<Principal>),
}

impl Identity {
    /// Whether it may use the admin API and sees every sandbox.
    pub fn is_admin(&self) -> bool {
        match self {
            Identity::Operator => true,
            Identity::User(p) => p.user.admin,
        }
    }

    /// The owner whose sandboxes alone it sees: `None` for admins.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Identity::User(p) if !p.user.admin => Some(&p.user.id),
            _ => None,
        }
    }

    /// Whether it may see a sandbox owned by `owner`.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match self.scope() {
            None => true,
            Some(me) => owner == Some(me),
        }
    }

    /// The user id recorded in audit rows (`operator` for the server's token).
    pub fn audit_user(&self) -> String {
        match self {
            Identity::Operator => "operator".into(),
            Identity::User(p) => p.user.id.clone(),
        }
    }

    /// The key id recorded in audit rows.
    pub fn key_id(&self) -> Option<String> {
        match self {
            Identity::Operator => None,
            Identity::User(p) => Some(p.key_id.clone()),
        }
    }

    /// The user's limits (`None` for the operator).
    pub fn quota(&self) -> Option<&Quota> {
        match self {
            Identity::Operator => None,
            Identity::User(p) => Some(&p.user.quota),
        }
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No key, or not one of ours.
    #[error("unauthorized")]
    Unknown {
        /// The key's public id when it had the shape of a key.
        key_id: Option<String>,
    },
    /// Past its expiry.
    #[error("the API key has expired")]
    Expired {
        /// The key.
        key_id: String,
        /// Its user.
        user_id: String,
    },
    /// Revoked.
    #[error("the API key has been revoked")]
    Revoked {
        /// The key.
        key_id: String,
        /// Its user.
        user_id: String,
    },
    /// Its user is disabled.
    #[error("the user of this API key is disabled")]
    Disabled {
        /// The key.
        key_id: String,
        /// Its user.
        user_id: String,
    },
    /// The database did not answer.
    #[error("the tenant database is unavailable")]
    Unavailable,
}

impl AuthFailure {
    /// (user, key) for the audit row.
    pub fn who(&self) -> (Option<String>, Option<String>) {
        match self {
            AuthFailure::Unknown { key_id } => (None, key_id.clone()),
            AuthFailure::Expired { key_id, user_id }
            | AuthFailure::Revoked { key_id, user_id }
            | AuthFailure::Disabled { key_id, user_id } => {
                (Some(user_id.clone()), Some(key_id.clone()))
            }
            AuthFailure::Unavailable => (None, None),
        }
    }
}

/// A refused quota: which limit, its value and the use it would exceed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("quota exceeded: {quota} is {limit}, in use {current}, asked for {asked} more")]
pub struct QuotaExceeded {
    /// `max_sandboxes`, `max_cpu`, `max_memory_mb`, `max_disk_mb` or `max_lifetime`.
    pub quota: &'static str,
    /// The limit.
    pub limit: f64,
    /// What the user's sandboxes use now (in-flight creates included).
    pub current: f64,
    /// What the request adds.
    pub asked: f64,
}

/// What sandboxes use, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Sandboxes.
    pub sandboxes: u64,
    /// CPU cores.
    pub cpu: f64,
    /// Memory MiB.
    pub memory_mb: u64,
    /// Writable-layer MiB.
    pub disk_mb: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.sandboxes += o.sandboxes;
        self.cpu += o.cpu;
        self.memory_mb += o.memory_mb;
        self.disk_mb += o.disk_mb;
    }

    /// What one sandbox of `spec` uses (`default_*`: the server's defaults where the spec
    /// sets none).
    pub fn of(spec: &sqrx_core::SandboxSpec, default_cpu: f64, default_memory_mb: u64) -> Self {
        Usage {
            sandboxes: 1,
            cpu: spec.cpu.unwrap_or(default_cpu),
            memory_mb: spec.memory_mb.unwrap_or(default_memory_mb),
            disk_mb: spec.upper_mb,
        }
    }

    /// The first limit of `q` that `self + more` passes.
    pub fn check(&self, more: &Usage, q: &Quota) -> Result<(), QuotaExceeded> {
        let over = |quota, limit: Option<f64>, current: f64, asked: f64| match limit {
            Some(l) if current + asked > l + 1e-9 => Err(QuotaExceeded {
                quota,
                limit: l,
                current,
                asked,
            }),
            _ => Ok(()),
        };
        over(
            "max_sandboxes",
            q.max_sandboxes.map(|v| v as f64),
            self.sandboxes as f64,
            more.sandboxes as f64,
        )?;
        over("max_cpu", q.max_cpu, self.cpu, more.cpu)?;
        over(
            "max_memory_mb",
            q.max_memory_mb.map(|v| v as f64),
            self.memory_mb as f64,
            more.memory_mb as f64,
        )?;
        over(
            "max_disk_mb",
            q.max_disk_mb.map(|v| v as f64),
            self.disk_mb as f64,
            more.disk_mb as f64,
        )
    }
}

/// Usage held by a create in flight, for the sandbox it makes; given back when dropped (by
/// then the sandbox exists, or the create failed).
#[must_use]
pub struct Reservation {
    tenants: Arc<TenantsInner>,
    user_id: String,
    sandbox: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Under the quota lock: a check never reads the sandboxes before this one appears
        // among them and the reservations after it is gone.
        let _serial = lock(&self.tenants.quota_lock);
        let mut held = lock(&self.tenants.reserved);
        if let Some(mine) = held.get_mut(&self.user_id) {
            mine.remove(&self.sandbox);
            if mine.is_empty() {
                held.remove(&self.user_id);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct CachedKey {
    record: store::KeyRecord,
    at: Instant,
}

struct CachedUser {
    user: User,
    at: Instant,
}

struct TenantsInner {
    store: Store,
    keys: Mutex<HashMap<String, CachedKey>>,
    users: Mutex<HashMap<String, CachedUser>>,
    touched: Mutex<HashMap<String, Instant>>,
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    /// Per user, per sandbox being made: what it will use.
    reserved: Mutex<HashMap<String, HashMap<String, Usage>>>,
    /// Serialises quota checks (the usage read and the reservation are one step).
    quota_lock: Mutex<()>,
    any_key: AtomicBool,
}

/// The tenant layer of a server: the store plus caches, rate limiters and quota reservations.
#[derive(Clone)]
pub struct Tenants {
    inner: Arc<TenantsInner>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("backend", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

impl Tenants {
    /// Open the database at `url` (see [`Store::open`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Store::open(url).await?;
        let any_key = store.has_keys().await?;
        Ok(Tenants {
            inner: Arc::new(TenantsInner {
                store,
                keys: Mutex::new(HashMap::new()),
                users: Mutex::new(HashMap::new()),
                touched: Mutex::new(HashMap::new()),
                limiters: Mutex::new(HashMap::new()),
                reserved: Mutex::new(HashMap::new()),
                quota_lock: Mutex::new(()),
                any_key: AtomicBool::new(any_key),
            }),
        })
    }

    /// The default database of a data directory: `<data>/tenants.db` (SQLite).
    pub fn default_url(data_dir: &std::path::Path) -> String {
        format!("sqlite://{}", data_dir.join("tenants.db").display())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether any key exists (then requests need one even without an operator token).
    pub fn keys_exist(&self) -> bool {
        self.inner.any_key.load(Ordering::Relaxed)
    }

    /// Forget cached keys and users (after a change through the API).
    pub fn changed(&self) {
        lock(&self.inner.keys).clear();
        lock(&self.inner.users).clear();
        lock(&self.inner.limiters).clear();
        self.inner.any_key.store(true, Ordering::Relaxed);
    }

    /// Re-read whether keys exist (after deletions).
    pub async fn refresh_any_key(&self) {
        if let Ok(any) = self.inner.store.has_keys().await {
            self.inner.any_key.store(any, Ordering::Relaxed);
        }
    }

    async fn key_record(&self, id: &str) -> Result<Option<store::KeyRecord>, StoreError> {
        if let Some(c) = lock(&self.inner.keys).get(id)
            && c.at.elapsed() < CACHE_TTL
        {
            return Ok(Some(c.record.clone()));
        }
        let record = self.inner.store.key_record(id).await?;
        if let Some(r) = &record {
            lock(&self.inner.keys).insert(
                id.to_string(),
                CachedKey {
                    record: r.clone(),
                    at: Instant::now(),
                },
            );
        }
        Ok(record)
    }

    async fn cached_user(&self, id: &str) -> Result<User, StoreError> {
        if let Some(c) = lock(&self.inner.users).get(id)
            && c.at.elapsed() < CACHE_TTL
        {
            return Ok(c.user.clone());
        }
        let user = self.inner.store.user(id).await?;
        lock(&self.inner.users).insert(
            id.to_string(),
            CachedUser {
                user: user.clone(),
                at: Instant::now(),
            },
        );
        Ok(user)
    }

    /// The identity of `key` (a whole `sqrx_...` or `e2b_...` key).
    pub async fn authenticate(&self, key: &str) -> Result<Identity, AuthFailure> {
        let Some((id, secret)) = keys::parse(key) else {
            return Err(AuthFailure::Unknown { key_id: None });
        };
        let unknown = || AuthFailure::Unknown {
            key_id: Some(id.to_string()),
        };
        let record = match self.key_record(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(unknown()),
            Err(e) => {
                tracing::error!(error = %e, "cannot look up an API key");
                return Err(AuthFailure::Unavailable);
            }
        };
        if !keys::matches(secret, &record.hash) {
            return Err(unknown());
        }
        let (key_id, user_id) = (id.to_string(), record.user_id.clone());
        if record.revoked_ms.is_some() {
            return Err(AuthFailure::Revoked { key_id, user_id });
        }
        if record
            .expires_ms
            .is_some_and(|e| e <= chrono::Utc::now().timestamp_millis())
        {
            return Err(AuthFailure::Expired { key_id, user_id });
        }
        let user = match self.cached_user(&record.user_id).await {
            Ok(u) => u,
            Err(StoreError::NotFound { .. }) => return Err(unknown()),
            Err(e) => {
                tracing::error!(error = %e, "cannot look up a user");
                return Err(AuthFailure::Unavailable);
            }
        };
        if user.disabled {
            return Err(AuthFailure::Disabled { key_id, user_id });
        }
        self.touch(&key_id);
        Ok(Identity::User(Arc::new(Principal { user, key_id })))
    }

    /// Write `last_used` in the background, at most once a minute per key.
    fn touch(&self, key_id: &str) {
        {
            let mut touched = lock(&self.inner.touched);
            if touched
                .get(key_id)
                .is_some_and(|t| t.elapsed() < TOUCH_EVERY)
            {
                return;
            }
            touched.insert(key_id.to_string(), Instant::now());
        }
        let (store, id) = (self.inner.store.clone(), key_id.to_string());
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id).await {
                tracing::warn!(error = %e, key = %id, "cannot record an API key's use");
            }
        });
    }

    /// Take one request from `p`'s rate budget, or say how long to wait.
    pub fn rate_check(&self, p: &Principal) -> Result<(), Duration> {
        let Some(per_minute) = p.user.quota.rate_per_minute.and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let limiter = {
            let mut all = lock(&self.inner.limiters);
            let entry = all.entry(p.key_id.clone()).or_insert_with(|| {
                (
                    per_minute.get(),
                    Arc::new(RateLimiter::direct(governor::Quota::per_minute(per_minute))),
                )
            });
            if entry.0 != per_minute.get() {
                *entry = (
                    per_minute.get(),
                    Arc::new(RateLimiter::direct(governor::Quota::per_minute(per_minute))),
                );
            }
            Arc::clone(&entry.1)
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Check `more` (what the sandbox `sandbox` will use) against `identity`'s quota and hold
    /// it until the returned reservation drops. `usage_now` lists what the user's sandboxes
    /// use, by id; it runs under the quota lock, so concurrent creates never pass the limits
    /// together (a sandbox both listed and reserved counts once). `None`: no quota applies.
    pub fn reserve(
        &self,
        identity: &Identity,
        sandbox: &str,
        more: Usage,
        usage_now: impl FnOnce(&str) -> Vec<(String, Usage)>,
    ) -> Result<Option<Reservation>, QuotaExceeded> {
        let (Some(user_id), Some(quota)) = (identity.scope(), identity.quota()) else {
            return Ok(None);
        };
        let _serial = lock(&self.inner.quota_lock);
        let listed = usage_now(user_id);
        let mut held = lock(&self.inner.reserved);
        let mine = held.entry(user_id.to_string()).or_default();
        let mut current = Usage::default();
        for (id, u) in &listed {
            if !mine.contains_key(id) {
                current.add(u);
            }
        }
        for u in mine.values() {
            current.add(u);
        }
        current.check(&more, quota)?;
        mine.insert(sandbox.to_string(), more);
        Ok(Some(Reservation {
            tenants: Arc::clone(&self.inner),
            user_id: user_id.to_string(),
            sandbox: sandbox.to_string(),
        }))
    }

    /// The lifetime a user's sandbox gets: at most the user's `max_lifetime` (which also
    /// replaces "forever").
    pub fn lifetime(identity: &Identity, asked: u64) -> Result<u64, QuotaExceeded> {
        match identity.quota().and_then(|q| q.max_lifetime) {
            Some(max) if asked == 0 => Ok(max),
            Some(max) if asked > max => Err(QuotaExceeded {
                quota: "max_lifetime",
                limit: max as f64,
                current: 0.0,
                asked: asked as f64,
            }),
            _ => Ok(asked),
        }
    }

    /// Append an audit record; a failure is logged, never fails the request.
    pub fn audit(&self, record: AuditRecord) {
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.audit(record).await {
                tracing::error!(error = %e, "cannot write an audit record");
            }
        });
    }
}

impl From<QuotaExceeded> for crate::error::ApiError {
    fn from(e: QuotaExceeded) -> Self {
        let mut err =
            crate::error::ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, e.to_string());
        err.details = Some(serde_json::json!({
            "code": "quota_exceeded",
            "quota": e.quota,
            "limit": e.limit,
            "current": e.current,
            "asked": e.asked,
        }));
        err
    }
}

/// The caller of a request ([`Identity::Operator`] on a server without tenants).
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller(
            parts
                .extensions
                .get::<Identity>()
                .cloned()
                .unwrap_or(Identity::Operator),
        ))
    }
}

/// The identity authentication found, if any: on the routes that authenticate themselves
/// (E2B's control plane), `None` means no user key was accepted.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Option<Identity>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authenticated {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Authenticated(parts.extensions.get::<Identity>().cloned()))
    }
}

/// What each sandbox of `user` uses now, by id: its limits, and on disk its writable layer's
/// limit plus its snapshots' sizes.
pub fn usage_by_sandbox(
    rt: &sqrx_core::Runtime,
    user: &str,
    default_cpu: f64,
    default_mb: u64,
) -> Vec<(String, Usage)> {
    rt.list()
        .iter()
        .filter(|sb| sb.spec().owner.as_deref() == Some(user))
        .map(|sb| {
            let mut usage = Usage::of(sb.spec(), default_cpu, default_mb);
            usage.disk_mb += snapshot_mb(sb);
            (sb.id().to_string(), usage)
        })
        .collect()
}

/// The MiB `sandbox`'s snapshots take, rounded up.
fn snapshot_mb(sandbox: &sqrx_core::Sandbox) -> u64 {
    let bytes: u64 = match sandbox.snapshots() {
        Ok(snaps) => snaps.iter().map(|s| s.size).sum(),
        Err(e) => {
            tracing::warn!(sandbox = %sandbox.id(), error = %e, "cannot list snapshots");
            0
        }
    };
    bytes.div_ceil(1024 * 1024)
}

/// What the sandboxes of `user` use now, summed.
pub fn usage_of(rt: &sqrx_core::Runtime, user: &str, default_cpu: f64, default_mb: u64) -> Usage {
    let mut total = Usage::default();
    for (_, u) in usage_by_sandbox(rt, user, default_cpu, default_mb) {
        total.add(&u);
    }
    total
}

/// Check `more` (what `what` will add: a sandbox being made, a snapshot being taken) against
/// `identity`'s quota and hold it until the returned reservation drops (no reservation: no
/// quota applies). Concurrent requests never pass the limits together.
pub async fn hold(
    state: &crate::state::AppState,
    identity: &Identity,
    what: String,
    more: Usage,
) -> Result<Option<Reservation>, crate::error::ApiError> {
    let (Some(tenants), Some(_)) = (state.tenants().cloned(), identity.quota()) else {
        return Ok(None);
    };
    let identity = identity.clone();
    let limits = &state.config().limits;
    let (cpu, mb) = (limits.default_cpu, limits.default_memory_mb);
    state
        .blocking(move |rt| {
            tenants
                .reserve(&identity, &what, more, |user| {
                    usage_by_sandbox(rt, user, cpu, mb)
                })
                .map_err(crate::error::ApiError::from)
        })
        .await
}

/// Hold room in `identity`'s disk quota for a snapshot of `sandbox` until the reservation drops:
/// as much as its writable layer may hold (`upper_mb`), the most a snapshot of it can take.
/// Once taken, the snapshot counts at its real size (see [`usage_by_sandbox`]).
pub async fn hold_snapshot(
    state: &crate::state::AppState,
    identity: &Identity,
    sandbox: &sqrx_core::Sandbox,
) -> Result<Option<Reservation>, crate::error::ApiError> {
    let more = Usage {
        disk_mb: sandbox.spec().upper_mb,
        ..Usage::default()
    };
    hold(state, identity, format!("{}#snapshot", sandbox.id()), more).await
}

/// Run `make` (a create or clone that adds the sandbox `sandbox`, using `more`) on the blocking
/// pool within `identity`'s quota (see [`hold`]).
pub async fn within_quota<T: Send + 'static>(
    state: &crate::state::AppState,
    identity: &Identity,
    sandbox: String,
    more: Usage,
    make: impl FnOnce(&sqrx_core::Runtime) -> Result<T, crate::error::ApiError> + Send + 'static,
) -> Result<T, crate::error::ApiError> {
    let held = hold(state, identity, sandbox, more).await?;
    // Held until `make` returns, even if this request is dropped meanwhile.
    state
        .blocking(move |rt| {
            let _held = held;
            make(rt)
        })
        .await
}

/// Which layers `identity` may see and use: shared ones (no owner) and its own uploads; every
/// one for admins. `owners` maps uploaded layers to their users.
pub fn may_use_layer(identity: &Identity, owners: &HashMap<String, String>, layer: &str) -> bool {
    match (identity.scope(), owners.get(layer)) {
        (None, _) | (_, None) => true,
        (Some(me), Some(owner)) => owner == me,
    }
}

/// The layer owners when `identity` is scoped (empty otherwise: nothing to check).
pub async fn layer_owners(
    state: &crate::state::AppState,
    identity: &Identity,
) -> Result<HashMap<String, String>, crate::error::ApiError> {
    match (identity.scope(), state.tenants()) {
        (Some(_), Some(t)) => Ok(t.store().layer_owners().await?),
        _ => Ok(HashMap::new()),
    }
}

/// Create `spec` for `identity`: a user's sandbox is owned by it, its lifetime bounded by the
/// user's quota, and made within the user's limits, on layers it may use (another user's
/// layer is as missing as none).
pub async fn create_sandbox(
    state: &crate::state::AppState,
    identity: &Identity,
    mut spec: sqrx_core::SandboxSpec,
) -> Result<sqrx_core::Sandbox, crate::error::ApiError> {
    if let Identity::User(p) = identity {
        spec.owner = Some(p.user.id.clone());
    }
    let owners = layer_owners(state, identity).await?;
    if let Some(hidden) = spec
        .layers
        .iter()
        .find(|l| !may_use_layer(identity, &owners, l))
    {
        return Err(crate::error::ApiError::not_found(format!(
            "layer {hidden} not found"
        )));
    }
    spec.max_lifetime = Tenants::lifetime(identity, spec.max_lifetime)?;
    let limits = &state.config().limits;
    let more = Usage::of(&spec, limits.default_cpu, limits.default_memory_mb);
    within_quota(state, identity, spec.id.clone(), more, move |rt| {
        rt.create(spec).map_err(crate::error::ApiError::from)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> Quota {
        Quota {
            max_sandboxes: Some(2),
            max_cpu: Some(1.5),
            max_memory_mb: Some(1024),
            ..Quota::default()
        }
    }

    #[test]
    fn usage_checks_each_limit() {
        let one = Usage {
            sandboxes: 1,
            cpu: 0.5,
            memory_mb: 256,
            disk_mb: 512,
        };
        let mut now = Usage::default();
        assert!(now.check(&one, &quota()).is_ok());
        now.add(&one);
        assert!(now.check(&one, &quota()).is_ok());
        now.add(&one);
        let e = now.check(&one, &quota()).expect_err("third");
        assert_eq!((e.quota, e.limit, e.current), ("max_sandboxes", 2.0, 2.0));
        let big = Usage { cpu: 2.0, ..one };
        assert_eq!(
            Usage::default()
                .check(&big, &quota())
                .expect_err("cpu")
                .quota,
            "max_cpu"
        );
    }

    #[test]
    fn lifetimes_are_bounded_by_the_quota() {
        let user = Identity::User(Arc::new(Principal {
            user: User {
                id: "u_1".into(),
                name: "a".into(),
                admin: false,
                disabled: false,
                created: chrono::Utc::now(),
                quota: Quota {
                    max_lifetime: Some(60),
                    ..Quota::default()
                },
            },
            key_id: "k".into(),
        }));
        assert_eq!(Tenants::lifetime(&user, 0), Ok(60));
        assert_eq!(Tenants::lifetime(&user, 30), Ok(30));
        assert!(Tenants::lifetime(&user, 61).is_err());
        assert_eq!(Tenants::lifetime(&Identity::Operator, 0), Ok(0));
        assert!(user.may_see(Some("u_1")) && !user.may_see(Some("u_2")) && !user.may_see(None));
        assert!(Identity::Operator.may_see(None));
    }
}
