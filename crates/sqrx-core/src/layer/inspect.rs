//! Reading a squashfs image's structure: checked header, then a full directory walk.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use backhand::{FilesystemReader, InnerNode};

use super::LayerError;

/// The squashfs superblock is 96 bytes.
const SUPERBLOCK_LEN: usize = 96;

/// What an image holds, as shown by `sqrx layer inspect --json` (documented in `docs/layers.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// Size of the image file in bytes.
    pub size: u64,
    /// Bytes of the image used by the filesystem (the rest is padding).
    pub bytes_used: u64,
    /// The compressor name (`zstd`, `gzip`, `xz`, `lz4`, `lzo`, `lzma`, `none`).
    pub compression: String,
    /// Data block size in bytes.
    pub block_size: u32,
    /// Inode count recorded in the superblock.
    pub inodes: u32,
    /// Regular files.
    pub files: u64,
    /// Directories, the root included.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Character and block devices (overlay whiteouts are character devices 0/0).
    pub devices: u64,
    /// Device nodes that are not overlay whiteouts (char 0/0): imports refuse them.
    pub device_nodes: u64,
    /// FIFOs and sockets.
    pub other: u64,
    /// Sum of the regular files' sizes.
    pub uncompressed_bytes: u64,
    /// The image's modification time (Unix seconds).
    pub mod_time: u32,
}

/// Check the superblock by hand before the image reaches backhand, so the common corruptions
/// (truncation, wrong magic, bad sizes) get a precise message.
fn check_superblock(path: &Path, file: &mut File, len: u64) -> Result<(u64, u16), LayerError> {
    let corrupt = |reason: String| LayerError::CorruptImage {
        path: path.to_path_buf(),
        reason,
    };
    if len < SUPERBLOCK_LEN as u64 {
        return Err(corrupt(format!(
            "only {len} bytes, shorter than a superblock"
        )));
    }
    let mut sb = [0u8; SUPERBLOCK_LEN];
    file.read_exact(&mut sb).map_err(LayerError::read(path))?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(b)
    };
    if &sb[0..4] != b"hsqs" {
        return Err(corrupt("bad magic: not a squashfs image".into()));
    }
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return Err(corrupt(format!(
            "unsupported squashfs version {major}.{minor}"
        )));
    }
    let block_size = u32_at(12);
    let block_log = u16_at(22);
    if !(4096..=1 << 20).contains(&block_size)
        || !block_size.is_power_of_two()
        || u32::from(block_log) != block_size.trailing_zeros()
    {
        return Err(corrupt(format!(
            "invalid block size {block_size} (log {block_log})"
        )));
    }
    let compressor = u16_at(20);
    if !(1..=6).contains(&compressor) {
        return Err(corrupt(format!("unknown compressor id {compressor}")));
    }
    let bytes_used = u64_at(40);
    if bytes_used > len {
        return Err(corrupt(format!(
            "truncated: superblock says {bytes_used} bytes, file has {len}"
        )));
    }
    for (name, off) in [("id", 48), ("inode", 64), ("directory", 72)] {
        let table = u64_at(off);
        if table >= bytes_used {
            return Err(corrupt(format!(
                "{name} table offset {table} beyond the image ({bytes_used} bytes)"
            )));
        }
    }
    Ok((bytes_used, compressor))
}

fn compressor_name(id: u16) -> &'static str {
    match id {
        1 => "gzip",
        2 => "lzma",
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        _ => "none",
    }
}

/// Run a backhand call, turning both its errors and any panic on hostile input into
/// [`LayerError::CorruptImage`]. backhand is a parser of untrusted bytes; a bug there must not
/// take the host process down.
pub(crate) fn guarded<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, LayerError> {
    let corrupt = |reason: String| LayerError::CorruptImage {
        path: path.to_path_buf(),
        reason,
    };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(reason)) => Err(corrupt(reason)),
        Err(_) => Err(corrupt(
            "the squashfs reader rejected the image (internal panic)".into(),
        )),
    }
}

/// Open an image, check its header and load its directory tree.
pub(crate) fn open_image(
    path: &Path,
) -> Result<(FilesystemReader<'static>, u64, u64, u16), LayerError> {
    let mut file = File::open(path).map_err(LayerError::read(path))?;
    let len = file.metadata().map_err(LayerError::read(path))?.len();
    let (bytes_used, compressor) = check_superblock(path, &mut file, len)?;
    file.seek(SeekFrom::Start(0))
        .map_err(LayerError::read(path))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    let fs = guarded(path, || {
        FilesystemReader::from_reader(reader).map_err(|e| e.to_string())
    })?;
    Ok((fs, len, bytes_used, compressor))
}

/// Inspect the squashfs image at `path` without reading file data.
pub fn inspect_image(path: &Path) -> Result<Inspection, LayerError> {
    let (fs, size, bytes_used, compressor) = open_image(path)?;
    let mut out = Inspection {
        size,
        bytes_used,
        compression: compressor_name(compressor).to_string(),
        block_size: fs.block_size,
        inodes: 0,
        files: 0,
        directories: 0,
        symlinks: 0,
        devices: 0,
        device_nodes: 0,
        other: 0,
        uncompressed_bytes: 0,
        mod_time: fs.mod_time,
    };
    for node in fs.files() {
        match &node.inner {
            InnerNode::File(f) => {
                out.files += 1;
                out.uncompressed_bytes += f.file_len() as u64;
            }
            InnerNode::Dir(_) => out.directories += 1,
            InnerNode::Symlink(_) => out.symlinks += 1,
            InnerNode::CharacterDevice(d) => {
                out.devices += 1;
                if d.device_number != 0 {
                    out.device_nodes += 1;
                }
            }
            InnerNode::BlockDevice(_) => {
                out.devices += 1;
                out.device_nodes += 1;
            }
            InnerNode::NamedPipe | InnerNode::Socket => out.other += 1,
        }
    }
    out.inodes = u32::try_from(fs.files().count()).unwrap_or(u32::MAX);
    Ok(out)
}
