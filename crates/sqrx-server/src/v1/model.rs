//! The JSON shapes of the native API: what requests carry and what responses hold. Each is a
//! translation of a core type, so the wire format is defined (and documented in OpenAPI) here.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sqrx_core::network::NetworkPolicy;

use crate::config::Limits;
use crate::error::ApiError;

// Only a description of the wire form, for the OpenAPI document (as `NetworkPolicy`): the
// core's `NetworkPolicy` reads and writes it.
/// What a sandbox may reach over the network: `"none"`, `"all"`, or
/// `{"allow": [...], "deny": [...]}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = NetworkPolicy)]
#[serde(untagged)]
pub enum NetworkPolicyJson {
    /// `"none"`: loopback only (no interface but `lo`); `"all"`: every destination but the
    /// host, other sandboxes, link-local and metadata addresses.
    Word(NetworkWord),
    /// Only what `allow` names and `deny` does not (deny wins); ICMP refused.
    List(NetworkLists),
}

/// `"none"` or `"all"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkWord {
    /// Loopback only.
    None,
    /// Every destination but the ones refused to every sandbox.
    All,
}

/// The list form of a policy. Rules: `HOST`, `*.DOMAIN`, an IPv4 `CIDR` or address, each
/// with an optional `:PORT` (e.g. `pypi.org`, `*.pythonhosted.org:443`, `10.1.0.0/16`).
/// Rules naming hosts or domains are refused until the sandbox DNS resolver is available.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NetworkLists {
    /// Destinations that may be reached.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Destinations refused even when `allow` names them.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// Live sandboxes.
    pub sandboxes: usize,
    /// Layers in the store.
    pub layers: usize,
}

/// A layer in the store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayerView {
    /// `NNN-name`, e.g. `000-base`.
    pub name: String,
    /// `sha256:<hex>` of the image.
    pub digest: String,
    /// Image size in bytes.
    pub size: u64,
    /// When it was stored.
    pub created: DateTime<Utc>,
    /// `zstd`, `gzip`, `xz` or `lz4`.
    pub compression: String,
    /// How it was made (`{"type": "tar", "source": ...}`, ...).
    #[schema(value_type = Object)]
    pub provenance: serde_json::Value,
    /// Paths whose extended attributes were dropped when it was built.
    pub xattrs_dropped: u64,
}

impl From<sqrx_core::Layer> for LayerView {
    fn from(l: sqrx_core::Layer) -> Self {
        LayerView {
            name: l.name.to_string(),
            digest: l.digest,
            size: l.size,
            created: l.created,
            compression: l.compression.as_str().to_string(),
            provenance: serde_json::to_value(&l.provenance).unwrap_or(serde_json::Value::Null),
            xattrs_dropped: l.xattrs_dropped,
        }
    }
}

/// A sandbox to create (`POST /v1/sandboxes`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// `^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`, unique.
    pub id: String,
    /// Layer names, base first (default `["000-base"]`).
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// Owner (free text).
    #[serde(default)]
    pub owner: Option<String>,
    /// What it is for (free text).
    #[serde(default)]
    pub task: Option<String>,
    /// CPU limit in cores (`0.5` = half a core); absent = the server's default
    /// (`limits.default_cpu`, 2 unless set).
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory limit, MiB; absent = the server's default (`limits.default_memory_mb`, 1024
    /// unless set).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Task (process/thread) limit; absent = the server's default
    /// (`limits.default_pids_max`, 1024 unless set).
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Size of the writable layer, MiB (default: the server's upper limit, 512 unless set; at
    /// most `limits.max_upper_mb`, 16384 unless set).
    #[serde(default)]
    pub upper_mb: Option<u64>,
    /// Seconds after which the sandbox is destroyed (0 = never).
    #[serde(default)]
    pub max_lifetime: u64,
    /// Environment for every exec.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hostname inside (default: the id).
    #[serde(default)]
    pub hostname: Option<String>,
    /// sq-sandbox's list of hosts, stored and reported back only: on `/v1` what a sandbox
    /// may reach is `network`.
    #[serde(default)]
    pub allow_net: Option<Vec<String>>,
    /// What it may reach over the network (default: the server's `--net-default`, `none`
    /// unless set). Changed live with `PUT /v1/sandboxes/{id}/network`.
    #[serde(default)]
    #[schema(value_type = Option<NetworkPolicyJson>)]
    pub network: Option<NetworkPolicy>,
    /// The sandbox's own secrets by name, in sq-sandbox's `secrets.json` shape: it sees
    /// `$NAME` = the placeholder; the egress proxy puts the value in requests to
    /// `allowed_hosts` only. Values are write-only. Needs a network. See docs/secrets.md.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretBody>,
    /// Let setuid programs (`sudo`) raise privileges inside, to the sandbox's own root (an
    /// unprivileged host uid). Default false; refused with the `host-root` isolation.
    #[serde(default)]
    pub setuid: bool,
    /// The port `/proxy/{id}/...` reaches when the path names none (default: the server's
    /// `--proxy-default-port`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535)]
    pub default_port: Option<u16>,
}

