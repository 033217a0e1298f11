//! Tar import (`LayerStore::import_tar`, plain, gzip and zstd): mutated valid archives and
//! random bytes give a layer or a typed error, never a panic, a hang or an unbounded
//! allocation; a refused archive leaves no layer behind.

use std::io::Write;
use std::sync::OnceLock;

use proptest::prelude::*;
use sqrx_core::LayerName;
use sqrx_core::layer::verify_image;
use sqrx_testkit::fuzz;

use crate::{scratch_store, small_blocks};

/// An archive like a root filesystem: directories, files, a symlink, a hard link, an overlay
/// whiteout, a FIFO, a file under a directory with no entry, and a PAX header.
fn sample_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let mut b = tar::Builder::new(Vec::new());
        let header = |kind| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o777);
            h.set_mtime(1_700_000_000);
            h.set_device_major(0).expect("major");
            h.set_device_minor(0).expect("minor");
            h.set_size(0);
            h
        };
        let entry = |b: &mut tar::Builder<Vec<u8>>, kind, path: &str, mode, body: &[u8]| {
            let mut h = header(kind);
            h.set_mode(mode);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, path, body).expect("append");
        };
        entry(&mut b, tar::EntryType::Directory, "./", 0o755, b"");
        entry(&mut b, tar::EntryType::Directory, "./bin/", 0o755, b"");
        entry(
            &mut b,
            tar::EntryType::Regular,
            "./bin/tool",
            0o755,
            b"#!/bin/sh\necho hi\n",
        );
        entry(
            &mut b,
            tar::EntryType::Regular,
            "etc/motd",
            0o644,
            &[b'x'; 5000],
        );
        entry(&mut b, tar::EntryType::Char, "./gone", 0o644, b"");
        entry(&mut b, tar::EntryType::Fifo, "./run/fifo", 0o600, b"");
        let mut h = header(tar::EntryType::Symlink);
        b.append_link(&mut h, "./bin/sh", "/bin/tool")
            .expect("symlink");
        let mut h = header(tar::EntryType::Link);
        b.append_link(&mut h, "./bin/tool2", "./bin/tool")
            .expect("hard link");
        b.append_pax_extensions([("path", &b"./a-long-pax-name"[..])])
            .expect("pax");
        entry(
            &mut b,
            tar::EntryType::Regular,
            "short",
            0o644,
            b"named by its pax header",
        );
        b.into_inner().expect("finish tar")
    })
}

/// Where the sample's headers start.
fn header_offsets() -> &'static [usize] {
    static HEADS: OnceLock<Vec<usize>> = OnceLock::new();
    HEADS.get_or_init(|| {
        let mut archive = tar::Archive::new(sample_tar());
        let entries = archive.entries().expect("entries");
        let heads: Vec<usize> = entries
            .map(|e| e.expect("entry").raw_header_position() as usize)
            .collect();
        assert_eq!(heads.len(), 9, "{heads:?}");
        heads
    })
}

/// Set a ustar header block's checksum: the sum of its bytes, the checksum field counted as
/// spaces, in octal.
fn fix_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:07o}\0").as_bytes());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Import `bytes`: a layer that verifies, or a typed error and no layer.
fn import(bytes: &[u8]) {
    let (_data, store) = scratch_store();
    let name = LayerName::new("100-tar").expect("name");
    let result = fuzz::watch(format!("tar of {} bytes", bytes.len()), || {
        store.import_tar(&name, bytes, "fuzz.tar", &small_blocks())
    });
    match result {
        Ok(report) => {
            verify_image(&report.layer.path).expect("an imported tar verifies");
        }
        Err(_) => assert!(!store.contains(&name), "a refused tar left a layer"),
    }
}

#[test]
fn the_sample_tar_imports() {
    fuzz::limit_memory();
    let (_data, store) = scratch_store();
    let name = LayerName::new("100-tar").expect("name");
    store
        .import_tar(&name, sample_tar(), "sample.tar", &small_blocks())
        .expect("import the sample");
    let i = store.inspect(&name).expect("inspect");
    assert_eq!((i.symlinks, i.devices, i.other), (1, 1, 1));
    // The checksum the header target recomputes is the one the builder wrote.
    let mut again = sample_tar().to_vec();
    for &head in header_offsets() {
        fix_checksum(&mut again[head..head + 512]);
    }
    assert!(
        again == sample_tar(),
        "fix_checksum changed an untouched header"
    );
}

proptest! {
    #![proptest_config(fuzz::config(4000))]

    /// Edits anywhere in a valid archive (headers, checksums, sizes, names, data).
    #[test]
    fn edited_tars(edits in fuzz::edits()) {
        fuzz::limit_memory();
        let mut bytes = sample_tar().to_vec();
        fuzz::apply(&mut bytes, &edits);
        import(&bytes);
    }

    /// Edits of a compressed archive (the decompressors see damaged streams), and of an
    /// archive then compressed (the tar reader sees damaged headers behind a good stream).
    #[test]
    fn edited_compressed_tars(edits in fuzz::edits(), before in any::<bool>(), zstd in any::<bool>()) {
        fuzz::limit_memory();
        let compress = |b: &[u8]| if zstd { zstd::encode_all(b, 1).expect("zstd") } else { gzip(b) };
        let mut bytes = sample_tar().to_vec();
        if before {
            fuzz::apply(&mut bytes, &edits);
            bytes = compress(&bytes);
        } else {
            bytes = compress(&bytes);
            fuzz::apply(&mut bytes, &edits);
        }
        import(&bytes);
    }

    /// Random bytes, alone and behind each format's magic.
    #[test]
    fn random_bytes(body in prop::collection::vec(any::<u8>(), 0..4096), magic in 0usize..3) {
        fuzz::limit_memory();
        let mut bytes = [&b""[..], &[0x1f, 0x8b][..], &[0x28, 0xb5, 0x2f, 0xfd][..]][magic].to_vec();
        bytes.extend_from_slice(&body);
        import(&bytes);
    }
}

proptest! {
    #![proptest_config(fuzz::config(1500))]

    /// Edits of the header fields themselves (sizes, modes, ids, types, names, link names),
    /// with each header's checksum made right again so the reader believes them.
    #[test]
    fn edited_headers(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..512, any::<u8>()), 1..8)) {
        fuzz::limit_memory();
        let mut bytes = sample_tar().to_vec();
        let heads = header_offsets();
        for (which, at, value) in edits {
            let head = heads[which.index(heads.len())];
            bytes[head + at] = value;
        }
        for &head in heads {
            fix_checksum(&mut bytes[head..head + 512]);
        }
        import(&bytes);
    }
}
