//! `sqrx.Runtime`: the entry point, one per data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sqrx_core::SandboxSpec;

use crate::bridge::off_thread;
use crate::error::{InvalidArgument, to_py};
use crate::sandbox::Sandbox;

/// How often the runtime's reaper destroys sandboxes past their `timeout`.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// The `sqrx-init` shipped in this package, next to the extension module. `None` when
/// `SQRX_INIT` is set, so the core's own search (which reads it) decides.
fn packaged_init(py: Python<'_>) -> PyResult<Option<PathBuf>> {
    if std::env::var_os("SQRX_INIT").is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let module: PathBuf = py.import("sqrx._sqrx")?.getattr("__file__")?.extract()?;
    Ok(module
        .parent()
        .map(|dir| dir.join("sqrx-init"))
        .filter(|p| p.is_file()))
}

/// Seconds as the core's whole seconds; a fraction counts as a full second.
fn lifetime_secs(timeout: Option<f64>) -> PyResult<u64> {
    match timeout {
        None => Ok(0),
        Some(t) if t.is_finite() && t > 0.0 && t < u64::MAX as f64 => Ok(t.ceil() as u64),
        Some(t) => Err(InvalidArgument::new_err(format!(
            "invalid timeout: {t} is not a positive number of seconds"
        ))),
    }
}

/// Opens the data directory that holds layers and sandboxes. Sandboxes outlive the
/// `Runtime` object (and the process); a new `Runtime` on the same directory finds them.
#[pyclass(module = "sqrx", frozen)]
pub struct Runtime {
    rt: sqrx_core::Runtime,
}

