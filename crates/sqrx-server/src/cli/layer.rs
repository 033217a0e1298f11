//! `sqrx layer ...`: building, importing, listing, inspecting, verifying and removing layers;
//! their copies in S3 are [`super::remote`]'s.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use sqrx_core::{BootstrapPreset, BuildOptions, BuildReport, Compression, LayerName, LayerStore};

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// Layer commands.
#[derive(Debug, Subcommand)]
pub enum LayerCmd {
    /// Build a layer from a directory.
    Build {
        /// The source directory.
        dir: PathBuf,
        /// The layer name (NNN-name, e.g. 100-tools).
        name: String,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Import a tar (.tar, .tar.gz, .tar.zst) or a squashfs image; `-` reads stdin.
    Import {
        /// The archive or image, or `-` for stdin.
        tar: String,
        /// The layer name.
        name: String,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Build a layer from host programs, files or directories plus their shared libraries.
    FromHost {
        /// The layer name.
        name: String,
        /// Programs, files or directories on this host.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Make the default base layer 000-base (or, with --preset e2b, 010-e2b).
    Bootstrap {
        /// host: the host's own shell and tools (offline); debian: debootstrap minbase; e2b:
        /// E2B's base image on top of 000-base (user `user`, sudo, python3; offline).
        #[arg(long, value_enum, default_value_t = Preset::Host)]
        preset: Preset,
        /// Debian release for the debian preset.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// Package mirror for the debian preset (debootstrap's default otherwise).
        #[arg(long)]
        mirror: Option<String>,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// List layers.
    Ls {
        /// Print JSON (an array of layers).
        #[arg(long)]
        json: bool,
        /// List the layers in the bucket (SQRX_S3_BUCKET) instead.
        #[arg(long)]
        remote: bool,
    },
    /// Upload layers to the bucket (SQRX_S3_BUCKET, SQRX_S3_ENDPOINT, ...; AWS credentials):
    /// each image once per digest, resuming an interrupted upload.
    Push {
        /// The layer names.
        names: Vec<String>,
        /// Every local layer.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download layers from the bucket, verified against their digests.
    Pull {
        /// The layer names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Replace a local layer of the same name that is another image.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where each layer and snapshot stands in its way to the bucket (pushed in the
    /// background by `sqrx serve` on this data directory, retried with backoff).
    Uploads {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Push the layers the bucket lacks and pull the ones this store lacks.
    Sync {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what an image holds.
    Inspect {
        /// The layer name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the digest and read back every inode and block.
    Verify {
        /// The layer name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a layer.
    Rm {
        /// The layer name.
        name: String,
    },
}

/// Bootstrap presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The host's own programs and their libraries.
    Host,
    /// debootstrap --variant=minbase.
    Debian,
    /// The layer 010-e2b: E2B's `base` image over 000-base (user `user`, sudo, python3).
    E2b,
}

/// Options shared by every command that writes a layer.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Replace an existing layer of the same name.
    #[arg(long)]
    force: bool,
    /// Compressor: zstd, gzip, xz or lz4.
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// Compression level (zstd 1-22, gzip 1-9, xz 0-9).
    #[arg(long)]
    level: Option<u32>,
    /// Data block size in bytes (power of two, 4096-1048576).
    #[arg(long, default_value_t = 128 * 1024)]
    block_size: u32,
    /// Print the build report as JSON.
    #[arg(long)]
    json: bool,
    /// With a bucket (SQRX_S3_BUCKET): push the layer before returning. Without it the layer
    /// is queued, and `sqrx serve` on this data directory pushes it in the background.
    #[arg(long)]
    sync: bool,
}

impl BuildArgs {
    fn options(&self) -> Result<(BuildOptions, Option<indicatif::ProgressBar>), CliError> {
        if self.sync {
            // Before building: `--sync` without a bucket is a mistake, not a half success.
            crate::cli::remote::config()?;
        }
        let compression: Compression = self.compression.parse()?;
        let mut opts = BuildOptions {
            compression,
            level: self.level,
            block_size: self.block_size,
            force: self.force,
            progress: None,
        };
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} packing [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        if let Some(bar) = &bar {
            let bar = bar.clone();
            opts.progress = Some(Arc::new(move |p: sqrx_core::BuildProgress| {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
            }));
        }
        Ok((opts, bar))
    }
}

fn name(s: &str) -> Result<LayerName, CliError> {
    Ok(LayerName::new(s)?)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn report(
    r: &BuildReport,
    json: bool,
    bar: Option<indicatif::ProgressBar>,
) -> Result<(), CliError> {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if r.xattrs_dropped > 0 {
        eprintln!(
            "warning: {} path(s) had extended attributes; layers do not store xattrs (see docs/layers.md)",
            r.xattrs_dropped
        );
    }
    if json {
        return print_json(r);
    }
    println!(
        "{}: {} entries, {} of files -> {} image ({}) in {} ms, {}",
        r.layer.name,
        r.entries,
        mb(r.file_bytes),
        mb(r.layer.size),
        r.layer.compression,
        r.duration_ms,
        r.layer.digest
    );
    Ok(())
}

/// Open a tar or squashfs source, telling which it is from its first bytes.
fn open_source(src: &str) -> Result<(Box<dyn BufRead>, bool), CliError> {
    let reader: Box<dyn Read> = if src == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(src).map_err(|e| CliError(format!("cannot open {src}: {e}")))?;
        Box::new(f)
    };
    let mut buf: Box<dyn BufRead> = Box::new(BufReader::with_capacity(1 << 16, reader));
    let head = buf
        .fill_buf()
        .map_err(|e| CliError(format!("cannot read {src}: {e}")))?;
    let is_squashfs = head.starts_with(b"hsqs");
    Ok((buf, is_squashfs))
}

/// Run a layer command against the store in `data_dir`.
pub fn run(cmd: LayerCmd, data_dir: &Path) -> Result<(), CliError> {
    let store = LayerStore::open(data_dir)?;
    match cmd {
        LayerCmd::Build {
            dir,
            name: n,
            build,
        } => {
            let n = name(&n)?;
            let (opts, bar) = build.options()?;
            let r = store.build_from_dir(&n, &dir, &opts)?;
            report(&r, build.json, bar)?;
            crate::cli::remote::after_build(data_dir, &store, &r.layer, build.sync)
        }
        LayerCmd::Import {
            tar,
            name: n,
            build,
        } => {
            let n = name(&n)?;
            let (opts, bar) = build.options()?;
            let (reader, is_squashfs) = open_source(&tar)?;
            if is_squashfs {
                let layer = store.import_image(&n, reader, &tar, opts.force)?;
                if build.json {
                    print_json(&layer)?;
                } else {
                    println!(
                        "{}: imported squashfs image, {}, {}",
                        layer.name,
                        mb(layer.size),
                        layer.digest
                    );
                }
                return crate::cli::remote::after_build(data_dir, &store, &layer, build.sync);
            }
            let r = store.import_tar(&n, reader, &tar, &opts)?;
            report(&r, build.json, bar)?;
            crate::cli::remote::after_build(data_dir, &store, &r.layer, build.sync)
        }
        LayerCmd::FromHost {
            name: n,
            paths,
            build,
        } => {
            let n = name(&n)?;
            let (opts, bar) = build.options()?;
            let r = store.from_host(&n, &paths, &opts)?;
            report(&r, build.json, bar)?;
            crate::cli::remote::after_build(data_dir, &store, &r.layer, build.sync)
        }
        LayerCmd::Bootstrap {
            preset,
            suite,
            mirror,
            build,
        } => {
            let preset = match preset {
                Preset::Host => BootstrapPreset::Host,
                Preset::Debian => BootstrapPreset::Debian { suite, mirror },
                Preset::E2b => BootstrapPreset::E2b,
            };
            let (opts, bar) = build.options()?;
            let r = store.bootstrap(&preset, &opts)?;
            report(&r, build.json, bar)?;
            crate::cli::remote::after_build(data_dir, &store, &r.layer, build.sync)
        }
        LayerCmd::Ls { json, remote: true } => crate::cli::remote::list(json),
        LayerCmd::Push { names, all, json } => crate::cli::remote::push(&store, &names, all, json),
        LayerCmd::Pull { names, force, json } => {
            crate::cli::remote::pull(&store, &names, force, json)
        }
        LayerCmd::Sync { json } => crate::cli::remote::sync(&store, json),
        LayerCmd::Uploads { json } => crate::cli::remote::uploads(data_dir, json),
        LayerCmd::Ls {
            json,
            remote: false,
        } => {
            let layers = store.list()?;
            if json {
                return print_json(&layers);
            }
            println!(
                "{:<24} {:>10}  {:<5} {:<20} {:<19} PROVENANCE",
                "NAME", "SIZE", "COMP", "DIGEST", "CREATED"
            );
            for l in layers {
                let short = l.digest.get(..19).unwrap_or(&l.digest);
                let prov = serde_json::to_value(&l.provenance)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_default();
                println!(
                    "{:<24} {:>10}  {:<5} {:<20} {:<19} {}",
                    l.name,
                    mb(l.size),
                    l.compression,
                    short,
                    l.created.format("%Y-%m-%d %H:%M:%S"),
                    prov
                );
            }
            Ok(())
        }
        LayerCmd::Inspect { name: n, json } => {
            let n = name(&n)?;
            let i = store.inspect(&n)?;
            if json {
                return print_json(&i);
            }
            println!("layer:        {n}");
            println!("size:         {} ({} used)", i.size, i.bytes_used);
            println!("compression:  {}", i.compression);
            println!("block size:   {}", i.block_size);
            println!("inodes:       {}", i.inodes);
            println!(
                "entries:      {} files, {} dirs, {} symlinks, {} devices, {} other",
                i.files, i.directories, i.symlinks, i.devices, i.other
            );
            println!("uncompressed: {} bytes", i.uncompressed_bytes);
            Ok(())
        }
        LayerCmd::Verify { name: n, json } => {
            let n = name(&n)?;
            let v = store.verify(&n)?;
            if json {
                return print_json(&v);
            }
            println!(
                "{n}: ok ({} entries, {} files, {} bytes read, {})",
                v.entries, v.files, v.bytes_read, v.digest
            );
            Ok(())
        }
        LayerCmd::Rm { name: n } => {
            let n = name(&n)?;
            // Through the runtime, which refuses while a sandbox uses the layer.
            sqrx_core::Runtime::open(sqrx_core::RuntimeConfig::new(data_dir))?.remove_layer(&n)?;
            println!("removed {n}");
            Ok(())
        }
    }
}
