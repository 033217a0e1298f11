//! `Runtime`: the entry point, one per data directory.

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;
use sqrx_core::SandboxSpec;

use crate::bridge::blocking;
use crate::error::invalid;
use crate::sandbox::Sandbox;

/// How often the runtime's reaper destroys sandboxes past their lifetime.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// How to open a runtime (every field optional).
#[napi(object)]
pub struct RuntimeOptions {
    /// The data directory; default as the `sqrx` CLI (`$SQRX_DATA`, else `/var/lib/sqrx` for
    /// root, else `~/.local/share/sqrx`).
    pub data_dir: Option<String>,
    /// The `sqrx-init` program; default `$SQRX_INIT`, else the one in this package.
    pub init_path: Option<String>,
    /// Most sandboxes alive at once (default 100).
    pub max_sandboxes: Option<u32>,
    /// The IPv4 pool sandbox addresses come from (default `100.64.0.0/10`), as
    /// `sqrx serve --net-pool`.
    pub net_pool: Option<String>,
    /// The interface sandboxes' traffic leaves through (default: the default route's).
    pub net_uplink: Option<String>,
    /// A network namespace (e.g. `/run/netns/sandboxes`) to hold the host side of sandbox
    /// links and their rules, instead of this process's.
    pub net_netns: Option<String>,
    /// Let the egress proxy read HTTPS to the hosts secrets are bound to (default true), as
    /// `sqrx serve --proxy-https`.
    pub proxy_https: Option<bool>,
    /// PEM files of CAs the egress proxy trusts for those hosts besides the system's, as
    /// `sqrx serve --egress-ca`.
    pub egress_ca: Option<Vec<String>>,
}

/// A sandbox to create.
#[napi(object)]
pub struct CreateOptions {
    /// `^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`, unique in the data directory.
    pub id: String,
    /// Layer names, base first (default `["000-base"]`, built from the host's programs on
    /// first use).
    pub layers: Option<Vec<String>>,
    /// Memory limit in MiB.
    pub memory_mb: Option<u32>,
    /// CPU limit in cores (`0.5` = half a core).
    pub cpu: Option<f64>,
    /// Task limit.
    pub pids_max: Option<u32>,
    /// Size of the writable layer in MiB (default 512).
    pub upper_mb: Option<u32>,
    /// Lifetime in milliseconds (rounded up to seconds), after which the runtime destroys it.
    pub timeout_ms: Option<f64>,
    /// Environment added to every exec.
    pub env: Option<HashMap<String, String>>,
    /// Hostname inside (default: the id).
    pub hostname: Option<String>,
    /// Who owns it (free text).
    pub owner: Option<String>,
    /// What it may reach: `'none'` (loopback only, the default), `'all'`, an array of rules
    /// (`HOST`, `*.DOMAIN`, `CIDR`, each with an optional `:PORT`) it may reach, or
    /// `{ allow: [...], deny: [...] }`.
    #[napi(ts_type = "'none' | 'all' | string[] | { allow?: string[]; deny?: string[] }")]
    pub network: Option<serde_json::Value>,
    /// Secrets by name (needs a network): the sandbox sees `$NAME` holding a placeholder, and
    /// the egress proxy puts the value in requests to `allowedHosts` only.
    pub secrets: Option<HashMap<String, crate::secrets::SecretOptions>>,
    /// Let setuid programs (`sudo`) raise privileges inside, to the sandbox's own root
    /// (default false).
    pub setuid: Option<bool>,
}

fn spec(o: CreateOptions) -> napi::Result<SandboxSpec> {
    let mut spec = SandboxSpec::new(o.id);
    if let Some(layers) = o.layers {
        spec.layers = layers;
    }
    spec.memory_mb = o.memory_mb.map(u64::from);
    spec.cpu = o.cpu;
    spec.pids_max = o.pids_max.map(u64::from);
    if let Some(mb) = o.upper_mb {
        spec.upper_mb = u64::from(mb);
    }
    spec.max_lifetime = match o.timeout_ms {
        None => 0,
        Some(ms) if ms.is_finite() && ms > 0.0 && ms < 1e15 => (ms / 1000.0).ceil() as u64,
        Some(ms) => return Err(invalid(format!("timeoutMs {ms} is not a positive number"))),
    };
    spec.env = o.env.unwrap_or_default().into_iter().collect();
    spec.hostname = o.hostname;
    spec.owner = o.owner;
    spec.setuid = o.setuid.unwrap_or(false);
    if let Some(network) = o.network {
        spec.network = crate::network::policy(network)?;
    }
    spec.secrets = o
        .secrets
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    Ok(spec)
}

