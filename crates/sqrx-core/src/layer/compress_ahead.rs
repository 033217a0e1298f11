//! Parallel compression for backhand's single-threaded writer.
//!
//! backhand compresses every block on the thread that calls `FilesystemWriter::write`. To use
//! every core, sqrx predicts the sequence of blocks backhand will compress (it packs files in
//! path order: full blocks of files at least one block long, and the small files concatenated
//! into fragment blocks), compresses them ahead on worker threads, and hands backhand the
//! result through a custom [`CompressionAction`] when it asks for the same bytes.
//!
//! Results are matched by content (xxh3-128 and length of the uncompressed block, plus the
//! compressor settings), never by position, so a wrong prediction (a file that changed size
//! since the walk) only costs an inline compression: the image is always what backhand alone
//! would write.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{BackhandError, FilesystemCompressor, SuperBlock};

use super::tree::{FileData, NodeKind, Tree};

/// How many blocks the workers may run ahead of the writer.
const WINDOW: usize = 128;

/// One block backhand will compress: consecutive byte ranges of files.
#[derive(Debug, Clone)]
struct Job {
    parts: Vec<(FileData, u64, u64)>,
}

/// Predict backhand 0.25's block sequence for `tree` (see `DataWriter::add_bytes`).
fn predict(tree: &Tree, block_size: u64) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut fragment: Vec<(FileData, u64, u64)> = Vec::new();
    let mut fragment_len = 0u64;
    for node in tree.nodes.values() {
        let NodeKind::File { data, size } = &node.kind else {
            continue;
        };
        let size = *size;
        if size == 0 {
            continue;
        }
        if size < block_size {
            if fragment_len + size > block_size {
                jobs.push(Job {
                    parts: std::mem::take(&mut fragment),
                });
                fragment_len = 0;
            }
            fragment.push((data.clone(), 0, size));
            fragment_len += size;
        } else {
            let mut offset = 0;
            while offset < size {
                let len = block_size.min(size - offset);
                jobs.push(Job {
                    parts: vec![(data.clone(), offset, len)],
                });
                offset += len;
            }
        }
    }
    if !fragment.is_empty() {
        jobs.push(Job { parts: fragment });
    }
    jobs
}

fn read_part(data: &FileData, offset: u64, len: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    match data {
        FileData::Bytes(b) => {
            let from = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let to = usize::try_from(offset + len)
                .unwrap_or(usize::MAX)
                .min(b.len());
            out.extend_from_slice(&b[from..to]);
        }
        FileData::Path(p) => {
            let mut f = File::open(p)?;
            f.seek(SeekFrom::Start(offset))?;
            f.take(len).read_to_end(out)?;
        }
        FileData::Slice {
            file,
            offset: base,
            len: slice_len,
        } => {
            let mut f = File::open(file.as_path())?;
            f.seek(SeekFrom::Start(base + offset))?;
            f.take(len.min(slice_len.saturating_sub(offset)))
                .read_to_end(out)?;
        }
    }
    if (out.len() - start) as u64 != len {
        return Err(std::io::Error::other("file changed size"));
    }
    Ok(())
}

type Key = (u128, usize);

fn key(bytes: &[u8]) -> Key {
    (xxhash_rust::xxh3::xxh3_128(bytes), bytes.len())
}

#[derive(Default)]
struct Slot {
    ready: Vec<Vec<u8>>,
    in_progress: usize,
}

/// The shared state of one `pack` call.
pub(crate) struct Session {
    jobs: Vec<Job>,
    fc: FilesystemCompressor,
    block_size: u32,
    next_job: AtomicUsize,
    consumed: AtomicUsize,
    hits: AtomicUsize,
    stop: AtomicBool,
    slots: Mutex<HashMap<Key, Slot>>,
    changed: Condvar,
}

