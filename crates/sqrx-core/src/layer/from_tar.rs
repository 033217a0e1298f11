//! Describing a tar stream (`.tar`, `.tar.gz`, `.tar.zst`) as a layer [`Tree`].
//!
//! File data is copied once into a spool file next to the image being built; the tree points
//! at slices of it, so archives larger than memory work and nothing is extracted to disk with
//! host ownership or device nodes.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::LayerError;
use super::device::squashfs_dev;
use super::tree::{FileData, Header, Node, NodeKind, Tree, clamp_time, normalize_inside};

/// Wrap `reader` in the decompressor its first bytes call for.
fn decompress<'a>(reader: impl Read + 'a, origin: &str) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf().map_err(|source| LayerError::TarRead {
        origin: origin.to_string(),
        source,
    })?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buf))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let dec = zstd::stream::read::Decoder::with_buffer(buf).map_err(|source| {
            LayerError::TarRead {
                origin: origin.to_string(),
                source,
            }
        })?;
        Box::new(dec)
    } else {
        Box::new(buf)
    })
}

/// The path of an entry inside the layer, or why it is refused.
fn entry_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::from("/");
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("it contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(out)
}

fn u32_id(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Read a tar stream into a tree. Regular file data goes to `spool` (at `spool_path`).
pub(crate) fn tree_from_tar(
    reader: impl Read,
    origin: &str,
    spool: &mut File,
    spool_path: &Path,
) -> Result<Tree, LayerError> {
    let tar_err = |source| LayerError::TarRead {
        origin: origin.to_string(),
        source,
    };
    let now = clamp_time(chrono::Utc::now().timestamp());
    let mut tree = Tree::new(Header::implicit_dir(now));
    let spool_path = Arc::new(spool_path.to_path_buf());
    let mut spool_w = BufWriter::with_capacity(1 << 20, &mut *spool);
    let mut spool_len = 0u64;

    let mut archive = tar::Archive::new(decompress(reader, origin)?);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let shown = raw.display().to_string();
        let path = entry_path(&raw).map_err(|reason| LayerError::PathEscapes {
            entry: shown.clone(),
            reason,
        })?;
        let h = entry.header();
        let header = Header {
            mode: (h.mode().map_err(tar_err)? & 0o7777) as u16,
            uid: u32_id(h.uid().map_err(tar_err)?),
            gid: u32_id(h.gid().map_err(tar_err)?),
            mtime: u32_id(h.mtime().map_err(tar_err)?),
        };
        let et = h.entry_type();
        let dev = || -> Result<u32, LayerError> {
            let major = h.device_major().map_err(tar_err)?.unwrap_or(0);
            let minor = h.device_minor().map_err(tar_err)?.unwrap_or(0);
            Ok(squashfs_dev(u64::from(major), u64::from(minor)))
        };
        let link_name = || -> Result<PathBuf, LayerError> {
            entry
                .link_name()
                .map_err(tar_err)?
                .map(|l| l.into_owned())
                .ok_or_else(|| LayerError::UnsupportedEntry {
                    entry: shown.clone(),
                    kind: "link without target".into(),
                })
        };
        let kind = match et {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let offset = spool_len;
                let copied = std::io::copy(&mut entry, &mut spool_w).map_err(tar_err)?;
                spool_len += copied;
                NodeKind::File {
                    data: FileData::Slice {
                        file: Arc::clone(&spool_path),
                        offset,
                        len: copied,
                    },
                    size: copied,
                }
            }
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Symlink => {
                let target = link_name()?;
                let parent = path.parent().unwrap_or(Path::new("/"));
                // Absolute targets are resolved inside the sandbox root, so only a relative
                // target that climbs above the root can point out of the layer.
                if target.as_os_str().is_empty()
                    || (!target.is_absolute() && normalize_inside(parent, &target).is_none())
                {
                    return Err(LayerError::PathEscapes {
                        entry: shown,
                        reason: "its symlink target climbs above the root",
                    });
                }
                NodeKind::Symlink(target)
            }
            tar::EntryType::Link => {
                let target_raw = link_name()?;
                let target = entry_path(&target_raw).map_err(|reason| LayerError::PathEscapes {
                    entry: shown.clone(),
                    reason: if reason.contains("..") {
                        "its hard link target contains '..'"
                    } else {
                        "its hard link target is absolute"
                    },
                })?;
                match tree.get(&target) {
                    Some(Node {
                        kind: kind @ NodeKind::File { .. },
                        ..
                    }) => kind.clone(),
                    _ => {
                        return Err(LayerError::BadHardLink {
                            entry: shown,
                            target: target_raw.display().to_string(),
                        });
                    }
                }
            }
            // Only overlay whiteouts (char 0/0): a layer never brings a device node.
            tar::EntryType::Char if dev()? == 0 => NodeKind::CharDevice(0),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(LayerError::UnsupportedEntry {
                    entry: shown,
                    kind: "device node; layers may hold overlay whiteouts (char 0/0) only".into(),
                });
            }
            tar::EntryType::Fifo => NodeKind::Fifo,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(LayerError::UnsupportedEntry {
                    entry: shown,
                    kind: format!("{other:?}"),
                });
            }
        };
        tree.insert(&path, Node { header, kind }, now);
    }
    spool_w
        .flush()
        .map_err(LayerError::store("write", spool_path.as_path()))?;
    drop(spool_w);
    spool
        .sync_data()
        .map_err(LayerError::store("sync", spool_path.as_path()))?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        assert_eq!(
            entry_path(Path::new("./etc/passwd")),
            Ok(PathBuf::from("/etc/passwd"))
        );
        assert_eq!(entry_path(Path::new("bin/")), Ok(PathBuf::from("/bin")));
        assert_eq!(entry_path(Path::new("./")), Ok(PathBuf::from("/")));
        assert!(entry_path(Path::new("../x")).is_err());
        assert!(entry_path(Path::new("a/../../x")).is_err());
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
    }
}
