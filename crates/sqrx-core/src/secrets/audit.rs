//! The audit log of the egress proxy: one JSON line per substitution or refusal in
//! `<data>/secrets/audit.jsonl` (0600). Never a value: the secret's name, the host, the method
//! and the path without its query.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the proxy did with a request that carried a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The value went in place of the placeholder and the request was sent.
    Substituted,
    /// The request was answered 403 and not sent.
    Refused,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The sandbox.
    pub sandbox: String,
    /// The secret.
    pub secret: String,
    /// Where the request was going.
    pub host: String,
    /// Its method.
    pub method: String,
    /// Its path, without the query.
    pub path: String,
    /// What happened.
    pub decision: Decision,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The audit log's path.
pub(crate) fn path(data_dir: &Path) -> PathBuf {
    super::dir(data_dir).join("audit.jsonl")
}

/// Append `record` to the log at `path`.
pub(crate) fn append(path: &Path, record: &AuditRecord) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut line) = serde_json::to_vec(record) else {
        return;
    };
    line.push(b'\n');
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&line));
    if let Err(e) = written {
        eprintln!(
            "sqrx egress: cannot write the audit log {}: {e}",
            path.display()
        );
    }
}

/// Counts of the audit log, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditTotals {
    /// Requests sent with a value in place of a placeholder (one per secret).
    pub substituted: u64,
    /// Requests refused.
    pub refused: u64,
}

/// Count the audit log of the runtime in `data_dir` (empty when it has none).
pub fn audit_totals(data_dir: &Path) -> AuditTotals {
    let mut t = AuditTotals::default();
    let Ok(text) = std::fs::read_to_string(path(data_dir)) else {
        return t;
    };
    for line in text.lines() {
        match serde_json::from_str::<AuditRecord>(line).map(|r| r.decision) {
            Ok(Decision::Substituted) => t.substituted += 1,
            Ok(Decision::Refused) => t.refused += 1,
            Err(_) => {}
        }
    }
    t
}

/// Read every record of the runtime in `data_dir`'s audit log.
pub fn audit_records(data_dir: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path(data_dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
