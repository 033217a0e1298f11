//! The sq-sandbox wire shapes, and a lenient reader for its request bodies (the original read
//! them with `jq -r`, so numbers may come as strings and strings as numbers).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqrx_core::network::NetworkPolicy;
use utoipa::ToSchema;

use crate::error::ApiError;

/// `GET /cgi-bin/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiHealth {
    /// Always `ok`.
    pub status: String,
    /// Always `chroot` (what sq-sandbox clients expect; sqrx uses namespaces).
    pub backend: String,
    /// Live sandboxes.
    pub sandboxes: usize,
    /// Layers ("modules") in the store.
    pub modules: usize,
    /// The default base layer exists.
    pub base_ready: bool,
}

/// A snapshot in a sandbox's info.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiSnapshot {
    /// Its label.
    pub label: String,
    /// When it was taken (ISO 8601, seconds).
    pub created: String,
    /// Image size, bytes.
    pub size: u64,
}

/// A sandbox, as sq-sandbox reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiInfo {
    /// The id.
    pub id: String,
    /// Owner (`anon` unless given).
    pub owner: String,
    /// Task (free text).
    pub task: String,
    /// Layer names, base first.
    pub layers: Vec<String>,
    /// When it was created (ISO 8601, seconds).
    pub created: String,
    /// When it last ran something (its creation before any exec).
    pub last_active: String,
    /// Its root is assembled and its init alive.
    pub mounted: bool,
    /// Execs run so far.
    pub exec_count: u64,
    /// Bytes in its writable layer.
    pub upper_bytes: u64,
    /// Snapshots taken.
    pub snapshots: Vec<CgiSnapshot>,
    /// The snapshot it was last restored to.
    pub active_snapshot: Option<String>,
    /// CPU limit, cores.
    pub cpu: Option<f64>,
    /// Memory limit, MiB.
    pub memory_mb: Option<u64>,
    /// Lifetime, seconds (0 = none).
    pub max_lifetime_s: u64,
    /// Hosts it may reach, as given at create.
    pub allow_net: Option<Vec<String>>,
    /// What it may reach, in effect now (sqrx's policy: `allow_net` absent or `[]` made it
    /// `"all"`, a list `{"allow": [...], "deny": []}`).
    #[schema(value_type = crate::v1::model::NetworkPolicyJson)]
    pub network: NetworkPolicy,
}

/// One exec, as `exec` returns it and `logs` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiExec {
    /// Its number in the sandbox's history.
    pub seq: u64,
    /// The command line.
    pub cmd: String,
    /// Working directory.
    pub workdir: String,
    /// Exit code; 124 on timeout, 128+N when killed by signal N.
    pub exit_code: i32,
    /// Start (ISO 8601, seconds).
    pub started: String,
    /// End (ISO 8601, seconds).
    pub finished: String,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// `POST .../snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiSnapshotTaken {
    /// The snapshot's label.
    pub snapshot: String,
    /// Image size, bytes.
    pub size: u64,
}

/// A module (layer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CgiModule {
    /// Layer name.
    pub name: String,
    /// Image size, bytes.
    pub size: u64,
    /// Always `local`.
    pub location: String,
}

/// Create body (every field but `id` optional; numbers may be strings).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CgiCreate {
    /// `[A-Za-z0-9_-]`, required.
    pub id: String,
    /// Owner (default `anon`).
    pub owner: Option<String>,
    /// Comma-separated string or array (default the base layer).
    #[schema(value_type = Object)]
    pub layers: Option<Value>,
    /// Task (free text).
    pub task: Option<String>,
    /// CPU limit, cores (default 2).
    #[schema(value_type = Object)]
    pub cpu: Option<Value>,
    /// Memory limit, MiB (default 1024).
    #[schema(value_type = Object)]
    pub memory_mb: Option<Value>,
    /// Lifetime, seconds (default 0 = none).
    #[schema(value_type = Object)]
    pub max_lifetime_s: Option<Value>,
    /// Hosts it may reach (`HOST`, `*.DOMAIN`, `CIDR` or address, each with an optional
    /// `:PORT`); absent or `[]`: every destination (the server's `--net-cgi-default`, `all`
    /// unless set).
    pub allow_net: Option<Vec<String>>,
}

/// Exec body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CgiExecBody {
    /// Shell command line (required).
    pub cmd: String,
    /// Working directory (default `/`).
    pub workdir: Option<String>,
    /// Timeout, seconds, number or numeric string (default 300).
    #[schema(value_type = Object)]
    pub timeout: Option<Value>,
}

/// Snapshot / restore body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CgiLabel {
    /// Snapshot label (`[A-Za-z0-9_.-]`; optional for snapshot).
    pub label: Option<String>,
}

/// Activate body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CgiModuleBody {
    /// Layer to add on top.
    pub module: String,
}

