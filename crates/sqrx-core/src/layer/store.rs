//! The layer store: `<data_dir>/layers/NAME.sqfs` plus `NAME.json` metadata.
//!
//! Every write goes to a private staging directory under `layers/.tmp/`, is fsynced, and is
//! published with a hard link (which fails if the name was taken meanwhile) or, with `force`,
//! a rename. Readers therefore never see a partial image, and several processes may share one
//! store.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::bootstrap::{BootstrapPreset, debootstrap, e2b_tree, host_tree};
use super::from_dir::{DirStats, tree_from_dir};
use super::from_host::HostCollector;
use super::from_tar::tree_from_tar;
use super::inspect::{Inspection, inspect_image};
use super::meta::{BuildOptions, BuildReport, Compression, Layer, Provenance};
use super::pack::{check_options, pack};
use super::tree::Tree;
use super::verify::{Verification, verify_image};
use super::{LayerError, LayerName};

const IMAGE_EXT: &str = "sqfs";
const META_EXT: &str = "json";

/// The name of the default base layer.
pub const BASE_LAYER: &str = "000-base";

/// `sha256:<hex>` of a file's content.
pub(crate) fn digest_file(path: &Path) -> Result<String, LayerError> {
    let file = File::open(path).map_err(LayerError::read(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(LayerError::read(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn compression_from_name(name: &str) -> Compression {
    name.parse().unwrap_or_default()
}

/// Write a squashfs image of `dir` to `image` without a store: no name, no digest, no
/// metadata. Returns the image size. The same packing as [`LayerStore::build_from_dir`].
pub fn pack_dir(dir: &Path, image: &Path, opts: &BuildOptions) -> Result<u64, LayerError> {
    check_options(opts)?;
    let (tree, stats) = tree_from_dir(dir)?;
    if stats.xattrs_dropped > 0 {
        tracing::warn!(
            paths = stats.xattrs_dropped,
            "extended attributes are not stored in layers"
        );
    }
    let mut file = File::create(image).map_err(LayerError::store("create", image))?;
    pack(&tree, opts, &mut file, &image.display().to_string())
}

/// A directory of layers. Cheap to clone and safe to share between processes.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// Open (creating if needed) the store under `data_dir/layers`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, LayerError> {
        let data_dir = data_dir.as_ref();
        crate::paths::private_dir(data_dir).map_err(LayerError::store("create", data_dir))?;
        let dir = data_dir.join("layers");
        let tmp = dir.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(LayerError::store("create", &tmp))?;
        Ok(LayerStore { dir })
    }

    /// The directory holding the images.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image of `name` lives (whether or not it exists).
    pub fn image_path(&self, name: &LayerName) -> PathBuf {
        self.dir.join(format!("{name}.{IMAGE_EXT}"))
    }

    fn meta_path(&self, name: &LayerName) -> PathBuf {
        self.dir.join(format!("{name}.{META_EXT}"))
    }

    /// Is there a layer called `name`?
    pub fn contains(&self, name: &LayerName) -> bool {
        self.image_path(name).is_file()
    }

    /// Every layer, ordered by name (so base layers come first).
    pub fn list(&self) -> Result<Vec<Layer>, LayerError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(LayerError::store("read", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(LayerError::store("read", &self.dir))?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".sqfs")) else {
                continue;
            };
            let Ok(name) = LayerName::new(stem) else {
                tracing::warn!(file = %entry.path().display(), "ignoring image with an invalid layer name");
                continue;
            };
            match self.get(&name) {
                Ok(layer) => out.push(layer),
                // Removed by another process between read_dir and get.
                Err(LayerError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The layer called `name`.
    pub fn get(&self, name: &LayerName) -> Result<Layer, LayerError> {
        let image = self.image_path(name);
        let md = match std::fs::metadata(&image) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LayerError::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => {
                return Err(LayerError::Store {
                    op: "stat",
                    path: image,
                    source: e,
                });
            }
        };
        let meta_path = self.meta_path(name);
        match std::fs::read(&meta_path) {
            Ok(bytes) => {
                let mut layer: Layer =
                    serde_json::from_slice(&bytes).map_err(|source| LayerError::BadMetadata {
                        path: meta_path,
                        source,
                    })?;
                layer.path = image;
                Ok(layer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The image was published but its metadata was lost: rebuild what the image says.
                tracing::warn!(layer = %name, "metadata missing; recovering it from the image");
                let inspection = inspect_image(&image)?;
                Ok(Layer {
                    name: name.clone(),
                    digest: digest_file(&image)?,
                    size: md.len(),
                    created: md
                        .modified()
                        .map(Into::into)
                        .unwrap_or_else(|_| chrono::Utc::now()),
                    provenance: Provenance::Unknown,
                    compression: compression_from_name(&inspection.compression),
                    xattrs_dropped: 0,
                    path: image,
                })
            }
            Err(e) => Err(LayerError::Store {
                op: "read",
                path: meta_path,
                source: e,
            }),
        }
    }

    fn refuse_existing(&self, name: &LayerName, opts: &BuildOptions) -> Result<(), LayerError> {
        if !opts.force && self.contains(name) {
            return Err(LayerError::AlreadyExists {
                name: name.to_string(),
            });
        }
        check_options(opts)
    }

    fn staging(&self) -> Result<tempfile::TempDir, LayerError> {
        let tmp = self.dir.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(LayerError::store("create", &tmp))?;
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&tmp)
            .map_err(LayerError::store("create", &tmp))
    }

    /// Pack `tree` into the staging dir and publish it as `name`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a private step shared by every builder"
    )]
    fn publish_tree(
        &self,
        name: &LayerName,
        tree: &Tree,
        staging: &Path,
        provenance: Provenance,
        stats: DirStats,
        opts: &BuildOptions,
        started: Instant,
    ) -> Result<BuildReport, LayerError> {
        let image_tmp = staging.join("image.sqfs");
        let mut file = crate::paths::create_private(&image_tmp)
            .map_err(LayerError::store("create", &image_tmp))?;
        pack(tree, opts, &mut file, name.as_str())?;
        // Hash the image (from the page cache) while it is flushed to disk.
        let (digest, synced) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| digest_file(&image_tmp));
            let synced = file.sync_all();
            let digest = hashing.join().unwrap_or_else(|_| {
                Err(LayerError::Store {
                    op: "hash",
                    path: image_tmp.clone(),
                    source: std::io::Error::other("hashing thread panicked"),
                })
            });
            (digest, synced)
        });
        synced.map_err(LayerError::store("sync", &image_tmp))?;
        let digest = digest?;
        drop(file);
        if stats.xattrs_dropped > 0 {
            tracing::warn!(
                layer = %name,
                paths = stats.xattrs_dropped,
                "extended attributes are not stored in layers (backhand writes none); dropped them"
            );
        }
        let layer = self.publish_image(
            name,
            digest,
            &image_tmp,
            staging,
            provenance,
            opts.compression,
            stats.xattrs_dropped,
            opts.force,
        )?;
        Ok(BuildReport {
            entries: tree.nodes.len() as u64 + 1,
            file_bytes: tree.file_bytes(),
            hard_links: stats.hard_links,
            xattrs_dropped: stats.xattrs_dropped,
            duration_ms: started.elapsed().as_millis() as u64,
            layer,
        })
    }

    /// Write metadata for a finished image in `staging` and move both into place.
    #[allow(
        clippy::too_many_arguments,
        reason = "a private step with one caller per kind of import"
    )]
    fn publish_image(
        &self,
        name: &LayerName,
        digest: String,
        image_tmp: &Path,
        staging: &Path,
        provenance: Provenance,
        compression: Compression,
        xattrs_dropped: u64,
        force: bool,
    ) -> Result<Layer, LayerError> {
        let size = std::fs::metadata(image_tmp)
            .map_err(LayerError::store("stat", image_tmp))?
            .len();
        let layer = Layer {
            name: name.clone(),
            digest,
            size,
            created: chrono::Utc::now(),
            provenance,
            compression,
            xattrs_dropped,
            path: self.image_path(name),
        };
        let meta_tmp = staging.join("meta.json");
        let json = serde_json::to_vec_pretty(&layer).map_err(|source| LayerError::BadMetadata {
            path: meta_tmp.clone(),
            source,
        })?;
        let mut f = crate::paths::create_private(&meta_tmp)
            .map_err(LayerError::store("create", &meta_tmp))?;
        f.write_all(&json)
            .map_err(LayerError::store("write", &meta_tmp))?;
        f.sync_all().map_err(LayerError::store("sync", &meta_tmp))?;

        let image = self.image_path(name);
        if force {
            std::fs::rename(image_tmp, &image).map_err(LayerError::store("rename", &image))?;
        } else {
            match std::fs::hard_link(image_tmp, &image) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(LayerError::AlreadyExists {
                        name: name.to_string(),
                    });
                }
                Err(e) => {
                    return Err(LayerError::Store {
                        op: "link",
                        path: image,
                        source: e,
                    });
                }
            }
        }
        let meta = self.meta_path(name);
        std::fs::rename(&meta_tmp, &meta).map_err(LayerError::store("rename", &meta))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(LayerError::store("sync", &self.dir))?;
        tracing::info!(layer = %name, size, digest = %layer.digest, "layer stored");
        Ok(layer)
    }

    /// Build `name` from the host directory `dir`.
    pub fn build_from_dir(
        &self,
        name: &LayerName,
        dir: &Path,
        opts: &BuildOptions,
    ) -> Result<BuildReport, LayerError> {
        let started = Instant::now();
        self.refuse_existing(name, opts)?;
        let (tree, stats) = tree_from_dir(dir)?;
        let staging = self.staging()?;
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.publish_tree(
            name,
            &tree,
            staging.path(),
            Provenance::Directory { path: abs },
            stats,
            opts,
            started,
        )
    }

    /// Build `name` from a tar stream (plain, gzip or zstd; detected from its first bytes).
    /// `origin` names the stream in errors and provenance (a path, or `-`).
    pub fn import_tar(
        &self,
        name: &LayerName,
        reader: impl Read,
        origin: &str,
        opts: &BuildOptions,
    ) -> Result<BuildReport, LayerError> {
        let started = Instant::now();
        self.refuse_existing(name, opts)?;
        let staging = self.staging()?;
        let spool_path = staging.path().join("spool");
        let mut spool =
            File::create(&spool_path).map_err(LayerError::store("create", &spool_path))?;
        let tree = tree_from_tar(reader, origin, &mut spool, &spool_path)?;
        let provenance = Provenance::Tar {
            source: origin.to_string(),
        };
        self.publish_tree(
            name,
            &tree,
            staging.path(),
            provenance,
            DirStats::default(),
            opts,
            started,
        )
    }

    /// Store an existing squashfs image read from `reader` as `name`, after verifying it.
    pub fn import_image(
        &self,
        name: &LayerName,
        mut reader: impl Read,
        origin: &str,
        force: bool,
    ) -> Result<Layer, LayerError> {
        if !force && self.contains(name) {
            return Err(LayerError::AlreadyExists {
                name: name.to_string(),
            });
        }
        let staging = self.staging()?;
        let image_tmp = staging.path().join("image.sqfs");
        let mut f = crate::paths::create_private(&image_tmp)
            .map_err(LayerError::store("create", &image_tmp))?;
        std::io::copy(&mut reader, &mut f).map_err(|source| LayerError::ReadSource {
            path: PathBuf::from(origin),
            source,
        })?;
        f.sync_all()
            .map_err(LayerError::store("sync", &image_tmp))?;
        drop(f);
        let verified = verify_image(&image_tmp)?;
        let inspection = inspect_image(&image_tmp)?;
        if inspection.device_nodes > 0 {
            return Err(LayerError::CorruptImage {
                path: PathBuf::from(origin),
                reason: format!(
                    "it holds {} device node(s); layers may hold overlay whiteouts (char 0/0) only",
                    inspection.device_nodes
                ),
            });
        }
        let compression = compression_from_name(&inspection.compression);
        let provenance = Provenance::Image {
            source: origin.to_string(),
        };
        self.publish_image(
            name,
            verified.digest,
            &image_tmp,
            staging.path(),
            provenance,
            compression,
            0,
            force,
        )
    }

    /// Build `name` from host programs, files and directories plus the shared libraries every
    /// ELF file among them needs.
    pub fn from_host(
        &self,
        name: &LayerName,
        paths: &[PathBuf],
        opts: &BuildOptions,
    ) -> Result<BuildReport, LayerError> {
        let started = Instant::now();
        self.refuse_existing(name, opts)?;
        let mut collector = HostCollector::new();
        for p in paths {
            collector.add(p)?;
        }
        let staging = self.staging()?;
        let provenance = Provenance::Host {
            paths: paths.to_vec(),
        };
        self.publish_tree(
            name,
            &collector.tree,
            staging.path(),
            provenance,
            collector.stats,
            opts,
            started,
        )
    }

    /// Make the layer of `preset`: the default base layer `000-base`, or `010-e2b`.
    pub fn bootstrap(
        &self,
        preset: &BootstrapPreset,
        opts: &BuildOptions,
    ) -> Result<BuildReport, LayerError> {
        let started = Instant::now();
        let name = LayerName::new(preset.layer_name())?;
        self.refuse_existing(&name, opts)?;
        let staging = self.staging()?;
        let provenance = Provenance::Bootstrap {
            preset: preset.name().to_string(),
        };
        match preset {
            BootstrapPreset::Host | BootstrapPreset::E2b => {
                let (tree, _) = if *preset == BootstrapPreset::E2b {
                    e2b_tree()?
                } else {
                    host_tree()?
                };
                self.publish_tree(
                    &name,
                    &tree,
                    staging.path(),
                    provenance,
                    DirStats::default(),
                    opts,
                    started,
                )
            }
            BootstrapPreset::Debian { suite, mirror } => {
                let root = staging.path().join("rootfs");
                debootstrap(suite, mirror.as_deref(), &root)?;
                let (tree, stats) = tree_from_dir(&root)?;
                self.publish_tree(
                    &name,
                    &tree,
                    staging.path(),
                    provenance,
                    stats,
                    opts,
                    started,
                )
            }
        }
    }

    /// The base layer, made with the host preset if the store has none yet.
    pub fn ensure_base(&self) -> Result<Layer, LayerError> {
        self.ensure_preset(&BootstrapPreset::Host)
    }

    /// The layer of `preset` ([`BootstrapPreset::layer_name`]), made if the store has none yet.
    pub fn ensure_preset(&self, preset: &BootstrapPreset) -> Result<Layer, LayerError> {
        let name = LayerName::new(preset.layer_name())?;
        match self.get(&name) {
            Ok(layer) => Ok(layer),
            Err(LayerError::NotFound { .. }) => {
                match self.bootstrap(preset, &BuildOptions::default()) {
                    Ok(report) => Ok(report.layer),
                    // Another process made it first.
                    Err(LayerError::AlreadyExists { .. }) => self.get(&name),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Inspect the image of `name`.
    pub fn inspect(&self, name: &LayerName) -> Result<Inspection, LayerError> {
        let layer = self.get(name)?;
        inspect_image(&layer.path)
    }

    /// Verify `name`: the digest matches the one recorded at build time and every inode and
    /// block reads back.
    pub fn verify(&self, name: &LayerName) -> Result<Verification, LayerError> {
        let layer = self.get(name)?;
        let actual = digest_file(&layer.path)?;
        if actual != layer.digest {
            return Err(LayerError::DigestMismatch {
                name: name.to_string(),
                expected: layer.digest,
                actual,
            });
        }
        verify_image(&layer.path)
    }

    /// Remove `name` from the store. This does not know about sandboxes: use
    /// [`crate::Runtime::remove_layer`], which refuses while a sandbox uses the layer.
    pub fn remove(&self, name: &LayerName) -> Result<(), LayerError> {
        let image = self.image_path(name);
        match std::fs::remove_file(&image) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LayerError::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => {
                return Err(LayerError::Store {
                    op: "remove",
                    path: image,
                    source: e,
                });
            }
        }
        let meta = self.meta_path(name);
        match std::fs::remove_file(&meta) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LayerError::Store {
                op: "remove",
                path: meta,
                source: e,
            }),
        }
    }
}
