//! What a sandbox's files are, seen from the host through its init's root: the paths, kinds,
//! modes, owners and contents under a few directories. Two manifests are equal exactly when a
//! program in the sandbox could not tell the trees apart (mtimes aside).

use std::collections::BTreeMap;
use std::path::PathBuf;

use sqrx_core::Sandbox;
use sqrx_testkit::{Facts, tree_facts};

/// Entries by path inside the sandbox (`/work/a`, ...).
pub type Manifest = BTreeMap<PathBuf, Facts>;

/// The manifest of `dirs` (absolute paths inside the sandbox; a missing one is empty).
pub fn manifest(sb: &Sandbox, dirs: &[&str]) -> Manifest {
    let info = sb.info();
    let root = PathBuf::from(format!("/proc/{}/root", info.init_pid));
    // Owners as the sandbox sees them: its ids start at its host range's base.
    let base = info.id_base.unwrap_or(0);
    let mut out = Manifest::new();
    for dir in dirs {
        let rel = dir.trim_start_matches('/');
        let host = root.join(rel);
        if std::fs::symlink_metadata(&host).is_err() {
            continue;
        }
        for (path, mut facts) in tree_facts(&host) {
            facts.mtime = None;
            facts.uid = facts.uid.wrapping_sub(base);
            facts.gid = facts.gid.wrapping_sub(base);
            out.insert(PathBuf::from(dir).join(path), facts);
        }
    }
    out
}

/// Panic with the differences when `got` is not `want`.
pub fn assert_same(got: &Manifest, want: &Manifest, context: &str) {
    if got == want {
        return;
    }
    let mut diff = Vec::new();
    for (p, f) in want {
        match got.get(p) {
            None => diff.push(format!("missing {}", p.display())),
            Some(g) if g != f => diff.push(format!("{}: {g:?} != {f:?}", p.display())),
            Some(_) => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        diff.push(format!("extra {}", p.display()));
    }
    panic!("{context}: files differ:\n  {}", diff.join("\n  "));
}
