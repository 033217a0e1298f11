//! Merging a run of stacked layers into one layer that, on the same layers below, shows
//! exactly what the run showed: how sqrx keeps a snapshot chain within overlayfs's limit of
//! lower layers (500 on Linux 6.x; see `docs/sandboxes.md`).
//!
//! Layer images carry no overlay xattrs: a deleted name is a char 0/0 whiteout, and a
//! directory that replaced a file or a whiteout hides everything below it only by the
//! whiteouts it was packed with. The run is folded bottom to top with overlayfs's rules: an
//! entry replaces the one below it (a non-directory with everything under it), a directory
//! over a directory merges with it. A directory that covered a non-directory of the run hid
//! the layers below the run too; in the merged layer it is expanded into whiteouts for every
//! name those layers have there (as for an opaque directory of an upper).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::LayerError;
use super::device::squashfs_dev;
use super::from_dir::tree_from_dir;
use super::from_upper::{expand_opaque, lower_names};
use super::meta::BuildOptions;
use super::pack::{check_options, pack};
use super::tree::{Header, NodeKind, Tree};

/// The layers mounted at `run` (bottom first) as one tree, for stacking on the layers mounted
/// at `below`. Regular files are read from the run's mounts when packed.
pub(crate) fn merged_tree(run: &[PathBuf], below: &[PathBuf]) -> Result<Tree, LayerError> {
    let mut merged: Option<Tree> = None;
    // Directories of the merged tree that hide everything below the run.
    let mut covering: BTreeSet<PathBuf> = BTreeSet::new();
    for layer in run {
        let (tree, _) = tree_from_dir(layer)?;
        let m = merged.get_or_insert_with(|| Tree::new(tree.root));
        m.root = tree.root;
        // Parents come before their children in both trees.
        for (path, node) in tree.nodes {
            let below_kind = m.nodes.get(&path).map(|n| matches!(n.kind, NodeKind::Dir));
            if matches!(node.kind, NodeKind::Dir) {
                if below_kind == Some(false) {
                    covering.insert(path.clone());
                }
                // The upper directory's owner and mode; the entries below it stay merged.
                m.nodes.insert(path, node);
            } else {
                remove_subtree(m, &path);
                let gone: Vec<PathBuf> = covering
                    .range(path.clone()..)
                    .take_while(|p| p.starts_with(&path))
                    .cloned()
                    .collect();
                for p in gone {
                    covering.remove(&p);
                }
                m.nodes.insert(path, node);
            }
        }
    }
    let mut merged = merged.unwrap_or_else(|| Tree::new(Header::implicit_dir(0)));
    drop_idle_whiteouts(&mut merged, below);
    let mut done: Vec<&PathBuf> = Vec::new();
    for dir in &covering {
        // `expand_opaque` recurses into subdirectories.
        if done.iter().any(|d| dir.starts_with(d)) {
            continue;
        }
        expand_opaque(&mut merged, dir, below);
        done.push(dir);
    }
    Ok(merged)
}

/// Remove the whiteouts of `tree` for names that no layer in `below` has. In the run they hid
/// names of the run's lower layers; on `below` they hide nothing, and overlayfs lists a
/// whiteout as an entry (that cannot be opened) in a directory no lower layer merges with.
fn drop_idle_whiteouts(tree: &mut Tree, below: &[PathBuf]) {
    let whiteout = squashfs_dev(0, 0);
    let mut names_below: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let idle: Vec<PathBuf> = tree
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n.kind, NodeKind::CharDevice(d) if d == whiteout))
        .map(|(p, _)| p.clone())
        .filter(|p| {
            let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                return false;
            };
            let names = names_below
                .entry(parent.to_path_buf())
                .or_insert_with(|| below.iter().flat_map(|l| lower_names(l, parent)).collect());
            !names.contains(&*name.to_string_lossy())
        })
        .collect();
    for p in idle {
        tree.nodes.remove(&p);
    }
}

/// Remove `path` and everything under it from `tree`.
fn remove_subtree(tree: &mut Tree, path: &Path) {
    let doomed: Vec<PathBuf> = tree
        .nodes
        .range(path.to_path_buf()..)
        .take_while(|(p, _)| p.starts_with(path))
        .map(|(p, _)| p.clone())
        .collect();
    for p in doomed {
        tree.nodes.remove(&p);
    }
}

/// Merge the layers mounted at `run` (bottom first), stacked on the layers mounted at
/// `below`, into the squashfs image `image`. Returns the image size.
pub(crate) fn merge_layers(
    run: &[PathBuf],
    below: &[PathBuf],
    image: &Path,
    opts: &BuildOptions,
) -> Result<u64, LayerError> {
    check_options(opts)?;
    let tree = merged_tree(run, below)?;
    let mut file =
        crate::paths::create_private(image).map_err(LayerError::store("create", image))?;
    pack(&tree, opts, &mut file, &image.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfile(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    fn whiteout(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        nix::sys::stat::mknod(
            &p,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("mknod (run as root)");
    }

    fn kind(tree: &Tree, p: &str) -> &'static str {
        match tree.nodes.get(Path::new(p)).map(|n| &n.kind) {
            None => "none",
            Some(NodeKind::Dir) => "dir",
            Some(NodeKind::CharDevice(d)) if *d == squashfs_dev(0, 0) => "whiteout",
            Some(NodeKind::File { .. }) => "file",
            Some(_) => "other",
        }
    }

    #[test]
    fn a_run_folds_with_overlay_rules() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP a_run_folds_with_overlay_rules: whiteouts need root");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        for p in ["d/base1", "gone", "w/x", "keep/k"] {
            mkfile(base.path(), p, "base");
        }
        let l1 = tempfile::tempdir().expect("tempdir");
        mkfile(l1.path(), "d/one", "1");
        whiteout(l1.path(), "gone");
        whiteout(l1.path(), "w");
        mkfile(l1.path(), "f", "file then dir");
        let l2 = tempfile::tempdir().expect("tempdir");
        mkfile(l2.path(), "w/new", "2");
        mkfile(l2.path(), "f/inside", "2");
        whiteout(l2.path(), "d/one");
        let run = [l1.path().to_path_buf(), l2.path().to_path_buf()];
        let tree = merged_tree(&run, &[base.path().to_path_buf()]).expect("merge");

        for (path, want, why) in [
            ("/d", "dir", ""),
            (
                "/d/one",
                "none",
                "created and deleted in the run: nothing below to hide",
            ),
            ("/d/base1", "none", "merged from below as before"),
            ("/gone", "whiteout", "deleted in the run"),
            ("/w", "dir", ""),
            ("/w/new", "file", ""),
            (
                "/w/x",
                "whiteout",
                "a directory over a whiteout hides the layers below",
            ),
            ("/f", "dir", "a directory over a file"),
            ("/f/inside", "file", ""),
            ("/keep", "none", "untouched by the run"),
        ] {
            assert_eq!(kind(&tree, path), want, "{path}: {why}");
        }
    }
}
