//! Packing an overlayfs upper directory as a layer that, stacked on the same lower layers,
//! shows exactly what the overlay showed.
//!
//! The upper records changes two ways. Deleted names are char 0/0 whiteouts, which squashfs
//! stores and which hide names below when the image is a lower layer. A directory that was
//! removed and created again is *opaque* (`trusted.overlay.opaque=y`): nothing below it shows
//! through. squashfs images written by backhand carry no xattrs, so each opaque directory is
//! expanded into whiteouts for every name the lower layers have there and the upper does not.
//! Directories inside an opaque one are opaque too as far as the lower layers are concerned
//! (overlayfs never looks below an opaque directory), so the expansion recurses into them.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use super::LayerError;
use super::device::squashfs_dev;
use super::from_dir::tree_from_dir;
use super::meta::BuildOptions;
use super::pack::{check_options, pack};
use super::tree::{Header, Node, NodeKind, Tree};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

/// Names in the directory `rel` of the layer mounted at `lower`, or none when `rel` is not a
/// directory there. No symlink is followed: a directory reached through a symlink in a lower
/// layer is not merged by overlayfs either, and following one could leave the layer.
pub(super) fn lower_names(lower: &Path, rel: &Path) -> Vec<String> {
    let Ok(root) = nix::fcntl::open(
        lower,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return Vec::new();
    };
    let inner = rel.strip_prefix("/").unwrap_or(rel);
    let inner = if inner.as_os_str().is_empty() {
        Path::new(".")
    } else {
        inner
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let Ok(fd) = openat2(root.as_fd(), inner, how) else {
        return Vec::new();
    };
    let Ok(dir) = nix::dir::Dir::from_fd(fd) else {
        return Vec::new();
    };
    dir.into_iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// Add whiteouts to `tree` for the names that the lower layers have in the opaque directory
/// `dir` and the upper does not; recurse into its subdirectories.
pub(super) fn expand_opaque(tree: &mut Tree, dir: &Path, lowers: &[PathBuf]) {
    let below: BTreeSet<String> = lowers.iter().flat_map(|l| lower_names(l, dir)).collect();
    let mtime = tree.get(dir).map(|n| n.header.mtime).unwrap_or(0);
    for name in below {
        let path = dir.join(&name);
        if tree.get(&path).is_none() {
            let whiteout = Node {
                header: Header {
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    mtime,
                },
                kind: NodeKind::CharDevice(squashfs_dev(0, 0)),
            };
            tree.nodes.insert(path, whiteout);
        }
    }
    let subdirs: Vec<PathBuf> = tree
        .nodes
        .range(dir.to_path_buf()..)
        .skip(1)
        .take_while(|(p, _)| p.starts_with(dir))
        .filter(|(p, n)| p.parent() == Some(dir) && matches!(n.kind, NodeKind::Dir))
        .map(|(p, _)| p.clone())
        .collect();
    for sub in subdirs {
        expand_opaque(tree, &sub, lowers);
    }
}

/// The upper directory `upper` as a tree, with opaque directories expanded against the layers
/// mounted at `lowers`. Returns the tree and the number of opaque directories found.
pub(crate) fn tree_from_upper(upper: &Path, lowers: &[PathBuf]) -> Result<(Tree, u64), LayerError> {
    let (mut tree, _) = tree_from_dir(upper)?;
    let opaque: Vec<PathBuf> = tree
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Dir))
        .map(|(p, _)| p.clone())
        .filter(|p| is_opaque(&upper.join(p.strip_prefix("/").unwrap_or(p))))
        .collect();
    // A directory inside an opaque one is expanded with it: skip it here.
    let mut done: Vec<PathBuf> = Vec::new();
    for dir in &opaque {
        if done.iter().any(|d| dir.starts_with(d)) {
            continue;
        }
        expand_opaque(&mut tree, dir, lowers);
        done.push(dir.clone());
    }
    Ok((tree, opaque.len() as u64))
}

/// Pack the overlay upper `upper` (stacked on the layers mounted at `lowers`, any order) into
/// the squashfs image `image`. Returns the image size.
pub(crate) fn pack_upper(
    upper: &Path,
    lowers: &[PathBuf],
    image: &Path,
    opts: &BuildOptions,
) -> Result<u64, LayerError> {
    check_options(opts)?;
    let (tree, opaque) = tree_from_upper(upper, lowers)?;
    tracing::debug!(upper = %upper.display(), opaque, "upper described");
    let mut file =
        crate::paths::create_private(image).map_err(LayerError::store("create", image))?;
    pack(&tree, opts, &mut file, &image.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_directories_become_whiteouts_for_lower_names_only() {
        let lower = tempfile::tempdir().expect("tempdir");
        for p in ["d/old1", "d/old2", "d/keep", "d/sub/deep", "other/x"] {
            let path = lower.path().join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"lower").expect("write");
        }
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(upper.path().join("d/sub")).expect("mkdir");
        std::fs::write(upper.path().join("d/keep"), b"new").expect("write");
        std::fs::write(upper.path().join("d/sub/fresh"), b"new").expect("write");
        let mut tree = tree_from_dir(upper.path()).expect("tree").0;
        expand_opaque(&mut tree, Path::new("/d"), &[lower.path().to_path_buf()]);

        let whiteout = |p: &str| matches!(tree.get(Path::new(p)), Some(Node { kind: NodeKind::CharDevice(d), .. }) if *d == squashfs_dev(0, 0));
        assert!(whiteout("/d/old1"));
        assert!(whiteout("/d/old2"));
        assert!(!whiteout("/d/keep"), "a name the upper has is kept");
        assert!(
            whiteout("/d/sub/deep"),
            "subdirectories of an opaque one are opaque too"
        );
        assert!(!whiteout("/d/sub/fresh"));
        assert!(
            tree.get(Path::new("/other/x")).is_none(),
            "outside the opaque dir: untouched"
        );
    }

    #[test]
    fn lower_names_never_follow_symlinks() {
        let lower = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc", lower.path().join("etc")).expect("symlink");
        assert!(lower_names(lower.path(), Path::new("/etc")).is_empty());
        std::fs::create_dir(lower.path().join("real")).expect("mkdir");
        std::fs::write(lower.path().join("real/f"), b"").expect("write");
        assert_eq!(
            lower_names(lower.path(), Path::new("/real")),
            vec!["f".to_string()]
        );
    }
}
