//! Describing a host directory as a layer [`Tree`].

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::LayerError;
use super::device::squashfs_dev;
use super::tree::{FileData, Header, Node, NodeKind, Tree};

/// What walking a directory found besides the tree itself.
#[derive(Debug, Default)]
pub(crate) struct DirStats {
    pub hard_links: u64,
    pub xattrs_dropped: u64,
}

/// Does `path` carry extended attributes that the image will not keep?
pub(crate) fn has_xattrs(path: &Path) -> bool {
    // Errors (no xattr support on this filesystem) mean there is nothing to lose.
    xattr::list(path)
        .map(|mut names| names.next().is_some())
        .unwrap_or(false)
}

/// Turn one host entry's metadata into a node. `None` for kinds squashfs cannot hold (none today).
pub(crate) fn node_for(path: &Path, md: &std::fs::Metadata) -> Result<Node, LayerError> {
    let header = Header::from_metadata(md);
    let ft = md.file_type();
    let dev = || {
        squashfs_dev(
            nix::sys::stat::major(md.rdev()),
            nix::sys::stat::minor(md.rdev()),
        )
    };
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File {
            data: FileData::Path(path.to_path_buf()),
            size: md.len(),
        }
    } else if ft.is_symlink() {
        NodeKind::Symlink(std::fs::read_link(path).map_err(LayerError::read(path))?)
    } else if ft.is_char_device() {
        NodeKind::CharDevice(dev())
    } else if ft.is_block_device() {
        NodeKind::BlockDevice(dev())
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Socket
    };
    Ok(Node { header, kind })
}

/// Walk `dir` (never following symlinks) into a tree rooted at `/`.
pub(crate) fn tree_from_dir(dir: &Path) -> Result<(Tree, DirStats), LayerError> {
    let root_md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LayerError::SourceMissing {
                path: dir.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(LayerError::ReadSource {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    // Following a symlink for the top directory itself is what users expect (`build ./current`).
    let root_md = if root_md.file_type().is_symlink() {
        std::fs::metadata(dir).map_err(LayerError::read(dir))?
    } else {
        root_md
    };
    if !root_md.is_dir() {
        return Err(LayerError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }

    let mut stats = DirStats::default();
    let mut tree = Tree::new(Header::from_metadata(&root_md));
    if has_xattrs(dir) {
        stats.xattrs_dropped += 1;
    }
    let mut seen_inodes: HashSet<(u64, u64)> = HashSet::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.to_path_buf());
            let source = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("walk failed"));
            LayerError::ReadSource { path, source }
        })?;
        let md = entry.metadata().map_err(|e| LayerError::ReadSource {
            path: entry.path().to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("stat failed")),
        })?;
        if md.is_file() && md.nlink() > 1 && !seen_inodes.insert((md.dev(), md.ino())) {
            stats.hard_links += 1;
        }
        if has_xattrs(entry.path()) {
            stats.xattrs_dropped += 1;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let inside = PathBuf::from("/").join(rel);
        let node = node_for(entry.path(), &md)?;
        tree.nodes.insert(inside, node);
    }
    Ok((tree, stats))
}
