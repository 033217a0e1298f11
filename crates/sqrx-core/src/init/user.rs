//! Who an exec runs as: a user of the sandbox's own `/etc/passwd` and `/etc/group`, looked up
//! inside the sandbox at every exec (the sandbox may add users at any time).

use std::process::Command;

use crate::accounts::resolve;
use crate::protocol::{ExecSpec, FailureKind};

/// Set up `cmd` for `spec`: its working directory and, when `spec.user` is set, its user,
/// groups, `HOME`, `USER` and `LOGNAME` (unless `spec.env` has them).
pub(super) fn apply(cmd: &mut Command, spec: &ExecSpec) -> Result<(), (FailureKind, String)> {
    let Some(user) = &spec.user else {
        cmd.current_dir(if spec.cwd.is_empty() { "/" } else { &spec.cwd });
        return Ok(());
    };
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let Some(id) = resolve(user, &read("/etc/passwd"), &read("/etc/group")) else {
        return Err((
            FailureKind::NotFound,
            format!("user {user:?} is not in the sandbox's /etc/passwd"),
        ));
    };
    let has = |k: &str| spec.env.iter().any(|(name, _)| name == k);
    for (k, v) in [
        ("HOME", &id.home),
        ("USER", &id.name),
        ("LOGNAME", &id.name),
    ] {
        if !has(k) {
            cmd.env(k, v);
        }
    }
    let cwd = if !spec.cwd.is_empty() {
        spec.cwd.as_str()
    } else if std::path::Path::new(&id.home).is_dir() {
        id.home.as_str()
    } else {
        "/"
    };
    cmd.current_dir(cwd);
    if id.uid != 0 || id.gid != 0 {
        crate::sys::identity::switch_on_exec(cmd, id.uid, id.gid, id.groups);
    }
    Ok(())
}
