//! The exec history of a sandbox (`logs.jsonl`), bounded to the most recent entries.

use std::io::Write;

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
    pub(crate) fn new(command: &str, r: &ExecResult) -> Self {
        ExecLogEntry {
            seq: 0,
            command: command.to_string(),
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

    /// Append an entry, numbering it; trims the file to the newest entries now and then. Best
    /// effort: the history never fails an exec.
    pub(crate) fn append_log(&self, entry: &ExecLogEntry) {
        let path = self.dir().join("logs.jsonl");
        let lock = self.dir().join("logs.lock");
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock)
        else {
            return;
        };
        let Ok(mut guard) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        else {
            return;
        };
        // The lock file holds the last sequence number, so appending never reads the history.
        let mut text = String::new();
        let _ = std::io::Seek::seek(&mut *guard, std::io::SeekFrom::Start(0));
        let _ = std::io::Read::read_to_string(&mut *guard, &mut text);
        let mut entry = entry.clone();
        entry.seq = text.trim().parse::<u64>().unwrap_or(0) + 1;
        let _ = guard.set_len(0);
        let _ = std::io::Seek::seek(&mut *guard, std::io::SeekFrom::Start(0));
        let _ = guard.write_all(entry.seq.to_string().as_bytes());
        let line = serde_json::to_string(&entry).unwrap_or_default() + "\n";
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.metadata()
            });
        let result = match appended {
            // Trim only when the file has clearly outgrown the bound.
            Ok(md) if md.len() > (MAX_ENTRIES as u64) * 2 * 1024 => {
                let entries = self.logs();
                if entries.len() > MAX_ENTRIES {
                    let keep = &entries[entries.len() - MAX_ENTRIES..];
                    let text: String = keep
                        .iter()
                        .filter_map(|e| serde_json::to_string(e).ok())
                        .map(|l| l + "\n")
                        .collect();
                    let tmp = path.with_extension("jsonl.tmp");
                    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path))
                } else {
                    Ok(())
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(sandbox = %self.id(), error = %e, "cannot record exec history");
        }
    }
}
