//! Describing host programs, files and directories plus their shared-library closure as a tree.
//!
//! Every path lands at the same path in the layer. Symbolic links met on the way (`/lib ->
//! usr/lib`, `/usr/bin/python3 -> python3.11`) are kept as links and their targets are added
//! too, so the layer resolves names exactly as the host does.

use std::collections::{HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use super::LayerError;
use super::elf::{LibResolver, is_elf, read_deps};
use super::from_dir::{DirStats, has_xattrs, node_for};
use super::tree::{Header, Tree, clamp_time};

const MAX_LINKS: u32 = 40;

/// Collects host paths into a tree and follows ELF dependencies.
pub(crate) struct HostCollector {
    pub tree: Tree,
    pub stats: DirStats,
    resolver: LibResolver,
    added: HashSet<PathBuf>,
    elf_queue: VecDeque<PathBuf>,
}

impl HostCollector {
    pub fn new() -> Self {
        let now = clamp_time(chrono::Utc::now().timestamp());
        let root = std::fs::metadata("/")
            .map(|m| Header::from_metadata(&m))
            .unwrap_or(Header::implicit_dir(now));
        HostCollector {
            tree: Tree::new(root),
            stats: DirStats::default(),
            resolver: LibResolver::new(),
            added: HashSet::new(),
            elf_queue: VecDeque::new(),
        }
    }

    /// Add `path` (a file, a directory tree, or a link chain to either) and everything the ELF
    /// files among them need.
    pub fn add(&mut self, path: &Path) -> Result<(), LayerError> {
        if !path.is_absolute() {
            let abs = std::env::current_dir()
                .map_err(LayerError::read(path))?
                .join(path);
            return self.add(&abs);
        }
        if std::fs::symlink_metadata(path).is_err() && std::fs::metadata(path).is_err() {
            return Err(LayerError::SourceMissing {
                path: path.to_path_buf(),
            });
        }
        let real = self.add_resolving(path, 0)?;
        let md = std::fs::symlink_metadata(&real).map_err(LayerError::read(&real))?;
        if md.is_dir() {
            self.add_dir(&real)?;
        }
        self.follow_elf_deps()
    }

    /// Add `path` and the links leading to it, without walking it if it is a directory.
    pub fn add_path_only(&mut self, path: &Path) -> Result<(), LayerError> {
        self.add_resolving(path, 0)?;
        self.follow_elf_deps()
    }

    /// Add each component of `path`, keeping symlinks as links and continuing at their
    /// targets. Returns the real path (no symlinks in it).
    fn add_resolving(&mut self, path: &Path, depth: u32) -> Result<PathBuf, LayerError> {
        if depth > MAX_LINKS {
            return Err(LayerError::SymlinkLoop {
                path: path.to_path_buf(),
            });
        }
        let mut cur = PathBuf::from("/");
        let comps: Vec<Component> = path.components().collect();
        for (i, c) in comps.iter().enumerate() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                Component::ParentDir => {
                    cur.pop();
                    continue;
                }
                Component::Normal(n) => cur.push(n),
            }
            let md = std::fs::symlink_metadata(&cur).map_err(LayerError::read(&cur))?;
            if md.file_type().is_symlink() {
                self.add_entry(&cur, &md)?;
                let target = std::fs::read_link(&cur).map_err(LayerError::read(&cur))?;
                let base = cur.parent().unwrap_or(Path::new("/")).to_path_buf();
                let mut rest = if target.is_absolute() {
                    target
                } else {
                    base.join(target)
                };
                for later in &comps[i + 1..] {
                    rest.push(later);
                }
                return self.add_resolving(&rest, depth + 1);
            }
            let last = i + 1 == comps.len();
            if last || !md.is_dir() {
                self.add_entry(&cur, &md)?;
            }
        }
        Ok(cur)
    }

    /// Add one entry whose ancestors are real directories, taking their headers from the host.
    fn add_entry(&mut self, path: &Path, md: &std::fs::Metadata) -> Result<(), LayerError> {
        if !self.added.insert(path.to_path_buf()) {
            return Ok(());
        }
        let node = node_for(path, md)?;
        if has_xattrs(path) {
            self.stats.xattrs_dropped += 1;
        }
        if md.is_file() && is_elf(path) {
            self.elf_queue.push_back(path.to_path_buf());
        }
        self.tree.insert_with(path, node, |parent| {
            std::fs::metadata(parent)
                .map(|m| Header::from_metadata(&m))
                .unwrap_or(Header::implicit_dir(0))
        });
        Ok(())
    }

    /// Add a directory tree. Links inside it are kept; a link to a file also brings its target.
    fn add_dir(&mut self, dir: &Path) -> Result<(), LayerError> {
        let mut link_targets = Vec::new();
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| LayerError::ReadSource {
                path: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf()),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            })?;
            let md =
                std::fs::symlink_metadata(entry.path()).map_err(LayerError::read(entry.path()))?;
            self.add_entry(entry.path(), &md)?;
            if md.file_type().is_symlink()
                && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
            {
                link_targets.push(entry.path().to_path_buf());
            }
        }
        for link in link_targets {
            self.add_resolving(&link, 0)?;
        }
        Ok(())
    }

    /// Add the interpreter and every DT_NEEDED library of the queued ELF files, transitively.
    fn follow_elf_deps(&mut self) -> Result<(), LayerError> {
        while let Some(object) = self.elf_queue.pop_front() {
            let deps = read_deps(&object)?;
            if let Some(interp) = &deps.interpreter {
                if std::fs::symlink_metadata(interp).is_err() {
                    return Err(LayerError::LibraryNotFound {
                        library: interp.display().to_string(),
                        needed_by: object,
                    });
                }
                self.add_resolving(interp, 0)?;
            }
            for name in &deps.needed {
                let Some(found) = self.resolver.resolve(name, &object, &deps) else {
                    return Err(LayerError::LibraryNotFound {
                        library: name.clone(),
                        needed_by: object,
                    });
                };
                self.add_resolving(&found, 0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tree::NodeKind;

    #[test]
    fn a_program_brings_its_libraries_and_link_chain() {
        let mut c = HostCollector::new();
        let sh = Path::new("/bin/sh");
        c.add(sh).expect("add /bin/sh");
        let nodes = &c.tree.nodes;
        // the path itself resolves, whatever links it goes through
        let mut p = PathBuf::from("/bin/sh");
        for _ in 0..10 {
            match nodes.get(&p).map(|n| &n.kind) {
                Some(NodeKind::Symlink(t)) => {
                    p = crate::layer::tree::normalize_inside(
                        p.parent().unwrap_or(Path::new("/")),
                        t,
                    )
                    .expect("inside");
                }
                Some(NodeKind::Dir) => panic!("/bin/sh is a dir"),
                Some(_) => break,
                None => {
                    // an intermediate directory link such as /bin -> usr/bin
                    let bin = nodes.get(Path::new("/bin")).map(|n| n.kind.clone());
                    match bin {
                        Some(NodeKind::Symlink(t)) => p = Path::new("/").join(t).join("sh"),
                        other => panic!("{} missing, /bin is {other:?}", p.display()),
                    }
                }
            }
        }
        assert!(
            nodes
                .keys()
                .any(|k| k.to_string_lossy().contains("libc.so")),
            "libc missing"
        );
        assert!(
            nodes
                .keys()
                .any(|k| k.to_string_lossy().contains("ld-linux")),
            "loader missing"
        );
    }

    #[test]
    fn missing_paths_are_reported() {
        let mut c = HostCollector::new();
        let err = c
            .add(Path::new("/definitely/not/here"))
            .expect_err("missing");
        assert!(matches!(err, LayerError::SourceMissing { .. }), "{err}");
    }
}
