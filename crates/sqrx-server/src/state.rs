//! [`AppState`]: what every handler shares (the runtime, the session manager, the reverse
//! proxy's upstream client, the JavaScript executors, the metrics, the settings), and the
//! bridge that runs blocking core calls off the async threads.

use std::sync::Arc;
use std::time::Duration;

use sqrx_core::js::{ConfinedJsExecutor, JsExecutor, JsExecutorCache, JsLimits, JsRunner};
use sqrx_core::session::{SessionConfig, SessionError, SessionManager};
use sqrx_core::{Runtime, Sandbox};

use crate::config::{JsIsolation, ServerConfig};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::proxy::Upstream;

/// QuickJS executors of one kind ([`JsIsolation`]): one with the default limits, and a few for
/// limits requests asked for (an executor's limits are fixed when it is built; the core's
/// [`JsExecutorCache`] keeps them).
///
/// With [`JsIsolation::Process`] each executor is a pool of confined worker processes. If the
/// default one cannot start (no `sqrx-init` found), the server still starts, says why in its
/// log, and answers JavaScript requests with 503 and the reason until it can; it never falls
/// back to running scripts in-process.
#[derive(Debug)]
pub struct JsPool {
    isolation: JsIsolation,
    executors: JsExecutorCache,
}

impl JsPool {
    /// A pool whose default executor runs under `limits`, started now. A confined executor
    /// that cannot start is logged and retried on first use.
    pub fn new(isolation: JsIsolation, limits: JsLimits) -> Result<Self, sqrx_core::JsError> {
        limits.validate()?;
        let pool = JsPool {
            isolation,
            executors: JsExecutorCache::new(
                limits.clone(),
                move |limits| -> Result<Arc<dyn JsRunner>, sqrx_core::JsError> {
                    Ok(match isolation {
                        JsIsolation::Process => Arc::new(ConfinedJsExecutor::new(limits.clone())?),
                        JsIsolation::InProcess => Arc::new(JsExecutor::new(limits.clone())?),
                    })
                },
            ),
        };
        match pool.executors.get(&limits) {
            Ok(_) => {}
            Err(e) if isolation == JsIsolation::Process => tracing::error!(
                error = %e,
                "cannot start the confined JavaScript workers; JavaScript requests fail until they can"
            ),
            Err(e) => return Err(e),
        }
        Ok(pool)
    }

    /// Where scripts run.
    pub fn isolation(&self) -> JsIsolation {
        self.isolation
    }

    /// The default limits.
    pub fn default_limits(&self) -> &JsLimits {
        self.executors.default_limits()
    }

    /// An executor for these limits (built on first use; building starts threads or
    /// processes, so call this from a blocking context).
    pub fn executor(&self, limits: &JsLimits) -> Result<Arc<dyn JsRunner>, sqrx_core::JsError> {
        self.executors.get(limits)
    }
}

struct Inner {
    rt: Runtime,
    sessions: SessionManager,
    upstream: Upstream,
    js: JsPool,
    metrics: Metrics,
    config: ServerConfig,
    tenants: std::sync::OnceLock<crate::tenants::Tenants>,
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
                js: JsPool::new(config.js_isolation, JsLimits::default())?,
                metrics: Metrics::new(),
                config,
                tenants: std::sync::OnceLock::new(),
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

    /// The tenant database, once [`AppState::set_tenants`] gave one.
    pub fn tenants(&self) -> Option<&crate::tenants::Tenants> {
        self.inner.tenants.get()
    }

    /// Serve many users from `tenants` (once; later calls are ignored).
    pub fn set_tenants(&self, tenants: crate::tenants::Tenants) {
        let _ = self.inner.tenants.set(tenants);
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