/// A secret to set (`value` is write-only: no answer holds it).
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The real value.
    pub value: String,
    /// Hosts it may go to: `api.example.com`, or `*.example.com`.
    pub allowed_hosts: Vec<String>,
    /// What the sandbox sees (default: kept, or a new `sqrx-secret-…`).
    #[serde(default)]
    pub placeholder: Option<String>,
    /// Also substitute in plain HTTP (default: HTTPS only).
    #[serde(default)]
    pub allow_http: bool,
    /// Also substitute in the URL (default: headers only).
    #[serde(default)]
    pub allow_query: bool,
    /// Also substitute in the body (default: headers only).
    #[serde(default)]
    pub allow_body: bool,
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBody")
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}

impl From<SecretBody> for sqrx_core::Secret {
    fn from(b: SecretBody) -> Self {
        sqrx_core::Secret {
            placeholder: b.placeholder,
            value: b.value,
            allowed_hosts: b.allowed_hosts,
            allow_http: b.allow_http,
            allow_query: b.allow_query,
            allow_body: b.allow_body,
        }
    }
}

/// A secret as shown: everything but its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    /// Its name (the environment variable inside).
    pub name: String,
    /// What the sandbox sees.
    pub placeholder: String,
    /// Where the value may go.
    pub allowed_hosts: Vec<String>,
    /// Substituted in plain HTTP too.
    pub allow_http: bool,
    /// Substituted in the URL too.
    pub allow_query: bool,
    /// Substituted in the body too.
    pub allow_body: bool,
    /// `runtime` (`<data>/secrets.json`) or `sandbox` (its own).
    pub source: String,
}

impl From<sqrx_core::SecretInfo> for SecretView {
    fn from(s: sqrx_core::SecretInfo) -> Self {
        SecretView {
            name: s.name,
            placeholder: s.placeholder,
            allowed_hosts: s.allowed_hosts,
            allow_http: s.allow_http,
            allow_query: s.allow_query,
            allow_body: s.allow_body,
            source: s.source.to_string(),
        }
    }
}

impl CreateSandbox {
    /// The core spec: `default_upper_mb` where the request sets no upper size, and the
    /// server's default limits (`limits`) where it sets no CPU, memory or task limit. An upper
    /// size over `limits.max_upper_mb` is refused (400), not clamped.
    pub fn into_spec(
        self,
        default_upper_mb: u64,
        limits: &Limits,
        default_network: &NetworkPolicy,
    ) -> Result<sqrx_core::SandboxSpec, ApiError> {
        let upper_mb = self.upper_mb.unwrap_or(default_upper_mb);
        if upper_mb > limits.max_upper_mb {
            return Err(ApiError::bad_request(format!(
                "upper_mb {upper_mb} is over the server's maximum of {} MiB (limits.max_upper_mb)",
                limits.max_upper_mb
            )));
        }
        let mut spec = sqrx_core::SandboxSpec::new(self.id);
        if let Some(layers) = self.layers {
            spec.layers = layers;
        }
        spec.owner = self.owner;
        spec.task = self.task;
        spec.cpu = Some(self.cpu.unwrap_or(limits.default_cpu));
        spec.memory_mb = Some(self.memory_mb.unwrap_or(limits.default_memory_mb));
        spec.pids_max = Some(self.pids_max.unwrap_or(limits.default_pids_max));
        spec.upper_mb = upper_mb;
        spec.max_lifetime = self.max_lifetime;
        spec.env = self.env;
        spec.hostname = self.hostname;
        spec.allow_net = self.allow_net;
        spec.setuid = self.setuid;
        spec.default_port = self.default_port;
        spec.network = self.network.unwrap_or_else(|| default_network.clone());
        spec.secrets = self
            .secrets
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        Ok(spec)
    }
}

