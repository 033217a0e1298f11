//! [`SessionManager`]: open, watch, extend and stop sessions; the reaper that ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::SessionError;
use super::files::SessionFiles;
use super::info_service::INFO_SERVICE_ENV;
use super::template::{DEFAULT_TEMPLATE, SessionTemplate};
use crate::layer::{LayerError, LayerName};
use crate::sandbox::{ExecRequest, Runtime, SandboxError, SandboxSpec};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// The sandbox is up, the service is not accepting connections yet.
    Starting,
    /// The service accepts connections.
    Running,
    /// Stopped with its termination token.
    Stopped,
    /// Ended at `valid_till`.
    Expired,
}

impl SessionStatus {
    /// Whether the session is over.
    pub fn is_over(self) -> bool {
        matches!(self, SessionStatus::Stopped | SessionStatus::Expired)
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Random 128-bit id (hex); also the capability to reach its service.
    pub id: String,
    /// Random 128-bit token (hex) that stops or extends the session.
    pub termination_token: String,
    /// The template it was opened from.
    pub template: String,
    /// Who opened it.
    pub owner: Option<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When its service accepted its first connection probe.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ends.
    pub valid_till: DateTime<Utc>,
    /// Its sandbox.
    pub sandbox_id: String,
    /// The service's port inside the sandbox.
    pub port: u16,
    /// Where it is in its life.
    pub status: SessionStatus,
}

/// Limits of a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most sessions open at once (default 100).
    pub max_sessions: usize,
    /// Longest a session may live, extensions included (default 1 h).
    pub max_ttl: Duration,
    /// How often the reaper looks for expired sessions (default 250 ms).
    pub reap_interval: Duration,
    /// How long ended sessions stay queryable (default 1 h).
    pub keep_ended: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_sessions: 100,
            max_ttl: Duration::from_secs(3600),
            reap_interval: Duration::from_millis(250),
            keep_ended: Duration::from_secs(3600),
        }
    }
}

struct Entry {
    session: Session,
    status_tx: watch::Sender<SessionStatus>,
}

struct Inner {
    rt: Runtime,
    config: SessionConfig,
    templates: Mutex<HashMap<String, SessionTemplate>>,
    sessions: Mutex<HashMap<String, Entry>>,
    files: SessionFiles,
}

/// Opens and ends sessions. Cheap to clone; one per process.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager").finish_non_exhaustive()
    }
}

fn random_hex() -> Result<String, SessionError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| SessionError::Invalid {
        field: "random",
        reason: format!("no randomness available: {e}"),
    })?;
    Ok(hex::encode(b))
}

/// The layer that carries the binary serving as init, which also runs the info service.
const SERVICE_LAYER: &str = "010-sqrx-service";

impl SessionManager {
    /// A manager on `rt` with the built-in template; takes over the sessions a previous
    /// manager on the same data directory left (open ones carry on, see the module docs) and
    /// starts its reaper thread.
    pub fn new(rt: Runtime, config: SessionConfig) -> Self {
        let mut templates = HashMap::new();
        templates.insert(DEFAULT_TEMPLATE.to_string(), SessionTemplate::builtin());
        let manager = SessionManager {
            inner: Arc::new(Inner {
                files: SessionFiles::new(rt.data_dir()),
                rt,
                config,
                templates: Mutex::new(templates),
                sessions: Mutex::new(HashMap::new()),
            }),
        };
        manager.recover();
        manager.start_reaper();
        manager
    }

    /// Take over the sessions saved in the data directory by an earlier manager (a server
    /// that was restarted): ended ones stay queryable for `keep_ended`; open ones carry on
    /// until their `valid_till`, except those whose sandbox is gone and those the earlier
    /// manager was still starting, which end at the next reap (their sandbox destroyed).
    fn recover(&self) {
        let now = Utc::now();
        let keep = chrono::Duration::from_std(self.inner.config.keep_ended)
            .unwrap_or(chrono::Duration::hours(1));
        let mut recovered = 0;
        for mut session in self.inner.files.load() {
            if session.status.is_over() && session.valid_till + keep < now {
                self.forget(&session.id);
                continue;
            }
            if !session.status.is_over() {
                // `get` answers only for a sandbox whose init still runs.
                let alive = self.inner.rt.get(&session.sandbox_id).is_ok();
                if session.status == SessionStatus::Starting || !alive {
                    session.valid_till = session.valid_till.min(now);
                }
                recovered += 1;
            }
            let (status_tx, _) = watch::channel(session.status);
            self.sessions()
                .insert(session.id.clone(), Entry { session, status_tx });
        }
        if recovered > 0 {
            tracing::info!(sessions = recovered, "took over open sessions");
        }
    }