/// ISO 8601 with seconds and a numeric offset, as `date -Iseconds` prints.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A JSON request body: `application/json` required (415), an empty body reads as `{}`.
pub fn object(content_type: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let ct = content_type.unwrap_or("").trim().to_ascii_lowercase();
    if !ct.starts_with("application/json") {
        return Err(ApiError::unsupported_media_type(
            "expected Content-Type: application/json",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("expected a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

/// A field read as text: strings as they are, numbers and booleans printed, null = absent.
pub fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(ApiError::bad_request(format!("{key}: expected a string"))),
    }
}

/// A field read as a number: numbers, or strings holding one; null = absent.
pub fn number(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    let bad = || ApiError::bad_request(format!("{key}: expected a number"));
    let n = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if n.is_finite() {
        Ok(Some(n))
    } else {
        Err(bad())
    }
}

/// A field read as a whole number of at least zero.
pub fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match number(obj, key)? {
        None => Ok(None),
        // `u64::MAX as f64` rounds up to 2^64, which is past the range: `<`, not `<=`.
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64 => Ok(Some(n as u64)),
        Some(n) => Err(ApiError::bad_request(format!(
            "{key}: {n} is not a whole number >= 0"
        ))),
    }
}

/// A list field: an array of strings or a comma-separated string; null = absent.
pub fn list(obj: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{key}: expected a comma-separated string or an array of strings"
        ))
    };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(|s| s.trim().to_string()).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// The network policy of a create body's `allow_net`, with sq-sandbox's meaning: absent,
/// null or `[]` = no restriction (`default`: `all` unless the operator changed it), a list
/// (array or comma-separated string) = only those destinations.
pub fn allow_net_policy(
    obj: &Map<String, Value>,
    default: &NetworkPolicy,
) -> Result<NetworkPolicy, ApiError> {
    match list(obj, "allow_net")? {
        None => Ok(default.clone()),
        Some(rules) if rules.is_empty() => Ok(default.clone()),
        Some(rules) => NetworkPolicy::allow(&rules)
            .map_err(|e| ApiError::bad_request(format!("allow_net: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn lenient_fields() {
        let o = obj(
            json!({"cpu": "1.5", "mem": 256, "t": "abc", "l": "a, b,,c", "a": ["x"], "n": null}),
        );
        assert_eq!(number(&o, "cpu").ok().flatten(), Some(1.5));
        assert_eq!(count(&o, "mem").ok().flatten(), Some(256));
        assert!(number(&o, "t").is_err());
        assert_eq!(number(&o, "n").ok().flatten(), None);
        assert_eq!(
            list(&o, "l").ok().flatten(),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(list(&o, "a").ok().flatten(), Some(vec!["x".into()]));
        assert_eq!(text(&o, "mem").ok().flatten().as_deref(), Some("256"));
        assert!(count(&obj(json!({"m": 1.5})), "m").is_err());
        // 2^64 does not fit (it used to saturate to u64::MAX).
        assert!(count(&obj(json!({"m": "18446744073709551616"})), "m").is_err());
        assert_eq!(
            count(&obj(json!({"m": 9007199254740992u64})), "m")
                .ok()
                .flatten(),
            Some(9007199254740992)
        );
    }

    #[test]
    fn allow_net_keeps_sq_sandbox_meaning() {
        let all = NetworkPolicy::All;
        let policy = |v: Value| allow_net_policy(&obj(v), &all);
        assert_eq!(policy(json!({})).ok(), Some(NetworkPolicy::All));
        assert_eq!(
            policy(json!({"allow_net": null})).ok(),
            Some(NetworkPolicy::All)
        );
        assert_eq!(
            policy(json!({"allow_net": []})).ok(),
            Some(NetworkPolicy::All)
        );
        assert_eq!(
            policy(json!({"allow_net": ["10.1.0.0/16", "10.2.0.1:443"]})).ok(),
            NetworkPolicy::allow(&["10.1.0.0/16", "10.2.0.1:443"]).ok()
        );
        assert_eq!(
            policy(json!({"allow_net": "pypi.org, *.pythonhosted.org"})).ok(),
            NetworkPolicy::allow(&["pypi.org", "*.pythonhosted.org"]).ok()
        );
        // The operator's default applies to "no restriction given".
        assert_eq!(
            allow_net_policy(&obj(json!({"allow_net": []})), &NetworkPolicy::None).ok(),
            Some(NetworkPolicy::None)
        );
        let bad = policy(json!({"allow_net": ["10.0.0.1/8"]})).expect_err("bad rule");
        assert_eq!(bad.status.as_u16(), 400);
        assert!(
            bad.message.starts_with("allow_net: invalid network rule")
                && bad.message.contains("prefix"),
            "{}",
            bad.message
        );
        assert!(policy(json!({"allow_net": [1]})).is_err());
    }

    #[test]
    fn bodies() {
        assert!(object(Some("application/json"), b"").is_ok_and(|m| m.is_empty()));
        assert_eq!(
            object(Some("text/plain"), b"{}")
                .err()
                .map(|e| e.status.as_u16()),
            Some(415)
        );
        assert_eq!(
            object(Some("application/json; charset=utf-8"), b"{")
                .err()
                .map(|e| e.status.as_u16()),
            Some(400)
        );
        assert_eq!(
            object(Some("application/json"), b"[1]")
                .err()
                .map(|e| e.status.as_u16()),
            Some(400)
        );
        assert_eq!(
            iso(DateTime::<Utc>::UNIX_EPOCH),
            "1970-01-01T00:00:00+00:00"
        );
    }
}
