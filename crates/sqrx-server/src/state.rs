//! [`AppState`]: what every handler shares (the runtime, the session manager, the reverse
//! proxy's upstream client, the JavaScript executors, the metrics, the settings), and the
//! bridge that runs blocking core calls off the async threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqrx_core::js::{JsExecutor, JsLimits};
use sqrx_core::session::{SessionConfig, SessionError, SessionManager};
use sqrx_core::{Runtime, Sandbox};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::proxy::Upstream;

/// Executors for non-default limits kept at once; past this the cache starts over.
const MAX_CUSTOM_EXECUTORS: usize = 8;

/// QuickJS executors: one with the default limits, and a few for limits requests asked for
/// (a [`JsExecutor`]'s limits are fixed when it is built).
pub struct JsPool {
    default: Arc<JsExecutor>,
    custom: Mutex<HashMap<(Duration, usize), Arc<JsExecutor>>>,
}

impl std::fmt::Debug for JsPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsPool")
            .field("default", &self.default.limits())
            .finish_non_exhaustive()
    }
}

impl JsPool {
    /// A pool whose default executor runs under `limits`.
    pub fn new(limits: JsLimits) -> Result<Self, sqrx_core::JsError> {
        Ok(JsPool {
            default: Arc::new(JsExecutor::new(limits)?),
            custom: Mutex::new(HashMap::new()),
        })
    }

    /// The default limits.
    pub fn default_limits(&self) -> &JsLimits {
        self.default.limits()
    }

    /// An executor for these limits (built on first use; building starts threads, so call
    /// this from a blocking context).
    pub fn executor(&self, limits: &JsLimits) -> Result<Arc<JsExecutor>, sqrx_core::JsError> {
        if limits == self.default.limits() {
            return Ok(Arc::clone(&self.default));
        }
        let key = (limits.timeout, limits.memory_bytes);
        let mut custom = self.custom.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = custom.get(&key) {
            return Ok(Arc::clone(e));
        }
        let executor = Arc::new(JsExecutor::new(limits.clone())?);
        if custom.len() >= MAX_CUSTOM_EXECUTORS {
            // Executors in use stay alive through their Arcs; the rest stop here.
            custom.clear();
        }
        custom.insert(key, Arc::clone(&executor));
        Ok(executor)
    }
}

struct Inner {
    rt: Runtime,
    sessions: SessionManager,
    upstream: Upstream,
    js: JsPool,
    metrics: Metrics,
    config: ServerConfig,
}

/// The state every handler gets: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("runtime", &self.inner.rt)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why the server's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The JavaScript executor could not start.
    #[error("cannot start the JavaScript executor: {0}")]
    Js(#[from] sqrx_core::JsError),
    /// A session template from the config file was refused.
    #[error("session template {name:?}: {source}")]
    Template {
        /// The template's name.
        name: String,
        /// Why.
        #[source]
        source: SessionError,
    },
}

impl AppState {
    /// State over an opened runtime: starts the session manager (and its reaper) with the
    /// configured templates.
    pub fn new(rt: Runtime, config: ServerConfig) -> Result<Self, StateError> {
        let sessions = SessionManager::new(
            rt.clone(),
            SessionConfig {
                max_sessions: config.sessions.max_sessions,
                max_ttl: Duration::from_secs(config.sessions.max_ttl),
                ..SessionConfig::default()
            },
        );
        for t in &config.templates {
            sessions
                .add_template(t.clone())
                .map_err(|source| StateError::Template {
                    name: t.name.clone(),
                    source,
                })?;
        }
        Ok(AppState {
            inner: Arc::new(Inner {
                upstream: Upstream::new(rt.clone()),
                rt,
                sessions,
                js: JsPool::new(JsLimits::default())?,
                metrics: Metrics::new(),
                config,
            }),
        })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.rt
    }

    /// The session manager.
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.sessions
    }

    /// The reverse proxy's client for connections into sandboxes.
    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    /// The JavaScript executors.
    pub fn js(&self) -> &JsPool {
        &self.inner.js
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Run a blocking core call on the blocking pool, so the async threads (and with them
    /// every other request) never wait on the filesystem, mounts or cgroups.
    pub async fn blocking<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Runtime) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let rt = self.inner.rt.clone();
        match tokio::task::spawn_blocking(move || f(&rt)).await {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(ApiError::internal(format!("blocking task failed: {e}"))),
        }
    }

    /// The sandbox `id`, looked up off the async threads.
    pub async fn sandbox(&self, id: &str) -> Result<Sandbox, ApiError> {
        let id = id.to_string();
        self.blocking(move |rt| rt.get(&id)).await
    }
}
