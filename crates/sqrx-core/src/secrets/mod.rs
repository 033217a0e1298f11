//! Secrets that never enter a sandbox. A sandbox sees a placeholder (an environment variable
//! named for the secret); the runtime's egress proxy, outside the sandbox, puts the real value
//! in place of the placeholder in requests to the hosts the secret is bound to, and refuses any
//! request that carries a placeholder anywhere else. See docs/secrets.md.
//!
//! - Runtime secrets: `<data>/secrets.json` in sq-sandbox's format (`{"secrets": {"NAME":
//!   {"placeholder": …, "value": …, "allowed_hosts": […]}}}`), read when the runtime opens and by
//!   [`crate::Runtime::reload_secrets`] (the server calls it on `SIGHUP`); every sandbox with a
//!   network created while the runtime has secrets gets them.
//! - Sandbox secrets: [`crate::SandboxSpec::secrets`], and [`crate::Sandbox::set_secret`] to add
//!   or rotate one.
//!
//! Values live in files only root can read (`<data>/secrets/runtime.json`,
//! `<sandbox>/secrets.json`, both 0600) and are read by the proxy for every request, so a new
//! value takes effect for the next request without restarting anything. Specs, states, API
//! answers and `Debug` output never carry a value.

mod audit;
pub(crate) mod ca;
pub(crate) mod proxy;
mod rewrite;
pub mod trust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxError;

pub use audit::{AuditRecord, AuditTotals, Decision, audit_records, audit_totals};

/// The prefix of placeholders sqrx makes up for secrets that name none.
pub const PLACEHOLDER_PREFIX: &str = "sqrx-secret-";

/// Where the runtime's secrets are read from: `<data>/secrets.json`.
pub fn runtime_file(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets.json")
}

/// The directory of the runtime's CA, its active secrets and the audit log.
pub(crate) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets")
}

/// The runtime's secrets as last read (values and filled-in placeholders), for the proxy.
pub(crate) fn runtime_store(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("runtime.json")
}

/// A sandbox's own secrets (values included).
pub(crate) fn sandbox_store(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("secrets.json")
}

/// One secret. Over every API its `value` is write-only: it is read from JSON and never
/// written back (`Serialize` leaves it out, `Debug` shows its length only).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Secret {
    /// What the sandbox sees as `$NAME` and sends; `None` makes one up
    /// (`sqrx-secret-<32 hex digits>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The real value (write-only).
    #[serde(default, skip_serializing)]
    pub value: String,
    /// The hosts the value may go to: `api.example.com`, or `*.example.com` for every name
    /// under `example.com`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Also substitute in plain HTTP requests (default: HTTPS only; a placeholder in plain
    /// HTTP is refused).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_http: bool,
    /// Also substitute in the URL (path and query); default: refused there.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_query: bool,
    /// Also substitute in the request body; default: refused there.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_body: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("placeholder", &self.placeholder)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_http", &self.allow_http)
            .field("allow_query", &self.allow_query)
            .field("allow_body", &self.allow_body)
            .finish()
    }
}

impl Secret {
    /// A secret with `value` bound to `hosts` (HTTPS, headers only).
    pub fn new(
        value: impl Into<String>,
        hosts: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Secret {
            value: value.into(),
            allowed_hosts: hosts.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Is `host` one this secret may go to?
    pub fn bound_to(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|h| host_matches(h, &host))
    }
}

/// Does the allowed-hosts entry `pattern` name `host` (lowercase)?
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
        None => pattern == host,
    }
}

/// What is shown of a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The environment variable the sandbox sees it as.
    pub name: String,
    /// The placeholder the sandbox sees.
    pub placeholder: String,
    /// Where the value may go.
    pub allowed_hosts: Vec<String>,
    /// Plain HTTP allowed.
    pub allow_http: bool,
    /// Substituted in the URL.
    pub allow_query: bool,
    /// Substituted in the body.
    pub allow_body: bool,
    /// `runtime` (from `<data>/secrets.json`) or `sandbox` (its own).
    pub source: &'static str,
}

/// The file format (sq-sandbox's `secrets.json`).
#[derive(Default, Serialize, Deserialize)]
struct SecretsFile {
    #[serde(default)]
    secrets: BTreeMap<String, StoredSecret>,
}

/// A secret as it is stored on the host: with its value.
#[derive(Clone, Default, Serialize, Deserialize)]
struct StoredSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    placeholder: Option<String>,
    #[serde(default)]
    value: String,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_http: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_query: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_body: bool,
}

impl From<StoredSecret> for Secret {
    fn from(s: StoredSecret) -> Self {
        Secret {
            placeholder: s.placeholder,
            value: s.value,
            allowed_hosts: s.allowed_hosts,
            allow_http: s.allow_http,
            allow_query: s.allow_query,
            allow_body: s.allow_body,
        }
    }
}