#[pymethods]
impl Runtime {
    /// Open `data_dir` (default as the `sqrx` CLI: `$SQRX_DATA`, else `/var/lib/sqrx` for
    /// root, else `~/.local/share/sqrx`). `init_path` overrides the packaged `sqrx-init`
    /// (as does `$SQRX_INIT`); `max_sandboxes` bounds the sandboxes alive at once.
    /// `net_pool` (an IPv4 CIDR, default `100.64.0.0/10`), `net_uplink` (an interface) and
    /// `net_netns` (a network namespace path, e.g. `/run/netns/sandboxes`) say how sandboxes
    /// with a network are connected, as `sqrx serve --net-pool/--net-uplink/--net-netns`.
    /// `proxy_https` (default `True`) lets the egress proxy read HTTPS to the hosts secrets
    /// are bound to, and `egress_ca` lists PEM files of CAs it trusts for those hosts besides
    /// the system's, as `sqrx serve --proxy-https/--egress-ca`.
    #[new]
    #[pyo3(signature = (data_dir=None, *, init_path=None, max_sandboxes=100, net_pool=None, net_uplink=None, net_netns=None, proxy_https=true, egress_ca=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn new(
        py: Python<'_>,
        data_dir: Option<PathBuf>,
        init_path: Option<PathBuf>,
        max_sandboxes: usize,
        net_pool: Option<String>,
        net_uplink: Option<String>,
        net_netns: Option<PathBuf>,
        proxy_https: bool,
        egress_ca: Option<Vec<PathBuf>>,
    ) -> PyResult<Self> {
        let mut config = sqrx_core::RuntimeConfig::new(
            data_dir.unwrap_or_else(sqrx_core::paths::default_data_dir),
        );
        config.init_path = match init_path {
            Some(p) => Some(p),
            None => packaged_init(py)?,
        };
        config.max_sandboxes = max_sandboxes;
        if let Some(pool) = net_pool {
            config.network.pool = pool;
        }
        config.network.uplink = net_uplink;
        config.network.netns = net_netns;
        config.network.intercept_https = proxy_https;
        config.network.upstream_ca = egress_ca.unwrap_or_default();
        // The layer store's bucket, as the CLI and the server read it (docs/s3.md).
        config.remote =
            sqrx_core::remote::RemoteConfig::from_env(&|k| std::env::var(k).ok()).map_err(to_py)?;
        let rt = py
            .detach(|| sqrx_core::Runtime::open(config))
            .map_err(to_py)?;
        rt.start_reaper(REAP_INTERVAL);
        // New layers and snapshots go up to the bucket in the background (docs/s3.md).
        rt.start_pusher().map_err(to_py)?;
        Ok(Runtime { rt })
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.rt.data_dir().to_path_buf()
    }

    /// Create and start a sandbox. `layers` are layer names, base first (default
    /// `["000-base"]`, built from the host's programs on first use); `memory_mb`, `cpu`
    /// (cores) and `pids_max` limit it; `timeout` (seconds) is its lifetime, after which the
    /// runtime destroys it; `upper_mb` sizes its writable layer; `env` is added to every exec.
    /// `network` is what it may reach: `"none"` (loopback only, the default), `"all"`, a
    /// list of rules (`HOST`, `*.DOMAIN`, `CIDR`, each with an optional `:PORT`) it may reach,
    /// or `{"allow": [...], "deny": [...]}`. `secrets` (needs a network) maps names to
    /// `{"value": ..., "allowed_hosts": [...]}` (optionally `placeholder`, `allow_http`,
    /// `allow_query`, `allow_body`): the sandbox sees `$NAME` holding a placeholder, and the
    /// egress proxy puts the value in requests to those hosts only. `setuid=True` lets setuid
    /// programs (`sudo`) raise privileges inside, to the sandbox's own root.
    #[pyo3(signature = (id, layers=None, memory_mb=None, timeout=None, *, cpu=None, pids_max=None, upper_mb=512, env=None, hostname=None, owner=None, network=None, secrets=None, setuid=false))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn create(
        &self,
        py: Python<'_>,
        id: String,
        layers: Option<Vec<String>>,
        memory_mb: Option<u64>,
        timeout: Option<f64>,
        cpu: Option<f64>,
        pids_max: Option<u64>,
        upper_mb: u64,
        env: Option<BTreeMap<String, String>>,
        hostname: Option<String>,
        owner: Option<String>,
        network: Option<&Bound<'_, PyAny>>,
        secrets: Option<&Bound<'_, PyAny>>,
        setuid: bool,
    ) -> PyResult<Sandbox> {
        let mut spec = spec(
            id, layers, memory_mb, timeout, cpu, pids_max, upper_mb, env, hostname, owner, network,
            secrets,
        )?;
        spec.setuid = setuid;
        let sb = py.detach(|| self.rt.create(spec)).map_err(to_py)?;
        Ok(Sandbox::new(sb))
    }

    /// `create` for asyncio: returns an awaitable of the `Sandbox`.
    #[pyo3(signature = (id, layers=None, memory_mb=None, timeout=None, *, cpu=None, pids_max=None, upper_mb=512, env=None, hostname=None, owner=None, network=None, secrets=None, setuid=false))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn create_async<'py>(
        &self,
        py: Python<'py>,
        id: String,
        layers: Option<Vec<String>>,
        memory_mb: Option<u64>,
        timeout: Option<f64>,
        cpu: Option<f64>,
        pids_max: Option<u64>,
        upper_mb: u64,
        env: Option<BTreeMap<String, String>>,
        hostname: Option<String>,
        owner: Option<String>,
        network: Option<&Bound<'py, PyAny>>,
        secrets: Option<&Bound<'py, PyAny>>,
        setuid: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut spec = spec(
            id, layers, memory_mb, timeout, cpu, pids_max, upper_mb, env, hostname, owner, network,
            secrets,
        )?;
        spec.setuid = setuid;
        let rt = self.rt.clone();
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let sb = off_thread(move || rt.create(spec)).await?.map_err(to_py)?;
            Ok(Sandbox::new(sb))
        })
    }

    /// The sandbox `id`; raises `NotFound` when there is none.
    fn get(&self, py: Python<'_>, id: &str) -> PyResult<Sandbox> {
        let sb = py.detach(|| self.rt.get(id)).map_err(to_py)?;
        Ok(Sandbox::new(sb))
    }

    /// `get` for asyncio.
    fn get_async<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let rt = self.rt.clone();
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let sb = off_thread(move || rt.get(&id)).await?.map_err(to_py)?;
            Ok(Sandbox::new(sb))
        })
    }

    /// A new sandbox `new_id` with a copy of the sandbox `src`'s filesystem (its layers and
    /// its current changes) and the same limits.
    fn clone_sandbox(&self, py: Python<'_>, src: &str, new_id: &str) -> PyResult<Sandbox> {
        let sb = py
            .detach(|| self.rt.clone_sandbox(src, new_id))
            .map_err(to_py)?;
        Ok(Sandbox::new(sb))
    }

    /// Every live sandbox in the data directory, by id.
    fn list(&self, py: Python<'_>) -> Vec<Sandbox> {
        py.detach(|| self.rt.list())
            .into_iter()
            .map(Sandbox::new)
            .collect()
    }

    /// The runtime's secrets (from `<data_dir>/secrets.json`): dicts with `name`,
    /// `placeholder`, `allowed_hosts`, ... and never a value.
    fn secrets(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let secrets = py.detach(|| self.rt.secrets());
        crate::secrets::to_py(py, &secrets)
    }

    /// Read `<data_dir>/secrets.json` again (new values take effect for the next request);
    /// returns how many secrets it holds. A bad file raises `InvalidArgument` and changes
    /// nothing.
    fn reload_secrets(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.rt.reload_secrets()).map_err(to_py)
    }

    /// The names of the layers in the data directory's store.
    fn layers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let layers = py.detach(|| self.rt.layers().list()).map_err(to_py)?;
        Ok(layers.into_iter().map(|l| l.name.to_string()).collect())
    }

    /// Upload layer `name` to the bucket (`SQRX_S3_BUCKET`, `SQRX_S3_ENDPOINT`, ...; AWS
    /// credentials): its image once per digest, resuming an interrupted upload. Returns
    /// `{"name", "digest", "key", "uploaded_bytes", "parts_reused"}`.
    fn push_layer(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyDict>> {
        let name = sqrx_core::LayerName::new(name).map_err(to_py)?;
        let r = py
            .detach(|| {
                let remote = self.rt.bucket()?;
                remote.push(self.rt.layers(), &name, None)
            })
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("name", r.name)?;
        d.set_item("digest", r.digest)?;
        d.set_item("key", r.key)?;
        d.set_item("uploaded_bytes", r.uploaded_bytes)?;
        d.set_item("parts_reused", r.parts_reused)?;
        Ok(d.unbind())
    }

    /// Download layer `name` from the bucket, verified against its digest (`force` replaces a
    /// local layer of that name that is another image). Returns `{"name", "digest",
    /// "downloaded_bytes"}`.
    #[pyo3(signature = (name, *, force=false))]
    fn pull_layer(&self, py: Python<'_>, name: &str, force: bool) -> PyResult<Py<PyDict>> {
        let name = sqrx_core::LayerName::new(name).map_err(to_py)?;
        let r = py
            .detach(|| {
                let remote = self.rt.bucket()?;
                remote.pull(self.rt.layers(), &name, force, None)
            })
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("name", r.name)?;
        d.set_item("digest", r.digest)?;
        d.set_item("downloaded_bytes", r.downloaded_bytes)?;
        Ok(d.unbind())
    }

    /// Push the layers the bucket lacks and pull the ones this store lacks. Returns
    /// `{"pushed": [...], "pulled": [...]}`.
    fn sync_layers(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let r = py
            .detach(|| self.rt.bucket()?.sync(self.rt.layers()))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("pushed", r.pushed)?;
        d.set_item("pulled", r.pulled)?;
        Ok(d.unbind())
    }

    /// Where each layer and snapshot stands in its way to the bucket: a list of `{"kind",
    /// "name", "digest", "state", "attempts", "error", "next_attempt"}` (`state`: `queued`,
    /// `pushing`, `pushed` or `failed`; failed uploads are retried with backoff).
    fn uploads(&self, py: Python<'_>) -> PyResult<Vec<Py<PyDict>>> {
        let list = py.detach(|| self.rt.uploads().list()).map_err(to_py)?;
        list.into_iter()
            .map(|u| {
                let d = PyDict::new(py);
                let value = serde_json::to_value(&u)
                    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
                for key in [
                    "kind",
                    "name",
                    "digest",
                    "state",
                    "error",
                    "updated",
                    "next_attempt",
                ] {
                    d.set_item(key, value.get(key).and_then(|v| v.as_str()))?;
                }
                d.set_item("attempts", u.attempts)?;
                Ok(d.unbind())
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("Runtime(data_dir={:?})", self.rt.data_dir())
    }
}

#[allow(clippy::too_many_arguments, reason = "the fields of SandboxSpec")]
fn spec(
    id: String,
    layers: Option<Vec<String>>,
    memory_mb: Option<u64>,
    timeout: Option<f64>,
    cpu: Option<f64>,
    pids_max: Option<u64>,
    upper_mb: u64,
    env: Option<BTreeMap<String, String>>,
    hostname: Option<String>,
    owner: Option<String>,
    network: Option<&Bound<'_, PyAny>>,
    secrets: Option<&Bound<'_, PyAny>>,
) -> PyResult<SandboxSpec> {
    let mut spec = SandboxSpec::new(id);
    if let Some(layers) = layers {
        spec.layers = layers;
    }
    spec.memory_mb = memory_mb;
    spec.max_lifetime = lifetime_secs(timeout)?;
    spec.cpu = cpu;
    spec.pids_max = pids_max;
    spec.upper_mb = upper_mb;
    spec.env = env.unwrap_or_default();
    spec.hostname = hostname;
    spec.owner = owner;
    if let Some(network) = network {
        spec.network = crate::network::policy(network)?;
    }
    if let Some(secrets) = secrets {
        spec.secrets = crate::secrets::from_py(secrets)?;
    }
    Ok(spec)
}
