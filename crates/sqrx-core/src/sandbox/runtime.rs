//! The runtime: owns a data directory, its layer store and the sandboxes in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::mounts::LayerMounts;
use super::state::SandboxState;
use super::{SandboxError, spec::validate_id};
use crate::cgroup::CgroupRoot;
use crate::layer::LayerStore;

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The data directory (layers, sandboxes, shared mounts).
    pub data_dir: PathBuf,
    /// Most sandboxes alive at once (default 100).
    pub max_sandboxes: usize,
    /// The init program; `None` looks for it (see [`SandboxError::InitNotFound`]).
    pub init_path: Option<PathBuf>,
    /// Memory limit (MiB) for sandboxes whose spec sets none; `None` = unlimited.
    pub default_memory_mb: Option<u64>,
    /// Task limit for sandboxes whose spec sets none (default 1024).
    pub default_pids_max: Option<u64>,
    /// The cgroup layout; `None` detects it.
    pub cgroups: Option<CgroupRoot>,
    /// How sandboxes are isolated from the host (default [`Isolation::UserNamespace`], or
    /// what `SQRX_ISOLATION` says).
    pub isolation: Isolation,
    /// Most lower layers a sandbox's overlay stacks (default 64; overlayfs refuses more than
    /// [`OVERLAY_MAX_LOWER_LAYERS`]). A restore or activate that would stack more merges each
    /// run of snapshot layers into one image first (see `docs/sandboxes.md`, snapshot chains).
    pub max_lower_layers: usize,
    /// How sandboxes with a network policy other than `none` are connected.
    pub network: crate::network::NetworkConfig,
    /// The layer store's bucket: layers a sandbox needs and this store lacks are pulled from
    /// it (verified) at create. `None` (the default): no remote.
    #[cfg(feature = "s3")]
    pub remote: Option<crate::remote::RemoteConfig>,
}

/// The most lower layers overlayfs stacks (`OVL_MAX_STACK` in Linux 6.x): an overlay of more
/// fails to mount with `EINVAL`.
pub const OVERLAY_MAX_LOWER_LAYERS: usize = 500;

/// How root in a sandbox relates to root on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Each sandbox has its own user namespace: its ids 0..65535 are a range of unprivileged
    /// host ids of its own, and its layers are idmapped mounts. Needs Linux 6.3+ (idmapped
    /// tmpfs, overlayfs on idmapped layers); create fails with
    /// [`SandboxError::IsolationUnsupported`] where the kernel cannot do it.
    #[default]
    UserNamespace,
    /// Root in the sandbox is root on the host, confined only by namespaces, capabilities,
    /// seccomp and masked paths. An explicit opt-in for kernels without idmapped mounts.
    HostRoot,
}

impl Isolation {
    /// The isolation named by `SQRX_ISOLATION` (`user-namespace` or `host-root`), or the
    /// default when it is unset.
    pub fn from_env() -> Result<Self, SandboxError> {
        match std::env::var("SQRX_ISOLATION") {
            Err(_) => Ok(Isolation::default()),
            Ok(v) => v.parse(),
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "user-namespace" | "userns" => Ok(Isolation::UserNamespace),
            "host-root" => Ok(Isolation::HostRoot),
            other => Err(SandboxError::Invalid {
                field: "isolation",
                reason: format!("{other:?}: expected user-namespace or host-root"),
            }),
        }
    }
}

impl RuntimeConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            data_dir: data_dir.into(),
            max_sandboxes: 100,
            init_path: None,
            default_memory_mb: None,
            default_pids_max: Some(1024),
            cgroups: None,
            max_lower_layers: 64,
            network: crate::network::NetworkConfig::default(),
            #[cfg(feature = "s3")]
            remote: None,
            isolation: Isolation::from_env().unwrap_or_else(|e| {
                tracing::error!(error = %e, "ignoring SQRX_ISOLATION");
                Isolation::default()
            }),
        }
    }
}

pub(crate) struct Inner {
    pub config: RuntimeConfig,
    pub store: LayerStore,
    pub mounts: LayerMounts,
    pub cgroups: CgroupRoot,
    pub sandboxes_dir: PathBuf,
    pub ids: super::ids::IdRegistry,
    pub network: crate::network::Network,
    /// Processes started with `Sandbox::start_tracked`, while they run.
    pub processes: super::processes::ProcessTable,
    /// The connection to the layer store's bucket, made at the first layer it must pull.
    #[cfg(feature = "s3")]
    pub remote: std::sync::OnceLock<crate::remote::Remote>,
    /// Wakes the background pusher (see [`crate::remote::Uploads`]).
    #[cfg(feature = "s3")]
    pub pusher: Arc<crate::remote::Wake>,
    /// Sandbox owners read so far (see [`Runtime::owner_of`]).
    pub owners: super::owners::OwnerCache,
}