impl From<&Secret> for StoredSecret {
    fn from(s: &Secret) -> Self {
        StoredSecret {
            placeholder: s.placeholder.clone(),
            value: s.value.clone(),
            allowed_hosts: s.allowed_hosts.clone(),
            allow_http: s.allow_http,
            allow_query: s.allow_query,
            allow_body: s.allow_body,
        }
    }
}

fn invalid(reason: String) -> SandboxError {
    SandboxError::Invalid {
        field: "secrets",
        reason,
    }
}

/// Check one secret (the error names the secret, never its value).
pub fn validate(name: &str, secret: &Secret) -> Result<(), SandboxError> {
    let good_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if !good_name {
        return Err(invalid(format!(
            "{name:?}: a secret's name is an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        )));
    }
    if secret.value.is_empty() {
        return Err(invalid(format!("{name}: no value")));
    }
    if secret.value.len() > 64 * 1024 {
        return Err(invalid(format!("{name}: the value is over 64 KiB")));
    }
    if secret
        .value
        .bytes()
        .any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
    {
        return Err(invalid(format!(
            "{name}: the value holds a control character (it could split a header)"
        )));
    }
    if let Some(p) = &secret.placeholder {
        if p.len() < 8 || p.len() > 256 {
            return Err(invalid(format!(
                "{name}: a placeholder is 8 to 256 characters long"
            )));
        }
        if !p.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "{name}: a placeholder is printable ASCII without spaces"
            )));
        }
        if secret.value.contains(p.as_str()) || p.contains(secret.value.as_str()) {
            return Err(invalid(format!(
                "{name}: the placeholder and the value must not contain each other"
            )));
        }
    }
    if secret.allowed_hosts.is_empty() {
        return Err(invalid(format!(
            "{name}: allowed_hosts is empty (a secret that may go nowhere is of no use)"
        )));
    }
    for h in &secret.allowed_hosts {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(invalid(format!(
                "{name}: {h:?} is not a host name (api.example.com) or a domain (*.example.com)"
            )));
        }
    }
    Ok(())
}

/// Check a set of secrets: each one, and no placeholder inside another.
pub fn validate_all(secrets: &BTreeMap<String, Secret>) -> Result<(), SandboxError> {
    for (name, s) in secrets {
        validate(name, s)?;
    }
    let placeholders: Vec<(&String, &String)> = secrets
        .iter()
        .filter_map(|(n, s)| s.placeholder.as_ref().map(|p| (n, p)))
        .collect();
    for (i, (a, pa)) in placeholders.iter().enumerate() {
        for (b, pb) in &placeholders[i + 1..] {
            if pa.contains(pb.as_str()) || pb.contains(pa.as_str()) {
                return Err(invalid(format!(
                    "{a} and {b}: one placeholder contains the other"
                )));
            }
        }
    }
    Ok(())
}

/// A new placeholder: `sqrx-secret-` and 128 random bits in hex.
fn fresh_placeholder() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: still unique per process and time (a placeholder is no secret).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (t ^ u128::from(std::process::id())).to_le_bytes();
    }
    format!("{PLACEHOLDER_PREFIX}{}", hex::encode(bytes))
}

/// Give every secret without a placeholder the one it had in `previous`, or a new one.
pub(crate) fn fill_placeholders(
    secrets: &mut BTreeMap<String, Secret>,
    previous: &BTreeMap<String, Secret>,
) {
    for (name, s) in secrets.iter_mut() {
        if s.placeholder.is_none() {
            s.placeholder = Some(
                previous
                    .get(name)
                    .and_then(|p| p.placeholder.clone())
                    .filter(|p| p.starts_with(PLACEHOLDER_PREFIX))
                    .unwrap_or_else(fresh_placeholder),
            );
        }
    }
}

/// Parse `secrets.json` text (sq-sandbox's format).
pub fn parse(text: &str) -> Result<BTreeMap<String, Secret>, SandboxError> {
    let file: SecretsFile = serde_json::from_str(text).map_err(|e| {
        // serde's message quotes no input values for these shapes, only positions and names.
        invalid(format!(
            "not a secrets file ({{\"secrets\": {{...}}}}): {e}"
        ))
    })?;
    let secrets: BTreeMap<String, Secret> = file
        .secrets
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    validate_all(&secrets)?;
    Ok(secrets)
}

