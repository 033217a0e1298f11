//! The in-memory description of a layer's content that every builder produces and `pack` writes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Owner, mode and mtime of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

impl Header {
    /// A directory header for parents nobody described: `0755 root:root`.
    pub fn implicit_dir(mtime: u32) -> Self {
        Header {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime,
        }
    }

    pub fn from_metadata(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Header {
            mode: (md.mode() & 0o7777) as u16,
            uid: md.uid(),
            gid: md.gid(),
            mtime: clamp_time(md.mtime()),
        }
    }
}

/// Clamp a Unix time to squashfs's unsigned 32-bit field.
pub(crate) fn clamp_time(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

/// Where a regular file's bytes come from at pack time.
#[derive(Debug, Clone)]
pub(crate) enum FileData {
    /// A file on disk, opened only when packed.
    Path(PathBuf),
    /// `len` bytes at `offset` of a spool file (tar imports).
    Slice {
        file: Arc<PathBuf>,
        offset: u64,
        len: u64,
    },
    /// Bytes generated in memory.
    Bytes(Arc<[u8]>),
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    File { data: FileData, size: u64 },
    Dir,
    Symlink(PathBuf),
    CharDevice(u32),
    BlockDevice(u32),
    Fifo,
    Socket,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub header: Header,
    pub kind: NodeKind,
}

/// Entries keyed by their absolute path inside the layer. `BTreeMap<PathBuf>` orders by
/// components, so every parent comes before its children.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub root: Header,
    pub nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    pub fn new(root: Header) -> Self {
        Tree {
            root,
            nodes: BTreeMap::new(),
        }
    }

    /// Insert or replace `path` (absolute, normalized). Missing parents are created with
    /// `parent_header(parent)`; an existing non-directory parent is replaced by a directory.
    pub fn insert_with(
        &mut self,
        path: &Path,
        node: Node,
        parent_header: impl Fn(&Path) -> Header,
    ) {
        if path == Path::new("/") {
            self.root = node.header;
            return;
        }
        let mut ancestors: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|p| *p != Path::new("/"))
            .collect();
        ancestors.reverse();
        for parent in ancestors {
            let is_dir = matches!(
                self.nodes.get(parent),
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                })
            );
            if !is_dir {
                let header = parent_header(parent);
                self.nodes.insert(
                    parent.to_path_buf(),
                    Node {
                        header,
                        kind: NodeKind::Dir,
                    },
                );
            }
        }
        // A directory replaced by a non-directory takes its children with it (tar semantics).
        if !matches!(node.kind, NodeKind::Dir) {
            let children: Vec<PathBuf> = self
                .nodes
                .range(path.to_path_buf()..)
                .skip(1)
                .take_while(|(p, _)| p.starts_with(path))
                .map(|(p, _)| p.clone())
                .collect();
            for child in children {
                self.nodes.remove(&child);
            }
        }
        self.nodes.insert(path.to_path_buf(), node);
    }

    pub fn insert(&mut self, path: &Path, node: Node, implicit_mtime: u32) {
        self.insert_with(path, node, |_| Header::implicit_dir(implicit_mtime));
    }

    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn file_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n.kind {
                NodeKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

/// Normalize a relative or absolute path lexically to an absolute one inside the layer root.
/// Returns `None` when `..` would climb above the root.
pub(crate) fn normalize_inside(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    let joined;
    let full = if rel.is_absolute() {
        rel
    } else {
        joined = base.join(rel);
        joined.as_path()
    };
    for c in full.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(n) => out.push(n),
        }
    }
    let mut p = PathBuf::from("/");
    p.extend(out);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Node {
        Node {
            header: Header::implicit_dir(0),
            kind: NodeKind::Dir,
        }
    }

    #[test]
    fn insert_creates_parents_and_replaces() {
        let mut t = Tree::new(Header::implicit_dir(0));
        let file = Node {
            header: Header {
                mode: 0o644,
                uid: 1,
                gid: 2,
                mtime: 3,
            },
            kind: NodeKind::File {
                data: FileData::Bytes(Arc::from(&b"x"[..])),
                size: 1,
            },
        };
        t.insert(Path::new("/a/b/c"), file.clone(), 7);
        assert!(matches!(
            t.get(Path::new("/a")).map(|n| &n.kind),
            Some(NodeKind::Dir)
        ));
        assert_eq!(t.get(Path::new("/a/b")).map(|n| n.header.mtime), Some(7));
        // replacing a directory by a file drops its children
        t.insert(Path::new("/a"), file, 0);
        assert!(t.get(Path::new("/a/b/c")).is_none());
        assert_eq!(t.nodes.len(), 1);
        t.insert(Path::new("/a"), dir(), 0);
        assert!(matches!(
            t.get(Path::new("/a")).map(|n| &n.kind),
            Some(NodeKind::Dir)
        ));
    }

    #[test]
    fn normalize_stays_inside() {
        let n = |b: &str, r: &str| normalize_inside(Path::new(b), Path::new(r));
        assert_eq!(n("/usr/bin", "../lib/x"), Some(PathBuf::from("/usr/lib/x")));
        assert_eq!(
            n("/usr/bin", "/etc/passwd"),
            Some(PathBuf::from("/etc/passwd"))
        );
        assert_eq!(n("/a", "./b/./c"), Some(PathBuf::from("/a/b/c")));
        assert_eq!(n("/a", "../../etc"), None);
        assert_eq!(n("/", ".."), None);
    }
}
