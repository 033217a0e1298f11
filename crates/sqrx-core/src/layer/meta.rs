//! What a layer is (its metadata) and how one is built (options and report).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{LayerError, LayerName};

/// An immutable squashfs image in a [`LayerStore`](super::LayerStore).
///
/// Serialized as the layer's metadata file and as `sqrx layer ls --json` (documented in
/// `docs/layers.md`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// The validated name, e.g. `000-base`.
    pub name: LayerName,
    /// `sha256:<hex>` of the image file.
    pub digest: String,
    /// Size of the image file in bytes.
    pub size: u64,
    /// When the layer was stored.
    pub created: DateTime<Utc>,
    /// How the layer was made.
    pub provenance: Provenance,
    /// The compression of its data and metadata blocks.
    pub compression: Compression,
    /// Number of paths whose extended attributes could not be stored (see `docs/layers.md`).
    #[serde(default)]
    pub xattrs_dropped: u64,
    /// Absolute path of the image file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// Where a layer came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Provenance {
    /// Built from a host directory.
    Directory {
        /// The source directory.
        path: PathBuf,
    },
    /// Built from a tar stream.
    Tar {
        /// The archive's path, or `-` for stdin.
        source: String,
    },
    /// Imported as a ready squashfs image (verified before it was stored).
    Image {
        /// The image's path, or `-` for stdin.
        source: String,
    },
    /// Built from host programs and their shared-library closure.
    Host {
        /// The paths asked for.
        paths: Vec<PathBuf>,
    },
    /// Made by `bootstrap` with a preset.
    Bootstrap {
        /// The preset's name (`host`, `debian`).
        preset: String,
    },
    /// Metadata was lost and recovered from the image alone.
    Unknown,
}

/// The compressor of a layer image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (the default; level 3 unless set).
    #[default]
    Zstd,
    /// gzip (zlib), level 9 unless set.
    Gzip,
    /// xz, preset 6 unless set.
    Xz,
    /// lz4 (no levels).
    Lz4,
}

impl Compression {
    /// The lowercase name used in CLI flags and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            "xz" => Ok(Compression::Xz),
            "lz4" => Ok(Compression::Lz4),
            other => Err(LayerError::InvalidOption {
                reason: format!("unknown compression {other:?} (zstd, gzip, xz or lz4)"),
            }),
        }
    }
}

/// Progress of a build: bytes of file data packed so far out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    /// File data bytes read and packed so far.
    pub bytes_done: u64,
    /// Total file data bytes to pack.
    pub bytes_total: u64,
}

/// A callback that receives [`BuildProgress`] as a build goes on.
pub type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// How to build a layer.
#[derive(Clone)]
pub struct BuildOptions {
    /// The compressor (default zstd).
    pub compression: Compression,
    /// The compression level; `None` takes the compressor's default (zstd 3, gzip 9, xz 6).
    pub level: Option<u32>,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB (default 128 KiB).
    pub block_size: u32,
    /// Replace an existing layer of the same name instead of failing.
    pub force: bool,
    /// Called as file data is packed.
    pub progress: Option<ProgressFn>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Zstd,
            level: None,
            block_size: 128 * 1024,
            force: false,
            progress: None,
        }
    }
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("compression", &self.compression)
            .field("level", &self.level)
            .field("block_size", &self.block_size)
            .field("force", &self.force)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildReport {
    /// The stored layer.
    pub layer: Layer,
    /// Number of entries in the image (files, dirs, links, devices; the root included).
    pub entries: u64,
    /// Sum of the regular files' sizes.
    pub file_bytes: u64,
    /// Regular files that were hard links to an earlier file (stored as copies sharing blocks).
    pub hard_links: u64,
    /// Paths whose extended attributes were dropped (backhand writes no xattrs).
    pub xattrs_dropped: u64,
    /// Wall time of the build in milliseconds.
    pub duration_ms: u64,
}
