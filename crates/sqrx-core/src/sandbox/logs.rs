//! The exec history of a sandbox (`logs.jsonl`), bounded to the most recent entries.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::runtime::Sandbox;
use super::spec::ExecResult;

/// Entries kept per sandbox.
const MAX_ENTRIES: usize = 200;
/// Output kept per stream in the history.
const MAX_OUTPUT: usize = 16 * 1024;

/// One exec in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecLogEntry {
    /// Sequence number, from 1, increasing for the life of the sandbox.
    pub seq: u64,
    /// The command as one line.
    pub command: String,
    /// The working directory it ran in (`None` = `/`).
    #[serde(default)]
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
    /// Start time.
    pub started: DateTime<Utc>,
    /// End time.
    pub finished: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The start of stdout (lossy UTF-8, at most 16 KiB).
    pub stdout: String,
    /// The start of stderr (lossy UTF-8, at most 16 KiB).
    pub stderr: String,
}

fn head(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned()
}

impl ExecLogEntry {
    pub(crate) fn new(seq: u64, command: &str, workdir: Option<&str>, r: &ExecResult) -> Self {
        ExecLogEntry {
            seq,
            command: command.to_string(),
            workdir: workdir.map(str::to_string),
            exit_code: r.exit_code,
            signal: r.signal,
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            truncated: r.truncated,
            started: r.started,
            finished: r.finished,
            duration_ms: r.duration_ms,
            stdout: head(&r.stdout),
            stderr: head(&r.stderr),
        }
    }
}

impl Sandbox {
    /// The exec history, oldest first (at least the most recent 200 execs).
    pub fn logs(&self) -> Vec<ExecLogEntry> {
        let text = std::fs::read_to_string(self.dir().join("logs.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Append an entry (numbered by init). One `O_APPEND` write per line, so concurrent
    /// writers never interleave; the file is trimmed to the newest entries, under a lock, once
    /// it has clearly outgrown the bound. Best effort: the history never fails an exec.
    pub(crate) fn append_log(&self, entry: &ExecLogEntry) {
        let path = self.dir().join("logs.jsonl");
        let line = serde_json::to_string(entry).unwrap_or_default() + "\n";
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.metadata()
            });
        let result = match appended {
            Ok(md) if md.len() > (MAX_ENTRIES as u64) * 4 * 1024 => self.trim_log(&path),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(sandbox = %self.id(), error = %e, "cannot record exec history");
        }
    }

    fn trim_log(&self, path: &std::path::Path) -> std::io::Result<()> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir().join("logs.lock"))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        let mut entries = self.logs();
        if entries.len() <= MAX_ENTRIES {
            return Ok(());
        }
        entries.sort_by_key(|e| e.seq);
        let keep = &entries[entries.len() - MAX_ENTRIES..];
        let text: String = keep
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .map(|l| l + "\n")
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}
