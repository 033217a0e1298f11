//! Writing a [`Tree`] as a squashfs 4.0 image with backhand.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Take, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};

use super::meta::{BuildOptions, BuildProgress, Compression, ProgressFn};
use super::tree::{FileData, Header, NodeKind, Tree};
use super::{LayerError, compress_ahead};

/// Check the options before any work is done.
pub(crate) fn check_options(opts: &BuildOptions) -> Result<(), LayerError> {
    let bs = opts.block_size;
    if !(4096..=1024 * 1024).contains(&bs) || !bs.is_power_of_two() {
        return Err(LayerError::InvalidOption {
            reason: format!("block size {bs} must be a power of two from 4096 to 1048576"),
        });
    }
    let max = match opts.compression {
        Compression::Zstd => 22,
        Compression::Gzip | Compression::Xz => 9,
        Compression::Lz4 => 0,
    };
    match opts.level {
        Some(_) if opts.compression == Compression::Lz4 => Err(LayerError::InvalidOption {
            reason: "lz4 takes no compression level".into(),
        }),
        Some(l) if l == 0 && opts.compression == Compression::Gzip => {
            Err(LayerError::InvalidOption {
                reason: "gzip level must be 1-9".into(),
            })
        }
        Some(l) if l > max || (l == 0 && opts.compression == Compression::Zstd) => {
            Err(LayerError::InvalidOption {
                reason: format!("{} level {l} out of range (1-{max})", opts.compression),
            })
        }
        _ => Ok(()),
    }
}

fn compressor(opts: &BuildOptions) -> Result<FilesystemCompressor, backhand::BackhandError> {
    use backhand::compression::{CompressionOptions, Gzip, Lz4, Zstd};
    use backhand::{CompressionExtra, ExtraXz};
    match opts.compression {
        Compression::Zstd => FilesystemCompressor::new(
            Compressor::Zstd,
            Some(CompressionOptions::Zstd(Zstd {
                compression_level: opts.level.unwrap_or(3),
            })),
        ),
        Compression::Gzip => FilesystemCompressor::new(
            Compressor::Gzip,
            Some(CompressionOptions::Gzip(Gzip {
                compression_level: opts.level.unwrap_or(9),
                window_size: 15,
                strategies: 0,
            })),
        ),
        Compression::Xz => {
            let mut c = FilesystemCompressor::new(Compressor::Xz, None)?;
            let mut extra = ExtraXz::default();
            extra.level(opts.level.unwrap_or(6))?;
            c.extra(CompressionExtra::Xz(extra))?;
            Ok(c)
        }
        Compression::Lz4 => FilesystemCompressor::new(
            Compressor::Lz4,
            Some(CompressionOptions::Lz4(Lz4 {
                version: 1,
                flags: 0,
            })),
        ),
    }
}

fn node_header(h: &Header) -> NodeHeader {
    NodeHeader::new(h.mode, h.uid, h.gid, h.mtime)
}

/// Counts packed bytes and reports them to the progress callback.
struct Meter {
    done: AtomicU64,
    total: u64,
    callback: Option<ProgressFn>,
}

impl Meter {
    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(cb) = &self.callback {
            cb(BuildProgress {
                bytes_done: done,
                bytes_total: self.total,
            });
        }
    }
}

/// A file's bytes, opened only when backhand reads them and closed at end of file, so a tree of
/// a million files never holds a million descriptors.
struct LazyData {
    data: FileData,
    open: Option<Box<dyn Read + Send>>,
    finished: bool,
    meter: Arc<Meter>,
}

impl LazyData {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let with_path = |p: &Path, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
        };
        Ok(match &self.data {
            FileData::Path(p) => Box::new(File::open(p).map_err(|e| with_path(p, e))?),
            FileData::Slice { file, offset, len } => {
                let mut f = File::open(file.as_path()).map_err(|e| with_path(file, e))?;
                f.seek(SeekFrom::Start(*offset))?;
                let take: Take<File> = f.take(*len);
                Box::new(take)
            }
            FileData::Bytes(b) => Box::new(std::io::Cursor::new(Arc::clone(b))),
        })
    }
}