#[cfg(feature = "s3")]
impl Drop for Inner {
    fn drop(&mut self) {
        self.pusher.stop();
    }
}

/// The entry point: open one per data directory (several processes may open the same one).
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

/// What `info()` and `list()` report about a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxInfo {
    /// The id.
    pub id: String,
    /// `running`, `paused` or `dead`.
    pub status: &'static str,
    /// Layer names, base first.
    pub layers: Vec<String>,
    /// The owner, if any.
    pub owner: Option<String>,
    /// When it was created.
    pub created: chrono::DateTime<chrono::Utc>,
    /// When the reaper will destroy it, if it has a lifetime.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// Host pid of its init.
    pub init_pid: i32,
    /// CPU limit in cores.
    pub cpu: Option<f64>,
    /// Memory limit in MiB.
    pub memory_mb: Option<u64>,
    /// Task limit.
    pub pids_max: Option<u64>,
    /// Upper layer size in MiB.
    pub upper_mb: u64,
    /// Bytes written to the upper layer so far.
    pub upper_bytes: u64,
    /// The label of the snapshot last restored, if any.
    pub active_snapshot: Option<String>,
    /// The host id of its root (its user namespace maps ids 0..65535 to this id on); `None`
    /// when it runs as host root.
    pub id_base: Option<u32>,
}

/// A handle on one sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) rt: Runtime,
    pub(crate) state: SandboxState,
    /// The sandbox's (uid, gid) owning files this handle writes; `None`: its root.
    pub(crate) files_owner: Option<(u32, u32)>,
}

impl Sandbox {
    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.state.spec.id
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.rt.inner.sandboxes_dir.join(self.id())
    }

    /// Its init's control socket.
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.dir().join(
            self.state
                .socket
                .as_deref()
                .unwrap_or(crate::init::DEFAULT_SOCKET),
        )
    }

    /// Host paths of its read-only layer mounts, base first (shared with other sandboxes).
    pub fn layer_mounts(&self) -> Vec<PathBuf> {
        self.state.layers.iter().map(|l| l.mount.clone()).collect()
    }

    /// What it is and what it is limited to.
    pub fn info(&self) -> SandboxInfo {
        let s = &self.state;
        SandboxInfo {
            id: s.spec.id.clone(),
            status: if !s.init_alive() {
                "dead"
            } else if self.is_paused() {
                "paused"
            } else {
                "running"
            },
            layers: s
                .layers
                .iter()
                .filter(|l| !l.snapshot || l.store_copy)
                .map(|l| l.name.clone())
                .collect(),
            owner: s.spec.owner.clone(),
            created: s.created,
            expires: (s.spec.max_lifetime > 0).then(|| {
                s.created
                    + chrono::Duration::seconds(s.spec.max_lifetime.min(i64::MAX as u64) as i64)
            }),
            init_pid: s.init_pid,
            cpu: s.spec.cpu,
            memory_mb: s.spec.memory_mb,
            pids_max: s.spec.pids_max,
            upper_mb: s.spec.upper_mb,
            upper_bytes: super::upper::used_bytes(&self.dir()),
            active_snapshot: s.active_snapshot.clone(),
            id_base: s.ids.map(|r| r.base),
        }
    }
}