/// Read a secrets file; a missing one is an empty set.
pub(crate) fn read(path: &Path) -> Result<BTreeMap<String, Secret>, SandboxError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| match e {
            SandboxError::Invalid { reason, .. } => {
                invalid(format!("{}: {reason}", path.display()))
            }
            other => other,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(SandboxError::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Write a secrets file, values included, readable by its owner only.
pub(crate) fn write(path: &Path, secrets: &BTreeMap<String, Secret>) -> Result<(), SandboxError> {
    let file = SecretsFile {
        secrets: secrets.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| SandboxError::Io {
        op: "encode",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    if let Some(parent) = path.parent() {
        crate::paths::private_dir(parent).map_err(SandboxError::io("create", parent))?;
    }
    crate::paths::replace_private(path, &json).map_err(|(path, source)| SandboxError::Io {
        op: "write",
        path,
        source,
    })
}

/// The secrets a sandbox has now: the runtime's, then its own (which win by name). Unreadable
/// files count as empty here (the proxy then refuses what it cannot match).
pub(crate) fn effective(
    data_dir: &Path,
    sandbox_dir: &Path,
) -> Vec<(String, Secret, &'static str)> {
    let mut all: BTreeMap<String, (Secret, &'static str)> = BTreeMap::new();
    for (source, path) in [
        ("runtime", runtime_store(data_dir)),
        ("sandbox", sandbox_store(sandbox_dir)),
    ] {
        match read(&path) {
            Ok(secrets) => {
                for (name, s) in secrets {
                    all.insert(name, (s, source));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read secrets"),
        }
    }
    all.into_iter()
        .filter(|(_, (s, _))| s.placeholder.is_some())
        .map(|(n, (s, source))| (n, s, source))
        .collect()
}

/// What is shown of `secrets`.
pub(crate) fn infos(secrets: Vec<(String, Secret, &'static str)>) -> Vec<SecretInfo> {
    secrets
        .into_iter()
        .map(|(name, s, source)| SecretInfo {
            name,
            placeholder: s.placeholder.unwrap_or_default(),
            allowed_hosts: s.allowed_hosts,
            allow_http: s.allow_http,
            allow_query: s.allow_query,
            allow_body: s.allow_body,
            source,
        })
        .collect()
}

/// Is `SQUASH_PROXY_HTTPS`/`SQRX_PROXY_HTTPS` asking for HTTPS interception (`1`, `true`,
/// `yes`, `on`) or against it (`0`, `false`, `no`, `off`)? `None` when unset or unclear.
pub fn https_interception_from_env() -> Option<bool> {
    ["SQRX_PROXY_HTTPS", "SQUASH_PROXY_HTTPS"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sq_sandbox_files_parse_and_values_are_never_serialized_or_shown() {
        let text = r#"{"secrets": {"ANTHROPIC_API_KEY": {"placeholder": "sk-placeholder-anthropic",
            "value": "sk-ant-real-key-here", "allowed_hosts": ["api.anthropic.com"]}}}"#;
        let s = parse(text).expect("parse");
        let k = &s["ANTHROPIC_API_KEY"];
        assert_eq!(k.value, "sk-ant-real-key-here");
        assert!(k.bound_to("API.anthropic.com."));
        assert!(!k.bound_to("anthropic.com"));
        let shown = serde_json::to_string(k).expect("json");
        assert!(!shown.contains("sk-ant-real"), "{shown}");
        assert!(!format!("{k:?}").contains("sk-ant-real"));
    }

    #[test]
    fn bad_secrets_are_refused_without_quoting_their_value() {
        let cases = [
            ("1BAD", Secret::new("v", ["a.com"])),
            ("K", Secret::new("", ["a.com"])),
            ("K", Secret::new("line\r\nInjected: 1", ["a.com"])),
            ("K", Secret::new("v", Vec::<String>::new())),
            ("K", Secret::new("v", ["http://a.com"])),
            (
                "K",
                Secret {
                    placeholder: Some("short".into()),
                    ..Secret::new("v", ["a.com"])
                },
            ),
        ];
        for (name, s) in cases {
            let e = validate(name, &s).expect_err(name).to_string();
            assert!(!e.contains("Injected"), "{e}");
        }
        let mut two = BTreeMap::new();
        two.insert(
            "A".to_string(),
            Secret {
                placeholder: Some("placeholder-1".into()),
                ..Secret::new("v", ["a.com"])
            },
        );
        two.insert(
            "B".to_string(),
            Secret {
                placeholder: Some("placeholder-10".into()),
                ..Secret::new("w", ["a.com"])
            },
        );
        assert!(validate_all(&two).is_err());
    }

    #[test]
    fn domains_match_names_under_them_only() {
        let s = Secret::new("v", ["*.example.com"]);
        assert!(s.bound_to("api.example.com"));
        assert!(s.bound_to("a.b.example.com"));
        assert!(!s.bound_to("example.com"));
        assert!(!s.bound_to("evilexample.com"));
    }

    #[test]
    fn placeholders_are_made_up_once_and_kept() {
        let mut a = BTreeMap::new();
        a.insert("K".to_string(), Secret::new("v", ["a.com"]));
        let mut first = a.clone();
        fill_placeholders(&mut first, &BTreeMap::new());
        let p = first["K"].placeholder.clone().expect("filled");
        assert!(p.starts_with(PLACEHOLDER_PREFIX) && p.len() == PLACEHOLDER_PREFIX.len() + 32);
        let mut again = a;
        fill_placeholders(&mut again, &first);
        assert_eq!(again["K"].placeholder.as_deref(), Some(p.as_str()));
    }
}