    /// Save `session`'s current state for a manager that takes over later.
    fn save(&self, session: &Session) {
        if let Err(e) = self.inner.files.save(session) {
            tracing::warn!(session = %session.id, error = %e, "cannot save the session; a restarted server will not know it");
        }
    }

    /// Remove the saved state of session `id`.
    fn forget(&self, id: &str) {
        if let Err(e) = self.inner.files.remove(id) {
            tracing::warn!(session = %id, error = %e, "cannot remove the session's file");
        }
    }

    /// Add or replace a template.
    pub fn add_template(&self, template: SessionTemplate) -> Result<(), SessionError> {
        if template.port == 0 {
            return Err(SessionError::Invalid {
                field: "port",
                reason: format!("template {} needs a port", template.name),
            });
        }
        self.templates().insert(template.name.clone(), template);
        Ok(())
    }

    /// The templates' names.
    pub fn template_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.templates().keys().cloned().collect();
        names.sort();
        names
    }

    /// The template `name` (`None`: the default one), if there is one.
    pub fn template(&self, name: Option<&str>) -> Option<SessionTemplate> {
        self.templates()
            .get(name.unwrap_or(DEFAULT_TEMPLATE))
            .cloned()
    }

    fn templates(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionTemplate>> {
        self.inner
            .templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions not over yet.
    pub fn active(&self) -> usize {
        self.sessions()
            .values()
            .filter(|e| !e.session.status.is_over())
            .count()
    }

    /// Make sure the service layer holds the current binary (rebuilt when the binary is newer).
    fn service_layer(&self, binary: &std::path::Path) -> Result<(), SessionError> {
        let store = self.inner.rt.layers();
        let name = LayerName::new(SERVICE_LAYER).map_err(SandboxError::from)?;
        let binary_time = std::fs::metadata(binary)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .ok();
        match store.get(&name) {
            Ok(layer) if binary_time.is_none_or(|t| t <= layer.created) => return Ok(()),
            Ok(_) => {
                // Stale: replace it unless a sandbox still uses it.
                if self.inner.rt.remove_layer(&name).is_err() {
                    return Ok(());
                }
            }
            Err(LayerError::NotFound { .. }) => {}
            Err(e) => return Err(SandboxError::from(e).into()),
        }
        match store.from_host(&name, &[binary.to_path_buf()], &Default::default()) {
            Ok(_) | Err(LayerError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(SandboxError::from(e).into()),
        }
    }

    /// Open a session from `template` (default: the built-in one) living `ttl` (default: the
    /// template's, at most the manager's `max_ttl`). Returns once its service accepts
    /// connections.
    pub async fn open(
        &self,
        template: Option<&str>,
        owner: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Session, SessionError> {
        let name = template.unwrap_or(DEFAULT_TEMPLATE);
        let t =
            self.templates()
                .get(name)
                .cloned()
                .ok_or_else(|| SessionError::UnknownTemplate {
                    name: name.to_string(),
                })?;
        let max_ttl = self.inner.config.max_ttl;
        let ttl = ttl.unwrap_or(t.ttl());
        if ttl.is_zero() || ttl > max_ttl {
            return Err(SessionError::Invalid {
                field: "ttl",
                reason: format!("must be between 1 and {} seconds", max_ttl.as_secs()),
            });
        }
        let id = random_hex()?;
        let token = random_hex()?;
        let sandbox_id = format!("session-{id}");
        let created_at = Utc::now();
        let valid_till =
            created_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(600));
        let (status_tx, _) = watch::channel(SessionStatus::Starting);
        let session = Session {
            id: id.clone(),
            termination_token: token,
            template: t.name.clone(),
            owner: owner.map(str::to_string),
            created_at,
            started_at: None,
            valid_till,
            sandbox_id: sandbox_id.clone(),
            port: t.port,
            status: SessionStatus::Starting,
        };
        {
            // Reserve the slot before the slow part.
            let mut sessions = self.sessions();
            let max = self.inner.config.max_sessions;
            if sessions
                .values()
                .filter(|e| !e.session.status.is_over())
                .count()
                >= max
            {
                return Err(SessionError::LimitExceeded { max });
            }
            sessions.insert(
                id.clone(),
                Entry {
                    session: session.clone(),
                    status_tx,
                },
            );
        }
        self.save(&session);
        match self.start(&t, &session).await {
            Ok(started_at) => {
                let mut sessions = self.sessions();
                let Some(entry) = sessions.get_mut(&id) else {
                    return Err(SessionError::NotFound);
                };
                if entry.session.status == SessionStatus::Starting {
                    entry.session.status = SessionStatus::Running;
                    entry.session.started_at = Some(started_at);
                    entry.status_tx.send_replace(SessionStatus::Running);
                }
                let session = entry.session.clone();
                drop(sessions);
                self.save(&session);
                tracing::info!(session = %id, template = %t.name, "session open");
                Ok(session)
            }
            Err(e) => {
                self.sessions().remove(&id);
                self.forget(&id);
                let rt = self.inner.rt.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Ok(sb) = rt.get(&sandbox_id) {
                        let _ = sb.destroy();
                    }
                })
                .await;
                Err(e)
            }
        }
    }

    /// Create the sandbox, start the service, wait for it. Returns when it accepted a probe.
    async fn start(
        &self,
        t: &SessionTemplate,
        session: &Session,
    ) -> Result<DateTime<Utc>, SessionError> {
        let rt = self.inner.rt.clone();
        let mut spec = SandboxSpec::new(session.sandbox_id.clone());
        spec.layers = t.layers.clone();
        spec.owner = session.owner.clone();
        spec.memory_mb = t.memory_mb;
        spec.cpu = t.cpu;
        spec.pids_max = t.pids_max;
        // A safety net: the runtime's reaper removes the sandbox even if this process dies.
        spec.max_lifetime = self.inner.config.max_ttl.as_secs() + 60;
        let mut env = t.env.clone();
        let command = match &t.command {
            Some(c) => c.clone(),
            None => {
                let (binary, _) = rt.init_program()?;
                let this = self.clone();
                let b = binary.clone();
                tokio::task::spawn_blocking(move || this.service_layer(&b))
                    .await
                    .map_err(|e| SessionError::Invalid {
                        field: "template",
                        reason: e.to_string(),
                    })??;
                spec.layers.push(SERVICE_LAYER.to_string());
                env.insert(INFO_SERVICE_ENV.into(), t.port.to_string());
                env.insert("SQRX_LAYERS".into(), t.layers.join(","));
                env.insert(
                    "SQRX_LIMITS".into(),
                    serde_json::json!({"memory_mb": t.memory_mb, "cpu": t.cpu, "pids_max": t.pids_max, "ttl_s": t.ttl})
                        .to_string(),
                );
                format!("exec '{}'", binary.display())
            }
        };
        let sandbox = tokio::task::spawn_blocking(move || rt.create(spec))
            .await
            .map_err(|e| SessionError::Invalid {
                field: "sandbox",
                reason: e.to_string(),
            })??;
        let mut req = ExecRequest::new(command.as_str());
        req.env = env;
        sandbox.spawn(req).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(t.start_timeout);
        loop {
            if self.status(&session.id).is_ok_and(|s| s.status.is_over()) {
                return Err(SessionError::NotFound);
            }
            let probe = sandbox.clone();
            let port = t.port;
            let accepted = tokio::task::spawn_blocking(move || {
                probe.connect_tcp(port, Duration::from_millis(200))
            })
            .await;
            let last = match accepted {
                Ok(Ok(_)) => return Ok(Utc::now()),
                // A sandbox that died cannot start its service any more.
                Ok(Err(e @ (SandboxError::Dead { .. } | SandboxError::NotFound { .. }))) => {
                    return Err(e.into());
                }
                // Anything else may be the service still coming up: try again until the deadline.
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if std::time::Instant::now() > deadline {
                return Err(SessionError::ServiceDidNotStart {
                    port: t.port,
                    secs: t.start_timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The session `id`.
    pub fn status(&self, id: &str) -> Result<Session, SessionError> {
        self.sessions()
            .get(id)
            .map(|e| e.session.clone())
            .ok_or(SessionError::NotFound)
    }

    /// A receiver that sees the session's status change (e.g. to close a proxied client when
    /// it ends).
    pub fn watch(&self, id: &str) -> Result<watch::Receiver<SessionStatus>, SessionError> {
        self.sessions()
            .get(id)
            .map(|e| e.status_tx.subscribe())
            .ok_or(SessionError::NotFound)
    }

    /// The id of the session whose termination token is `token` (compared in constant time).
    fn by_token(&self, token: &str) -> Result<String, SessionError> {
        let sessions = self.sessions();
        let mut found = None;
        for (id, e) in sessions.iter() {
            let t = e.session.termination_token.as_bytes();
            if t.len() == token.len() && bool::from(t.ct_eq(token.as_bytes())) {
                found = Some(id.clone());
            }
        }
        found.ok_or(SessionError::NotFound)
    }

    /// Stop the session whose termination token is `token` and destroy its sandbox.
    /// Stopping an ended session again is not an error.
    pub async fn stop(&self, token: &str) -> Result<Session, SessionError> {
        let id = self.by_token(token)?;
        self.end(&id, SessionStatus::Stopped).await
    }

    /// Push the end of the session whose token is `token` back by `by`, up to `max_ttl`
    /// after its creation.
    pub fn extend(&self, token: &str, by: Duration) -> Result<Session, SessionError> {
        let id = self.by_token(token)?;
        let mut sessions = self.sessions();
        let entry = sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if entry.session.status.is_over() {
            return Err(SessionError::Invalid {
                field: "session",
                reason: "the session has ended".into(),
            });
        }
        let limit = entry.session.created_at
            + chrono::Duration::from_std(self.inner.config.max_ttl)
                .unwrap_or(chrono::Duration::hours(1));
        let wanted = entry.session.valid_till
            + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        entry.session.valid_till = wanted.min(limit);
        let session = entry.session.clone();
        drop(sessions);
        self.save(&session);
        Ok(session)
    }

    async fn end(&self, id: &str, status: SessionStatus) -> Result<Session, SessionError> {
        let (session, sandbox_id) = {
            let mut sessions = self.sessions();
            let entry = sessions.get_mut(id).ok_or(SessionError::NotFound)?;
            if entry.session.status.is_over() {
                return Ok(entry.session.clone());
            }
            entry.session.status = status;
            entry.status_tx.send_replace(status);
            (entry.session.clone(), entry.session.sandbox_id.clone())
        };
        self.save(&session);
        let rt = self.inner.rt.clone();
        let destroyed = tokio::task::spawn_blocking(move || match rt.get(&sandbox_id) {
            Ok(sb) => sb.destroy(),
            Err(SandboxError::NotFound { .. } | SandboxError::Dead { .. }) => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        match destroyed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(session = %id, error = %e, "cannot destroy the session's sandbox")
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "cannot destroy the session's sandbox")
            }
        }
        tracing::info!(session = %id, ?status, "session ended");
        Ok(session)
    }

    /// End every session past its `valid_till`; forget ended ones after `keep_ended`.
    /// Returns the ids expired.
    pub async fn reap(&self) -> Vec<String> {
        let now = Utc::now();
        let keep = chrono::Duration::from_std(self.inner.config.keep_ended)
            .unwrap_or(chrono::Duration::hours(1));
        let due: Vec<String> = {
            let mut sessions = self.sessions();
            let mut forgotten = Vec::new();
            sessions.retain(|id, e| {
                let keep = !(e.session.status.is_over() && e.session.valid_till + keep < now);
                if !keep {
                    forgotten.push(id.clone());
                }
                keep
            });
            for id in forgotten {
                self.forget(&id);
            }
            sessions
                .values()
                .filter(|e| !e.session.status.is_over() && e.session.valid_till <= now)
                .map(|e| e.session.id.clone())
                .collect()
        };
        for id in &due {
            let _ = self.end(id, SessionStatus::Expired).await;
        }
        due
    }

    fn start_reaper(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.config.reap_interval;
        let spawned = std::thread::Builder::new()
            .name("sqrx-session-reaper".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else { return };
                    let manager = SessionManager { inner };
                    rt.block_on(manager.reap());
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the session reaper");
        }
    }
}