impl Runtime {
    /// Open the runtime on `config.data_dir`, then recover its sandboxes (see
    /// [`Runtime::recover`]): finish or roll back operations of processes that were killed,
    /// clean up sandboxes whose init died while no runtime was watching.
    pub fn open(config: RuntimeConfig) -> Result<Self, SandboxError> {
        let store = LayerStore::open(&config.data_dir)?;
        let cgroups = match &config.cgroups {
            Some(c) => c.clone(),
            None => CgroupRoot::detect()?,
        };
        if config.isolation == Isolation::HostRoot {
            tracing::warn!(
                data_dir = %config.data_dir.display(),
                "isolation = host-root: root in a sandbox is root on the host (no user namespace); \
                 use it only on kernels without idmapped mounts"
            );
        }
        let sandboxes_dir = config.data_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir)
            .map_err(SandboxError::io("create", &sandboxes_dir))?;
        let network = crate::network::Network::new(config.network.clone(), &config.data_dir)?;
        let rt = Runtime {
            inner: Arc::new(Inner {
                processes: Default::default(),
                owners: Default::default(),
                #[cfg(feature = "s3")]
                remote: std::sync::OnceLock::new(),
                #[cfg(feature = "s3")]
                pusher: Default::default(),
                network,
                mounts: LayerMounts::new(&config.data_dir),
                config,
                store,
                cgroups,
                sandboxes_dir,
                ids: super::ids::IdRegistry::new(super::ids::REGISTRY),
            }),
        };
        // A bad secrets file must not lock anyone out of their sandboxes: the secrets read last
        // stay in force, and the error is logged (the server checks the file at start).
        if let Err(e) = rt.reload_secrets() {
            tracing::error!(error = %e, "runtime secrets not read; the previous ones stay");
        }
        rt.recover();
        Ok(rt)
    }

    /// The layer store of this data directory.
    pub fn layers(&self) -> &LayerStore {
        &self.inner.store
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// How root in this runtime's sandboxes relates to the host's root.
    pub fn isolation(&self) -> Isolation {
        self.inner.config.isolation
    }

    pub(crate) fn state_path(&self, id: &str) -> PathBuf {
        self.inner.sandboxes_dir.join(id).join("state.json")
    }

    /// Ids with a sandbox directory (created, being created or being destroyed).
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.inner.sandboxes_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_id(n).is_ok())
            .collect();
        ids.sort();
        ids
    }

    /// The sandbox `id`. A sandbox whose init is gone is repaired when a killed restore or
    /// activate stopped it (it comes back on its previous stack), otherwise cleaned up and
    /// reported as [`SandboxError::Dead`]; while another process or thread is changing it (it
    /// holds its state lock), it is returned as it is.
    pub fn get(&self, id: &str) -> Result<Sandbox, SandboxError> {
        validate_id(id)?;
        let path = self.state_path(id);
        if !path.exists() {
            return Err(SandboxError::NotFound { id: id.to_string() });
        }
        let state = SandboxState::load(&path)?;
        let sandbox = Sandbox {
            rt: self.clone(),
            state,
            files_owner: None,
        };
        let destroying = super::destroy::destroying_marker(&sandbox.dir()).exists();
        if destroying || !sandbox.state.init_alive() {
            return match self.try_state_lock(id)? {
                Some(_lock) => sandbox.repair(),
                None => Ok(sandbox),
            };
        }
        Ok(sandbox)
    }

    /// Every live sandbox, by id.
    pub fn list(&self) -> Vec<Sandbox> {
        self.ids()
            .iter()
            .filter_map(|id| self.get(id).ok())
            .collect()
    }

    /// Remove a layer from the store, refused while a sandbox uses it.
    pub fn remove_layer(&self, name: &crate::layer::LayerName) -> Result<(), SandboxError> {
        let users: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| {
                SandboxState::load(&self.state_path(id)).is_ok_and(|s| {
                    s.init_alive() && s.layers.iter().any(|l| l.name == name.as_str())
                })
            })
            .collect();
        if !users.is_empty() {
            return Err(SandboxError::LayerInUse {
                layer: name.to_string(),
                sandboxes: users.join(", "),
            });
        }
        Ok(self.inner.store.remove(name)?)
    }

    /// Destroy sandboxes past their `max_lifetime`. Returns the ids destroyed.
    pub fn reap(&self) -> Vec<String> {
        let now = chrono::Utc::now();
        let mut reaped = Vec::new();
        for sandbox in self.list() {
            if sandbox.info().expires.is_some_and(|t| t <= now) {
                let id = sandbox.id().to_string();
                match sandbox.destroy() {
                    Ok(()) => reaped.push(id),
                    Err(e) => tracing::warn!(sandbox = %id, error = %e, "reaper could not destroy"),
                }
            }
        }
        reaped
    }

    /// Run [`Runtime::reap`] every `interval` on a background thread for as long as the
    /// runtime lives.
    pub fn start_reaper(&self, interval: std::time::Duration) {
        let weak = Arc::downgrade(&self.inner);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else { return };
                Runtime { inner }.reap();
            }
        });
    }
}
