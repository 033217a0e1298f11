//! Sessions on disk: one JSON file per session in `<data dir>/sessions/`, written whenever the
//! session changes, so a server started again on the same data directory knows the sessions
//! of the one before (their ids, tokens and ends). The files hold termination tokens, which
//! are capabilities: the directory is `0700` and the files `0600`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::manager::Session;

/// The sessions directory of one data directory.
#[derive(Debug)]
pub(super) struct SessionFiles {
    dir: PathBuf,
}

impl SessionFiles {
    /// The session files of the data directory `data_dir`.
    pub(super) fn new(data_dir: &Path) -> Self {
        SessionFiles {
            dir: data_dir.join("sessions"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Write `session` (whole, replacing the file atomically).
    pub(super) fn save(&self, session: &Session) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let json = serde_json::to_vec_pretty(session).map_err(std::io::Error::other)?;
        let path = self.path(&session.id);
        let tmp = self.dir.join(format!(".{}.tmp", session.id));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)
    }

    /// Forget the session `id` (nothing to do if it has no file).
    pub(super) fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every session with a readable file; unreadable ones are logged and skipped (left in
    /// place for a person to look at).
    pub(super) fn load(&self) -> Vec<Session> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the sessions directory");
                return Vec::new();
            }
        };
        let mut sessions = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Session>(&bytes).map_err(|e| e.to_string())
                });
            match read {
                Ok(s) if self.path(&s.id) == path => sessions.push(s),
                Ok(s) => {
                    tracing::warn!(file = %path.display(), id = %s.id, "session file under another id; skipped")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable session file; skipped")
                }
            }
        }
        sessions
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use chrono::Utc;

    use super::*;
    use crate::session::SessionStatus;

    fn session(id: &str) -> Session {
        let now = Utc::now();
        Session {
            id: id.into(),
            termination_token: "t".repeat(32),
            template: "default".into(),
            owner: Some("me".into()),
            created_at: now,
            started_at: Some(now),
            valid_till: now + chrono::Duration::seconds(60),
            sandbox_id: format!("session-{id}"),
            port: 8000,
            status: SessionStatus::Running,
        }
    }

    #[test]
    fn sessions_round_trip_privately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = SessionFiles::new(dir.path());
        assert!(files.load().is_empty(), "no directory yet");
        let mut a = session("aa");
        let b = session("bb");
        files.save(&a).expect("save");
        files.save(&b).expect("save");
        a.status = SessionStatus::Stopped;
        files.save(&a).expect("save again");
        let mut loaded = files.load();
        loaded.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(loaded, vec![a, b]);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("sessions")), 0o700);
        assert_eq!(mode(&dir.path().join("sessions/aa.json")), 0o600);
        files.remove("aa").expect("remove");
        files.remove("aa").expect("removing twice is fine");
        assert_eq!(files.load().len(), 1);
    }

    #[test]
    fn unreadable_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = SessionFiles::new(dir.path());
        files.save(&session("good")).expect("save");
        std::fs::write(dir.path().join("sessions/bad.json"), b"{not json").expect("write");
        // A file whose name and id disagree is not trusted.
        let renamed = serde_json::to_vec(&session("other")).expect("json");
        std::fs::write(dir.path().join("sessions/moved.json"), renamed).expect("write");
        std::fs::write(dir.path().join("sessions/.x.tmp"), b"half").expect("write");
        let loaded = files.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, "good");
    }
}
