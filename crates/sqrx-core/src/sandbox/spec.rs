//! What a sandbox is made of and what an exec asks for.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SandboxError;

/// Validate a sandbox id: `^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`.
pub fn validate_id(id: &str) -> Result<(), SandboxError> {
    let bad = |reason| {
        Err(SandboxError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > 64 {
        return bad("must be 1-64 characters");
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !bytes
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    {
        return bad("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

fn default_layers() -> Vec<String> {
    vec![crate::layer::BASE_LAYER.to_string()]
}

fn default_upper_mb() -> u64 {
    512
}

/// A sandbox to create. Its `Debug` output shows environment names, never values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// `^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`, unique in the runtime.
    pub id: String,
    /// Layer names, base first (default `["000-base"]`).
    #[serde(default = "default_layers")]
    pub layers: Vec<String>,
    /// Who owns it (free text; used by multi-tenant fronts).
    #[serde(default)]
    pub owner: Option<String>,
    /// CPU bandwidth in cores (`0.5` = half a core); `None` = unlimited.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory limit in MiB; `None` = the runtime default.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Maximum number of tasks; `None` = the runtime default.
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Size of the writable upper layer in MiB (default 512).
    #[serde(default = "default_upper_mb")]
    pub upper_mb: u64,
    /// Seconds after which the reaper destroys it (0 = never).
    #[serde(default)]
    pub max_lifetime: u64,
    /// Environment added to every exec.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hostname inside (default: the id).
    #[serde(default)]
    pub hostname: Option<String>,
    /// What the sandbox is for (free text, shown back; the sq-sandbox `task` field).
    #[serde(default)]
    pub task: Option<String>,
    /// Hosts the sandbox may reach (the sq-sandbox `allow_net` field). Stored and reported
    /// now; enforced once network policies land.
    #[serde(default)]
    pub allow_net: Option<Vec<String>>,
    /// What the sandbox may reach over the network (default: loopback only). See
    /// [`crate::network::NetworkPolicy`] and docs/network.md.
    #[serde(default)]
    pub network: crate::network::NetworkPolicy,
    /// The sandbox's own secrets by name (besides the runtime's): it sees each as `$NAME`
    /// holding the placeholder; the egress proxy puts the value in requests to the secret's
    /// hosts. Values are write-only: kept in a 0600 file on the host, never in the state or
    /// in what is shown. Needs a network. See docs/secrets.md.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secrets::Secret>,
    /// Free key-value labels, stored and shown back (E2B's sandbox `metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Let setuid and setgid programs (`sudo`, `su`) raise privileges inside the sandbox: its
    /// root filesystem is mounted without `nosuid` and its processes run without
    /// `no_new_privs`. What they can gain is the sandbox's own root, which is an unprivileged
    /// host uid in its user namespace; refused with the `host-root` isolation. Default off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub setuid: bool,
    /// The port a front's proxy reaches when a request names the sandbox but no port (the
    /// server's `/proxy/{id}/...`). `None`: the front's own default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_port: Option<u16>,
}

/// Environment variable names, for `Debug` output that must not carry secrets.
struct EnvNames<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl std::fmt::Debug for SandboxSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxSpec")
            .field("id", &self.id)
            .field("layers", &self.layers)
            .field("owner", &self.owner)
            .field("cpu", &self.cpu)
            .field("memory_mb", &self.memory_mb)
            .field("pids_max", &self.pids_max)
            .field("upper_mb", &self.upper_mb)
            .field("max_lifetime", &self.max_lifetime)
            .field("env", &EnvNames(&self.env))
            .field("hostname", &self.hostname)
            .field("task", &self.task)
            .field("allow_net", &self.allow_net)
            .field("network", &self.network)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("metadata", &self.metadata)
            .field("setuid", &self.setuid)
            .field("default_port", &self.default_port)
            .finish()
    }
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecRequest")
            .field("command", &self.command)
            .field("env", &EnvNames(&self.env))
            .field("workdir", &self.workdir)
            .field("user", &self.user)
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("output_cap", &self.output_cap)
            .finish()
    }
}

impl SandboxSpec {
    /// A spec with defaults for everything but the id.
    pub fn new(id: impl Into<String>) -> Self {
        SandboxSpec {
            id: id.into(),
            layers: default_layers(),
            owner: None,
            cpu: None,
            memory_mb: None,
            pids_max: None,
            upper_mb: default_upper_mb(),
            max_lifetime: 0,
            env: BTreeMap::new(),
            hostname: None,
            task: None,
            allow_net: None,
            network: crate::network::NetworkPolicy::None,
            secrets: BTreeMap::new(),
            metadata: BTreeMap::new(),
            setuid: false,
            default_port: None,
        }
    }

    /// Check every field before any side effect.
    pub fn validate(&self) -> Result<(), SandboxError> {
        validate_id(&self.id)?;
        let invalid = |field, reason: String| Err(SandboxError::Invalid { field, reason });
        if self.layers.is_empty() {
            return invalid("layers", "at least one layer is needed".into());
        }
        for l in &self.layers {
            crate::layer::LayerName::new(l.as_str())?;
        }
        if let Some(cpu) = self.cpu
            && (!cpu.is_finite() || cpu <= 0.0 || cpu > 1024.0)
        {
            return invalid("cpu", format!("{cpu} cores is out of range (0-1024]"));
        }
        if self.memory_mb == Some(0) || self.memory_mb.is_some_and(|m| m > 1 << 24) {
            return invalid("memory_mb", "must be between 1 and 16777216".into());
        }
        if self.pids_max == Some(0) {
            return invalid("pids_max", "must be at least 1".into());
        }
        if self.default_port == Some(0) {
            return invalid("default_port", "must be between 1 and 65535".into());
        }
        if self.upper_mb == 0 || self.upper_mb > 1 << 20 {
            return invalid("upper_mb", "must be between 1 and 1048576".into());
        }
        if let Some(h) = &self.hostname
            && (h.is_empty()
                || h.len() > 63
                || !h
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'))
        {
            return invalid("hostname", format!("{h:?} is not a valid hostname"));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return invalid("env", format!("bad variable name {k:?}"));
            }
        }
        crate::secrets::validate_all(&self.secrets)?;
        if !self.secrets.is_empty() && !self.network.has_network() {
            return invalid(
                "secrets",
                "secrets go out through the network: give the sandbox a network policy that \
                 allows their hosts"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// Program and arguments, no shell.
    Argv(Vec<String>),
    /// A shell command line, run with `/bin/sh -c`.
    Shell(String),
}

impl Command {
    pub(crate) fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }

    /// The command as one line, for logs.
    pub fn display(&self) -> String {
        match self {
            Command::Argv(v) => v.join(" "),
            Command::Shell(s) => s.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Command::Argv(v) => v.first().is_none_or(|p| p.is_empty()),
            Command::Shell(s) => s.trim().is_empty(),
        }
    }
}

impl From<&str> for Command {
    fn from(s: &str) -> Self {
        Command::Shell(s.to_string())
    }
}

/// Default cap on each output stream.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;

/// A process to run in a sandbox. Its `Debug` output shows environment names, never values,
/// and the size of stdin, never its bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// What to run.
    pub command: Command,
    /// Variables added to the sandbox's clean default environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the home directory of `user`, or `/` for root).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run as this user of the sandbox's `/etc/passwd`, by name or numeric uid (default: the
    /// sandbox's root). The process gets the user's groups, `HOME`, `USER` and `LOGNAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Bytes written to the process's stdin (then closed); `None` = `/dev/null`.
    #[serde(default)]
    pub stdin: Option<Vec<u8>>,
    /// Kill the whole process tree of this exec after this long.
    #[serde(default, with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Bytes kept per stream (default 1 MiB); the rest is drained and dropped.
    #[serde(default)]
    pub output_cap: Option<u64>,
}

impl ExecRequest {
    /// A request for `command` with defaults.
    pub fn new(command: impl Into<Command>) -> Self {
        ExecRequest {
            command: command.into(),
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            stdin: None,
            timeout: None,
            output_cap: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        if self.command.is_empty() {
            return Err(SandboxError::Invalid {
                field: "command",
                reason: "empty command".into(),
            });
        }
        if let Some(w) = &self.workdir
            && !w.starts_with('/')
        {
            return Err(SandboxError::Invalid {
                field: "workdir",
                reason: format!("{w:?} is not absolute"),
            });
        }
        if let Some(u) = &self.user
            && (u.is_empty() || u.len() > 64 || u.contains([':', '/', '\0', '\n']))
        {
            return Err(SandboxError::Invalid {
                field: "user",
                reason: format!("{u:?} is not a user name or uid"),
            });
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(SandboxError::Invalid {
                    field: "env",
                    reason: format!("bad variable name {k:?}"),
                });
            }
        }
        Ok(())
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<f64> = Option::deserialize(d)?;
        match v {
            Some(secs) if secs.is_finite() && secs >= 0.0 => {
                Ok(Some(Duration::from_secs_f64(secs)))
            }
            Some(secs) => Err(serde::de::Error::custom(format!("bad timeout {secs}"))),
            None => Ok(None),
        }
    }
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The exec's sequence number in the sandbox's history (from 1; see
    /// [`Sandbox::logs`](super::Sandbox::logs)).
    #[serde(default)]
    pub seq: u64,
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Captured stdout (at most the output cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the output cap).
    pub stderr: Vec<u8>,
    /// Output passed the cap and was cut.
    pub truncated: bool,
    /// The timeout fired and the exec's process tree was killed.
    pub timed_out: bool,
    /// The kernel's OOM killer killed it (the sandbox memory limit was hit).
    pub oom_killed: bool,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it finished.
    pub finished: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

impl ExecResult {
    /// stdout as text (lossy UTF-8).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy UTF-8).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl super::Sandbox {
    /// The spec the sandbox was created with.
    pub fn spec(&self) -> &SandboxSpec {
        &self.state.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_env_values() {
        let mut spec = SandboxSpec::new("x");
        spec.env.insert("API_KEY".into(), "sk-live-secret".into());
        let mut req = ExecRequest::new("true");
        req.env.insert("TOKEN".into(), "tok-secret".into());
        req.stdin = Some(b"stdin-secret".to_vec());
        let shown = format!("{spec:?} {req:?}");
        assert!(
            shown.contains("API_KEY") && shown.contains("TOKEN"),
            "{shown}"
        );
        for secret in ["sk-live-secret", "tok-secret", "stdin-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn ids() {
        for ok in ["a", "box-1", "A_b-9", &"x".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a b", "a/b", "ü", &"x".repeat(65), "a.b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn specs() {
        let mut s = SandboxSpec::new("ok");
        s.validate().expect("defaults are valid");
        s.cpu = Some(0.0);
        assert!(s.validate().is_err());
        s.cpu = Some(0.5);
        s.layers = vec!["base".into()];
        assert!(s.validate().is_err());
        let parsed: SandboxSpec =
            serde_json::from_str(r#"{"id":"x","memory_mb":64}"#).expect("json");
        assert_eq!(parsed.layers, vec!["000-base"]);
        assert_eq!(parsed.upper_mb, 512);
    }

    #[test]
    fn exec_requests() {
        assert!(ExecRequest::new("  ").validate().is_err());
        assert!(ExecRequest::new(Command::Argv(vec![])).validate().is_err());
        let mut r = ExecRequest::new("true");
        r.workdir = Some("relative".into());
        assert!(r.validate().is_err());
        let parsed: ExecRequest =
            serde_json::from_str(r#"{"command":["ls","-l"],"timeout":1.5}"#).expect("json");
        assert_eq!(
            parsed.command,
            Command::Argv(vec!["ls".into(), "-l".into()])
        );
        assert_eq!(parsed.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            Command::Shell("echo hi".into()).argv(),
            ["/bin/sh", "-c", "echo hi"]
        );
    }
}
