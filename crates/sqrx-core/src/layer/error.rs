//! Errors of the layer module.

use std::path::PathBuf;

use crate::kind::{ErrorKind, io_kind};

/// What can go wrong while building, storing or reading layers.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer name breaks the naming rule.
    #[error("invalid layer name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No layer with this name is in the store.
    #[error("layer {name} not found")]
    NotFound {
        /// The missing layer.
        name: String,
    },
    /// A layer with this name is already in the store.
    #[error("layer {name} already exists (use --force to replace it)")]
    AlreadyExists {
        /// The existing layer.
        name: String,
    },
    /// A build option is out of range.
    #[error("invalid build option: {reason}")]
    InvalidOption {
        /// Why.
        reason: String,
    },
    /// The source to build from does not exist.
    #[error("source {path} does not exist")]
    SourceMissing {
        /// The missing path.
        path: PathBuf,
    },
    /// The source to build from is not a directory.
    #[error("source {path} is not a directory")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// Reading the source tree failed.
    #[error("cannot read {path}: {source}")]
    ReadSource {
        /// The path being read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tar archive could not be read.
    #[error("cannot read tar archive {origin}: {source}")]
    TarRead {
        /// Where the archive came from (a path, or `-`).
        origin: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tar entry would land outside the layer root.
    #[error("tar entry {entry:?} escapes the layer root: {reason}")]
    PathEscapes {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A tar entry of a kind sqrx cannot store.
    #[error("tar entry {entry:?} has an unsupported type ({kind})")]
    UnsupportedEntry {
        /// The entry's path.
        entry: String,
        /// Its type.
        kind: String,
    },
    /// A hard link in a tar points at something that is not an earlier regular file.
    #[error("tar hard link {entry:?} points at {target:?}, which is not an earlier regular file")]
    BadHardLink {
        /// The link entry.
        entry: String,
        /// Its target.
        target: String,
    },
    /// An ELF file could not be parsed while following shared libraries.
    #[error("cannot parse ELF file {path}: {reason}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What goblin reported.
        reason: String,
    },
    /// A shared library needed by a program was not found on the host.
    #[error("shared library {library} needed by {needed_by} not found on this host")]
    LibraryNotFound {
        /// The DT_NEEDED name.
        library: String,
        /// The program or library that needs it.
        needed_by: PathBuf,
    },
    /// Too many symbolic links while resolving a host path.
    #[error("too many levels of symbolic links resolving {path}")]
    SymlinkLoop {
        /// The path being resolved.
        path: PathBuf,
    },
    /// No host program for the base layer's shell was found.
    #[error("no POSIX shell found on this host (looked for {looked_for})")]
    NoShell {
        /// Where it looked.
        looked_for: String,
    },
    /// A program the e2b preset copies from the host is missing.
    #[error(
        "the e2b preset copies {program} from this host, which has none: install it \
         (apt-get install {package})"
    )]
    PresetProgramMissing {
        /// The program.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// `debootstrap` is not installed.
    #[error("the debian preset needs debootstrap: install it (apt-get install debootstrap)")]
    NoDebootstrap,
    /// `debootstrap` failed.
    #[error("debootstrap failed ({status}): {stderr}")]
    Debootstrap {
        /// Its exit status.
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },
    /// Writing the squashfs image failed.
    #[error("cannot write squashfs image for {name}: {source}")]
    Pack {
        /// The layer being written.
        name: String,
        /// What backhand reported.
        #[source]
        source: backhand::BackhandError,
    },
    /// A file operation on the layer store failed.
    #[error("cannot {op} {path}: {source}")]
    Store {
        /// The operation (`create`, `rename`, ...).
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A layer's metadata file is unreadable.
    #[error("layer metadata {path} is invalid: {source}")]
    BadMetadata {
        /// The metadata file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The image is not a readable squashfs 4.0 image.
    #[error("corrupt squashfs image {path}: {reason}")]
    CorruptImage {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The image's content digest is not the one recorded when it was stored.
    #[error("layer {name} digest mismatch: recorded {expected}, image has {actual}")]
    DigestMismatch {
        /// The layer.
        name: String,
        /// The digest recorded at build time.
        expected: String,
        /// The digest of the image now.
        actual: String,
    },
}

impl LayerError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LayerError::InvalidName { .. }
            | LayerError::InvalidOption { .. }
            | LayerError::NotADirectory { .. }
            | LayerError::TarRead { .. }
            | LayerError::PathEscapes { .. }
            | LayerError::UnsupportedEntry { .. }
            | LayerError::BadHardLink { .. }
            | LayerError::Elf { .. }
            | LayerError::SymlinkLoop { .. }
            | LayerError::CorruptImage { .. }
            | LayerError::DigestMismatch { .. } => ErrorKind::InvalidArgument,
            LayerError::NotFound { .. }
            | LayerError::SourceMissing { .. }
            | LayerError::LibraryNotFound { .. } => ErrorKind::NotFound,
            LayerError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            LayerError::NoShell { .. }
            | LayerError::NoDebootstrap
            | LayerError::PresetProgramMissing { .. } => ErrorKind::Unavailable,
            LayerError::ReadSource { source, .. } | LayerError::Store { source, .. } => {
                io_kind(source)
            }
            LayerError::Pack {
                source: backhand::BackhandError::StdIo(source),
                ..
            } => io_kind(source),
            LayerError::Pack { .. }
            | LayerError::BadMetadata { .. }
            | LayerError::Debootstrap { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn store(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LayerError::Store { op, path, source }
    }

    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LayerError::ReadSource { path, source }
    }
}