/// Opens the data directory that holds layers and sandboxes. Sandboxes outlive the `Runtime`
/// object and the process; a new `Runtime` on the same directory finds them.
#[napi]
pub struct Runtime {
    rt: sqrx_core::Runtime,
}

#[napi]
impl Runtime {
    /// Open the data directory (see `RuntimeOptions`).
    // Configurable, so index.js can wrap it to default `initPath` to the packaged sqrx-init.
    #[napi(factory, writable = true, configurable = true)]
    pub async fn open(options: Option<RuntimeOptions>) -> napi::Result<Runtime> {
        let o = options.unwrap_or(RuntimeOptions {
            data_dir: None,
            init_path: None,
            max_sandboxes: None,
            net_pool: None,
            net_uplink: None,
            net_netns: None,
            proxy_https: None,
            egress_ca: None,
        });
        let mut config = sqrx_core::RuntimeConfig::new(
            o.data_dir
                .map(Into::into)
                .unwrap_or_else(sqrx_core::paths::default_data_dir),
        );
        config.init_path = o.init_path.map(Into::into);
        if let Some(max) = o.max_sandboxes {
            config.max_sandboxes = max as usize;
        }
        if let Some(pool) = o.net_pool {
            config.network.pool = pool;
        }
        config.network.uplink = o.net_uplink;
        config.network.netns = o.net_netns.map(Into::into);
        config.network.intercept_https = o.proxy_https.unwrap_or(true);
        config.network.upstream_ca = o
            .egress_ca
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect();
        // The layer store's bucket, as the CLI and the server read it (docs/s3.md).
        config.remote = sqrx_core::remote::RemoteConfig::from_env(&|k| std::env::var(k).ok())
            .map_err(crate::error::to_napi)?;
        let rt = blocking(move || sqrx_core::Runtime::open(config)).await?;
        rt.start_reaper(REAP_INTERVAL);
        // New layers and snapshots go up to the bucket in the background (docs/s3.md).
        rt.start_pusher().map_err(crate::error::to_napi)?;
        Ok(Runtime { rt })
    }

    /// The runtime's secrets (from the data directory's `secrets.json`); never values.
    #[napi]
    pub fn secrets(&self) -> Vec<crate::secrets::SecretInfo> {
        self.rt.secrets().into_iter().map(Into::into).collect()
    }