impl Session {
    pub fn new(tree: &Tree, fc: FilesystemCompressor, block_size: u32) -> Arc<Self> {
        Arc::new(Session {
            jobs: predict(tree, u64::from(block_size)),
            fc,
            block_size,
            next_job: AtomicUsize::new(0),
            consumed: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            slots: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run by each worker thread until the jobs are done or the session stops.
    pub fn work(&self) {
        let mut input = Vec::with_capacity(self.block_size as usize);
        loop {
            let i = self.next_job.fetch_add(1, Ordering::Relaxed);
            let Some(job) = self.jobs.get(i) else { return };
            {
                let mut slots = self.lock();
                while i > self.consumed.load(Ordering::Relaxed) + WINDOW
                    && !self.stop.load(Ordering::Relaxed)
                {
                    slots = self.changed.wait(slots).unwrap_or_else(|p| p.into_inner());
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if i < self.consumed.load(Ordering::Relaxed) {
                continue; // the writer has already gone past this block
            }
            input.clear();
            if job
                .parts
                .iter()
                .any(|(d, off, len)| read_part(d, *off, *len, &mut input).is_err())
            {
                continue; // the writer will report the error when it reads the file itself
            }
            if input.iter().all(|b| *b == 0) {
                continue; // stored as a hole, never compressed
            }
            let k = key(&input);
            self.lock().entry(k).or_default().in_progress += 1;
            let out = DefaultCompressor.compress(&input, self.fc, self.block_size);
            let mut slots = self.lock();
            let slot = slots.entry(k).or_default();
            slot.in_progress -= 1;
            if let Ok(bytes) = out {
                slot.ready.push(bytes);
            }
            drop(slots);
            self.changed.notify_all();
        }
    }

    /// The writer asks for `bytes` compressed: take a result computed ahead, wait for one in
    /// progress, or compress inline.
    fn take(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let k = key(bytes);
        let mut slots = self.lock();
        let found = loop {
            match slots.get_mut(&k) {
                Some(slot) if !slot.ready.is_empty() => break slot.ready.pop(),
                Some(slot) if slot.in_progress > 0 => {
                    slots = self.changed.wait(slots).unwrap_or_else(|p| p.into_inner());
                }
                _ => break None,
            }
        };
        if matches!(slots.get(&k), Some(s) if s.ready.is_empty() && s.in_progress == 0) {
            slots.remove(&k);
        }
        drop(slots);
        let position = self.consumed.fetch_add(1, Ordering::Relaxed) + 1;
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            // The writer caught up with the workers: send them ahead of it rather than
            // letting them compress blocks it has just done itself.
            self.next_job.fetch_max(position, Ordering::Relaxed);
        }
        self.changed.notify_all();
        found
    }

    /// Blocks the writer took from the workers instead of compressing them itself.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// Stop the workers (the write finished or failed).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _guard = self.lock();
        self.changed.notify_all();
    }
}

/// Calls [`Session::stop`] when dropped.
pub(crate) struct StopOnDrop<'a>(pub &'a Session);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

/// Makes `session` the one consulted by [`AheadCompressor`] on this thread until dropped.
pub(crate) struct Installed;

impl Installed {
    pub fn new(session: Arc<Session>) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(session));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// backhand's default compressor, taking blocks compressed ahead when the writer's thread has
/// a session installed.
pub(crate) struct AheadCompressor;

/// The instance handed to backhand (`Kind::new_v4` wants a `'static` reference).
pub(crate) static AHEAD: AheadCompressor = AheadCompressor;

impl CompressionAction for AheadCompressor {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        compressor: Compressor,
    ) -> Result<(), BackhandError> {
        DefaultCompressor.decompress(bytes, out, compressor)
    }

    fn compress(
        &self,
        bytes: &[u8],
        fc: FilesystemCompressor,
        block_size: u32,
    ) -> Result<Vec<u8>, BackhandError> {
        let session = CURRENT.with(|c| c.borrow().clone());
        if let Some(s) = session
            && let Some(out) = s.take(bytes)
        {
            return Ok(out);
        }
        DefaultCompressor.compress(bytes, fc, block_size)
    }

    fn compression_options(
        &self,
        superblock: &mut SuperBlock,
        kind: &backhand::kind::Kind,
        fs_compressor: FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, BackhandError> {
        DefaultCompressor.compression_options(superblock, kind, fs_compressor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tree::{Header, Node};
    use std::path::Path;

    fn file(tree: &mut Tree, path: &str, size: usize) {
        let bytes: Arc<[u8]> = Arc::from(vec![7u8; size]);
        let node = Node {
            header: Header::implicit_dir(0),
            kind: NodeKind::File {
                data: FileData::Bytes(bytes),
                size: size as u64,
            },
        };
        tree.insert(Path::new(path), node, 0);
    }

    #[test]
    fn the_writer_uses_blocks_compressed_ahead() {
        let mut t = Tree::new(Header::implicit_dir(0));
        for i in 0..40u8 {
            let bytes: Arc<[u8]> = Arc::from(
                (0..300_000u32)
                    .map(|j| (j % 251) as u8 ^ i)
                    .collect::<Vec<u8>>(),
            );
            let node = Node {
                header: Header::implicit_dir(0),
                kind: NodeKind::File {
                    data: FileData::Bytes(bytes),
                    size: 300_000,
                },
            };
            t.insert(Path::new(&format!("/f{i:02}")), node, 0);
        }
        let opts = crate::layer::BuildOptions::default();
        let fc = backhand::FilesystemCompressor::new(
            backhand::compression::Compressor::Zstd,
            Some(backhand::compression::CompressionOptions::Zstd(
                backhand::compression::Zstd {
                    compression_level: 3,
                },
            )),
        )
        .expect("compressor");
        // Compress every block ahead first (no timing involved), then write with no workers:
        // every block the writer compresses must come from the session.
        let session = Session::new(&t, fc, opts.block_size);
        session.work();
        let mut out = tempfile::tempfile().expect("tempfile");
        let (session, _) =
            crate::layer::pack::pack_with_session(&t, &opts, &mut out, "test", session, 0)
                .expect("pack");
        assert_eq!(session.hits(), 120, "40 files of 3 blocks each");
    }

    #[test]
    fn predicts_blocks_and_fragments_in_path_order() {
        let mut t = Tree::new(Header::implicit_dir(0));
        file(&mut t, "/a", 10); // fragment 1
        file(&mut t, "/b", 250); // 2 full blocks + a partial data block (no tail fragments)
        file(&mut t, "/c", 0); // nothing
        file(&mut t, "/d", 95); // 10 + 95 > 100: fragment 1 is flushed first
        file(&mut t, "/e", 100); // exactly one block
        let jobs = predict(&t, 100);
        let shape: Vec<Vec<u64>> = jobs
            .iter()
            .map(|j| j.parts.iter().map(|p| p.2).collect())
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![100],
                vec![100],
                vec![50],
                vec![10],
                vec![100],
                vec![95]
            ]
        );
    }
}