/// A sandbox as the native API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxView {
    /// The id.
    pub id: String,
    /// `running` or `paused`.
    pub status: String,
    /// Layer names, base first.
    pub layers: Vec<String>,
    /// Owner.
    pub owner: Option<String>,
    /// What it is for.
    pub task: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it will be destroyed, if it has a lifetime.
    pub expires: Option<DateTime<Utc>>,
    /// Host pid of its init.
    pub init_pid: i32,
    /// CPU limit in cores.
    pub cpu: Option<f64>,
    /// Memory limit, MiB.
    pub memory_mb: Option<u64>,
    /// Task limit.
    pub pids_max: Option<u64>,
    /// Size of the writable layer, MiB.
    pub upper_mb: u64,
    /// Bytes used in the writable layer.
    pub upper_bytes: u64,
    /// The snapshot it was last restored to.
    pub active_snapshot: Option<String>,
    /// Lifetime in seconds (0 = none).
    pub max_lifetime: u64,
    /// Environment of every exec.
    pub env: BTreeMap<String, String>,
    /// sq-sandbox's list of hosts it was created with (what it may reach is `network`).
    pub allow_net: Option<Vec<String>>,
    /// What it may reach over the network, in effect now.
    #[schema(value_type = NetworkPolicyJson)]
    pub network: NetworkPolicy,
    /// Its IPv4 address on `eth0` inside, when it has a link (a policy other than `none`
    /// since it was created, or set since).
    pub address: Option<String>,
    /// Its gateway (the host side of its link), when it has a link.
    pub gateway: Option<String>,
    /// Its secrets (names, placeholders and hosts; never values).
    #[serde(default)]
    pub secrets: Vec<SecretView>,
    /// Whether setuid programs may raise privileges inside.
    #[serde(default)]
    pub setuid: bool,
    /// The port `/proxy/{id}/...` reaches when the path names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_port: Option<u16>,
}

impl SandboxView {
    /// The view of `sandbox`.
    pub fn of(sandbox: &sqrx_core::Sandbox) -> Self {
        let info = sandbox.info();
        let spec = sandbox.spec();
        let link = sandbox.network_info();
        SandboxView {
            id: info.id,
            status: info.status.to_string(),
            layers: info.layers,
            owner: info.owner,
            task: spec.task.clone(),
            created: info.created,
            expires: info.expires,
            init_pid: info.init_pid,
            cpu: info.cpu,
            memory_mb: info.memory_mb,
            pids_max: info.pids_max,
            upper_mb: info.upper_mb,
            upper_bytes: info.upper_bytes,
            active_snapshot: info.active_snapshot,
            max_lifetime: spec.max_lifetime,
            env: spec.env.clone(),
            allow_net: spec.allow_net.clone(),
            network: sandbox.network_policy().clone(),
            address: link.as_ref().map(|l| l.address.to_string()),
            gateway: link.as_ref().map(|l| l.gateway.to_string()),
            secrets: sandbox
                .secrets()
                .into_iter()
                .map(SecretView::from)
                .collect(),
            setuid: spec.setuid,
            default_port: spec.default_port,
        }
    }
}

/// A command: a string runs with `/bin/sh -c`, an array is the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CommandBody {
    /// A shell command line.
    Shell(String),
    /// Program and arguments, no shell.
    Argv(Vec<String>),
}

impl From<CommandBody> for sqrx_core::Command {
    fn from(c: CommandBody) -> Self {
        match c {
            CommandBody::Shell(s) => sqrx_core::Command::Shell(s),
            CommandBody::Argv(v) => sqrx_core::Command::Argv(v),
        }
    }
}

/// A process to run (`POST /v1/sandboxes/{id}/exec`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// What to run.
    pub command: CommandBody,
    /// Variables added to the sandbox's clean environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute; default: the user's home, `/` for root).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run as this user of the sandbox's `/etc/passwd` (a name or a uid; default its root).
    #[serde(default)]
    pub user: Option<String>,
    /// Text written to the process's stdin (then closed); absent = `/dev/null`.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Kill the exec's whole process tree after this many seconds (default: the server's exec
    /// timeout, 300 unless set).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Bytes kept per output stream (default 1 MiB; at most the server's
    /// `limits.max_output_cap`, 16 MiB unless set); the rest is dropped and `truncated` set.
    #[serde(default)]
    pub output_cap: Option<u64>,
}

