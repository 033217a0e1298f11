//! Verifying an image: every inode and every data block is read back and decompressed.

use std::io::Read;
use std::path::Path;

use backhand::InnerNode;

use super::LayerError;
use super::inspect::{guarded, open_image};

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Entries walked (every inode reachable from the root).
    pub entries: u64,
    /// Regular files read to the end.
    pub files: u64,
    /// File bytes decompressed.
    pub bytes_read: u64,
    /// `sha256:<hex>` of the image file.
    pub digest: String,
}

/// Read every inode and every block of the image at `path`. Fails on the first file whose data
/// cannot be decompressed or whose length does not match its inode.
pub fn verify_image(path: &Path) -> Result<Verification, LayerError> {
    let (fs, _, _, _) = open_image(path)?;
    let (entries, files, bytes_read) = guarded(path, || {
        let (mut entries, mut files, mut bytes) = (0u64, 0u64, 0u64);
        let mut buf = vec![0u8; 1 << 17];
        for node in fs.files() {
            entries += 1;
            let InnerNode::File(f) = &node.inner else {
                continue;
            };
            let mut reader = fs
                .file(f)
                .reader_checked()
                .map_err(|e| format!("{}: {e}", node.fullpath.display()))?;
            let mut n = 0u64;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => n += k as u64,
                    Err(e) => return Err(format!("{}: {e}", node.fullpath.display())),
                }
            }
            if n != f.file_len() as u64 {
                return Err(format!(
                    "{}: read {n} bytes, inode says {}",
                    node.fullpath.display(),
                    f.file_len()
                ));
            }
            files += 1;
            bytes += n;
        }
        Ok((entries, files, bytes))
    })?;
    let digest = super::store::digest_file(path)?;
    Ok(Verification {
        entries,
        files,
        bytes_read,
        digest,
    })
}