    /// Read the data directory's `secrets.json` again (new values take effect for the next
    /// request); resolves with how many secrets it holds. A bad file rejects with
    /// `InvalidArgument` and changes nothing.
    #[napi]
    pub async fn reload_secrets(&self) -> napi::Result<u32> {
        let rt = self.rt.clone();
        let n = blocking(move || rt.reload_secrets()).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Upload layer `name` to the bucket (`SQRX_S3_BUCKET`, `SQRX_S3_ENDPOINT`, ...; AWS
    /// credentials): its image once per digest, resuming an interrupted upload.
    #[napi]
    pub async fn push_layer(&self, name: String) -> napi::Result<LayerPushed> {
        let rt = self.rt.clone();
        let r = blocking(move || {
            let name = sqrx_core::LayerName::new(name.as_str())?;
            Ok::<_, sqrx_core::Error>(rt.bucket()?.push(rt.layers(), &name, None)?)
        })
        .await?;
        Ok(LayerPushed {
            name: r.name,
            digest: r.digest,
            key: r.key,
            uploaded_bytes: r.uploaded_bytes as f64,
            parts_reused: r.parts_reused as u32,
        })
    }

    /// Download layer `name` from the bucket, verified against its digest (`force` replaces a
    /// local layer of that name that is another image).
    #[napi]
    pub async fn pull_layer(&self, name: String, force: Option<bool>) -> napi::Result<LayerPulled> {
        let rt = self.rt.clone();
        let force = force.unwrap_or(false);
        let r = blocking(move || {
            let name = sqrx_core::LayerName::new(name.as_str())?;
            Ok::<_, sqrx_core::Error>(rt.bucket()?.pull(rt.layers(), &name, force, None)?)
        })
        .await?;
        Ok(LayerPulled {
            name: r.name,
            digest: r.digest,
            downloaded_bytes: r.downloaded_bytes as f64,
        })
    }

    /// Where each layer and snapshot stands in its way to the bucket (pushed in the
    /// background, failed uploads retried with backoff).
    #[napi]
    pub async fn uploads(&self) -> napi::Result<Vec<Upload>> {
        let rt = self.rt.clone();
        let list = blocking(move || rt.uploads().list()).await?;
        Ok(list.into_iter().map(Upload::from).collect())
    }

    /// Push the layers the bucket lacks and pull the ones this store lacks.
    #[napi]
    pub async fn sync_layers(&self) -> napi::Result<LayersSynced> {
        let rt = self.rt.clone();
        let r =
            blocking(move || Ok::<_, sqrx_core::Error>(rt.bucket()?.sync(rt.layers())?)).await?;
        Ok(LayersSynced {
            pushed: r.pushed,
            pulled: r.pulled,
        })
    }

    /// The data directory.
    #[napi(getter)]
    pub fn data_dir(&self) -> String {
        self.rt.data_dir().display().to_string()
    }

    /// Create and start a sandbox.
    #[napi]
    pub async fn create(&self, options: CreateOptions) -> napi::Result<Sandbox> {
        let spec = spec(options)?;
        let rt = self.rt.clone();
        Ok(Sandbox::new(blocking(move || rt.create(spec)).await?))
    }

    /// The sandbox `id`; rejects with code `NotFound` when there is none.
    #[napi]
    pub async fn get(&self, id: String) -> napi::Result<Sandbox> {
        let rt = self.rt.clone();
        Ok(Sandbox::new(blocking(move || rt.get(&id)).await?))
    }

    /// Every live sandbox in the data directory, by id.
    #[napi]
    pub async fn list(&self) -> napi::Result<Vec<Sandbox>> {
        let rt = self.rt.clone();
        let list = blocking(move || Ok::<_, sqrx_core::SandboxError>(rt.list())).await?;
        Ok(list.into_iter().map(Sandbox::new).collect())
    }

    /// A new sandbox `newId` with a copy of the sandbox `src`'s files, layers and limits.
    #[napi]
    pub async fn clone_sandbox(&self, src: String, new_id: String) -> napi::Result<Sandbox> {
        let rt = self.rt.clone();
        Ok(Sandbox::new(
            blocking(move || rt.clone_sandbox(&src, &new_id)).await?,
        ))
    }

    /// The names of the layers in the data directory's store.
    #[napi]
    pub async fn layers(&self) -> napi::Result<Vec<String>> {
        let rt = self.rt.clone();
        let layers = blocking(move || rt.layers().list()).await?;
        Ok(layers.into_iter().map(|l| l.name.to_string()).collect())
    }
}

/// What `pushLayer` did.
#[napi(object)]
pub struct LayerPushed {
    /// The layer.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// The image's key in the bucket.
    pub key: String,
    /// Bytes sent (0: the bucket had the image).
    pub uploaded_bytes: f64,
    /// Parts of an interrupted upload that were reused.
    pub parts_reused: u32,
}

/// What `pullLayer` did.
#[napi(object)]
pub struct LayerPulled {
    /// The layer.
    pub name: String,
    /// Its image's digest.
    pub digest: String,
    /// Bytes downloaded (0: it was here).
    pub downloaded_bytes: f64,
}

/// What `syncLayers` did.
#[napi(object)]
pub struct LayersSynced {
    /// Layers uploaded.
    pub pushed: Vec<String>,
    /// Layers downloaded.
    pub pulled: Vec<String>,
}

/// One object's upload to the bucket.
#[napi(object)]
pub struct Upload {
    /// `layer` or `snapshot`.
    pub kind: String,
    /// The layer's name, or `<sandbox id>@<label>`.
    pub name: String,
    /// The image's digest.
    pub digest: String,
    /// `queued`, `pushing`, `pushed` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When a failed upload is tried again (RFC 3339; none: given up).
    pub next_attempt: Option<String>,
}

impl From<sqrx_core::remote::Upload> for Upload {
    fn from(u: sqrx_core::remote::Upload) -> Self {
        Upload {
            kind: u.kind.as_str().into(),
            name: u.name,
            digest: u.digest,
            state: u.state.as_str().into(),
            attempts: u.attempts,
            error: u.error,
            next_attempt: u.next_attempt.map(|t| t.to_rfc3339()),
        }
    }
}