/// Check an exec's `output_cap` against the server's maximum (400 past it, never clamped).
pub fn output_cap(cap: Option<u64>, limits: &Limits) -> Result<Option<u64>, ApiError> {
    match cap {
        Some(c) if c > limits.max_output_cap => Err(ApiError::bad_request(format!(
            "output_cap {c} is over the server's maximum of {} bytes (limits.max_output_cap)",
            limits.max_output_cap
        ))),
        c => Ok(c),
    }
}

/// Seconds from a client, checked.
pub fn seconds(field: &str, secs: f64) -> Result<Duration, ApiError> {
    if secs.is_finite() && secs > 0.0 && secs <= 7.0 * 24.0 * 3600.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {field}: {secs} is not a number of seconds in (0, 604800]"
        )))
    }
}

impl ExecBody {
    /// The core request; `default_timeout` applies when the body sets none, and `limits`
    /// bound its output cap.
    pub fn into_request(
        self,
        default_timeout: Duration,
        limits: &Limits,
    ) -> Result<sqrx_core::ExecRequest, ApiError> {
        let mut req = sqrx_core::ExecRequest::new(sqrx_core::Command::from(self.command));
        req.env = self.env;
        req.workdir = self.workdir;
        req.user = self.user;
        req.stdin = self.stdin.map(String::into_bytes);
        req.timeout = Some(match self.timeout {
            Some(t) => seconds("timeout", t)?,
            None => default_timeout,
        });
        req.output_cap = output_cap(self.output_cap, limits)?;
        Ok(req)
    }
}

/// How an exec ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecOutput {
    /// Its number in the sandbox's history.
    pub seq: u64,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// stdout (UTF-8; invalid sequences replaced).
    pub stdout: String,
    /// stderr (UTF-8; invalid sequences replaced).
    pub stderr: String,
    /// Output passed the cap and was cut.
    pub truncated: bool,
    /// The timeout fired and the exec's process tree was killed.
    pub timed_out: bool,
    /// The sandbox's memory limit was hit and the OOM killer struck.
    pub oom_killed: bool,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// Wall time, ms.
    pub duration_ms: u64,
}

impl From<sqrx_core::ExecResult> for ExecOutput {
    fn from(r: sqrx_core::ExecResult) -> Self {
        ExecOutput {
            seq: r.seq,
            exit_code: r.exit_code,
            signal: r.signal,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
            truncated: r.truncated,
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            started: r.started,
            finished: r.finished,
            duration_ms: r.duration_ms,
        }
    }
}

/// One exec in a sandbox's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEntryView {
    /// Sequence number.
    pub seq: u64,
    /// The command as one line.
    pub command: String,
    /// Working directory.
    pub workdir: Option<String>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Killing signal.
    pub signal: Option<i32>,
    /// Timed out.
    pub timed_out: bool,
    /// OOM-killed.
    pub oom_killed: bool,
    /// Output was cut at the cap.
    pub truncated: bool,
    /// Start.
    pub started: DateTime<Utc>,
    /// End.
    pub finished: DateTime<Utc>,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// The start of stdout (at most 16 KiB).
    pub stdout: String,
    /// The start of stderr (at most 16 KiB).
    pub stderr: String,
}

impl From<sqrx_core::sandbox::ExecLogEntry> for LogEntryView {
    fn from(e: sqrx_core::sandbox::ExecLogEntry) -> Self {
        LogEntryView {
            seq: e.seq,
            command: e.command,
            workdir: e.workdir,
            exit_code: e.exit_code,
            signal: e.signal,
            timed_out: e.timed_out,
            oom_killed: e.oom_killed,
            truncated: e.truncated,
            started: e.started,
            finished: e.finished,
            duration_ms: e.duration_ms,
            stdout: e.stdout,
            stderr: e.stderr,
        }
    }
}

/// An entry of a sandbox's filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// Name.
    pub name: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub kind: String,
    /// Size, bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<Utc>,
}

impl From<sqrx_core::sandbox::FileInfo> for FileView {
    fn from(f: sqrx_core::sandbox::FileInfo) -> Self {
        FileView {
            name: f.name,
            path: f.path,
            kind: f.kind.to_string(),
            size: f.size,
            mode: f.mode,
            mtime: f.mtime,
        }
    }
}
