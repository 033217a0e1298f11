//! Layers: immutable squashfs images, their builders and the store that keeps them.
//!
//! A layer is written and read in-process with `backhand`; nothing shells out to
//! squashfs-tools. See `docs/layers.md` for the model, naming and on-disk layout.

mod bootstrap;
mod compress_ahead;
mod device;
mod elf;
mod error;
mod from_dir;
mod from_host;
mod from_tar;
mod from_upper;
mod inspect;
mod merge;
mod meta;
mod name;
mod pack;
mod store;
mod tree;
mod verify;

pub use bootstrap::{BootstrapPreset, E2B_LAYER, E2B_USER};
pub use error::LayerError;
pub(crate) use from_upper::pack_upper;
pub use inspect::{Inspection, inspect_image};
pub(crate) use merge::merge_layers;
pub use meta::{BuildOptions, BuildProgress, BuildReport, Compression, Layer, Provenance};
pub use name::LayerName;
pub(crate) use store::digest_file;
pub use store::{BASE_LAYER, LayerStore, pack_dir};
pub use verify::{Verification, verify_image};