impl Read for LazyData {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let reader = match &mut self.open {
            Some(r) => r,
            None => self.open.insert(self.open()?),
        };
        let n = reader.read(buf)?;
        if n == 0 {
            self.open = None;
            self.finished = true;
        } else {
            self.meter.add(n as u64);
        }
        Ok(n)
    }
}

/// Write `tree` to `out` as a squashfs image. Returns the number of bytes written.
pub(crate) fn pack(
    tree: &Tree,
    opts: &BuildOptions,
    out: &mut File,
    name: &str,
) -> Result<u64, LayerError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let fc = compressor(opts).map_err(|source| LayerError::Pack {
        name: name.to_string(),
        source,
    })?;
    let session = compress_ahead::Session::new(tree, fc, opts.block_size);
    pack_with_session(tree, opts, out, name, session, workers).map(|(_, written)| written)
}

/// [`pack`] with a given compress-ahead session and number of worker threads; returns the
/// session too (for its statistics).
pub(crate) fn pack_with_session(
    tree: &Tree,
    opts: &BuildOptions,
    out: &mut File,
    name: &str,
    session: Arc<compress_ahead::Session>,
    workers: usize,
) -> Result<(Arc<compress_ahead::Session>, u64), LayerError> {
    let pack_err = |source| LayerError::Pack {
        name: name.to_string(),
        source,
    };
    check_options(opts)?;
    let meter = Arc::new(Meter {
        done: AtomicU64::new(0),
        total: tree.file_bytes(),
        callback: opts.progress.clone(),
    });

    let fc = compressor(opts).map_err(pack_err)?;
    let mut fs = FilesystemWriter::default();
    fs.set_kind(backhand::kind::Kind::new_v4(&compress_ahead::AHEAD));
    fs.set_block_size(opts.block_size);
    fs.set_compressor(fc);
    let newest = tree
        .nodes
        .values()
        .map(|n| n.header.mtime)
        .max()
        .unwrap_or(tree.root.mtime);
    fs.set_time(newest.max(tree.root.mtime));
    fs.set_root_mode(tree.root.mode);
    fs.set_root_uid(tree.root.uid);
    fs.set_root_gid(tree.root.gid);

    for (path, node) in &tree.nodes {
        let header = node_header(&node.header);
        let pushed = match &node.kind {
            NodeKind::File { data, .. } => {
                let reader = LazyData {
                    data: data.clone(),
                    open: None,
                    finished: false,
                    meter: Arc::clone(&meter),
                };
                fs.push_file(reader, path, header)
            }
            NodeKind::Dir => fs.push_dir(path, header),
            NodeKind::Symlink(target) => fs.push_symlink(target.clone(), path, header),
            NodeKind::CharDevice(dev) => fs.push_char_device(*dev, path, header),
            NodeKind::BlockDevice(dev) => fs.push_block_device(*dev, path, header),
            NodeKind::Fifo => fs.push_fifo(path, header),
            NodeKind::Socket => fs.push_socket(path, header),
        };
        pushed.map_err(pack_err)?;
    }

    let written = std::thread::scope(|scope| {
        for _ in 0..workers {
            let s = Arc::clone(&session);
            scope.spawn(move || s.work());
        }
        // Stops the workers however the write ends, a panic included, so the scope can join.
        let _stop = compress_ahead::StopOnDrop(&session);
        let _installed = compress_ahead::Installed::new(Arc::clone(&session));
        let mut w = BufWriter::with_capacity(1 << 20, &mut *out);
        fs.write(&mut w).and_then(|(_, written)| {
            w.flush()?;
            Ok(written)
        })
    });
    let written = written.map_err(pack_err)?;
    // backhand deduplicates a file by writing its blocks, then seeking back when the hash
    // matches an earlier file, so later writes overwrite them. When the metadata that follows is
    // shorter than the duplicate, the file keeps a stale tail: cut it to what the image uses.
    out.set_len(written).map_err(|e| pack_err(e.into()))?;
    tracing::debug!(
        layer = name,
        bytes = written,
        blocks_ahead = session.hits(),
        "image packed"
    );
    Ok((session, written))
}
