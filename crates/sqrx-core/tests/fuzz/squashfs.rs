//! The squashfs reader for imported images (`inspect_image`, `verify_image`,
//! `LayerStore::import_image`): mutated real images and random bytes give `Ok` or a typed
//! error, never a panic, a hang or an unbounded allocation.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use sqrx_core::LayerName;
use sqrx_core::layer::{inspect_image, verify_image};
use sqrx_testkit::fuzz::{self, Edit};

use crate::{scratch_store, small_blocks};

/// A small image built by sqrx's own builder: directories, a compressible file over many
/// blocks, an incompressible one, a tiny one (a fragment) and a symlink.
fn sample() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let src = tempfile::tempdir().expect("tempdir");
        let root = src.path();
        std::fs::create_dir_all(root.join("d/e")).expect("mkdir");
        std::fs::write(root.join("d/e/text"), "sqrx fuzz ".repeat(3_000)).expect("write");
        std::fs::write(root.join("noise"), sqrx_testkit::noise(20_000, 3)).expect("write");
        std::fs::write(root.join("small"), b"tiny").expect("write");
        std::os::unix::fs::symlink("d/e/text", root.join("link")).expect("symlink");
        let (_data, store) = scratch_store();
        let name = LayerName::new("100-sample").expect("name");
        let built = store
            .build_from_dir(&name, root, &small_blocks())
            .expect("build the sample image");
        std::fs::read(&built.layer.path).expect("read image")
    })
}

/// Inspect and verify `bytes` as an image file: both must return, `Ok` or `Err`.
fn read_image(bytes: &[u8]) {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), bytes).expect("write");
    let p: &Path = f.path();
    fuzz::watch(format!("squashfs of {} bytes", bytes.len()), || {
        let inspected = inspect_image(p);
        let verified = verify_image(p);
        // A verified image is one that inspects.
        if verified.is_ok() {
            assert!(inspected.is_ok(), "verify passed where inspect failed");
        }
    });
}

#[test]
fn the_sample_image_inspects_and_verifies() {
    fuzz::limit_memory();
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), sample()).expect("write");
    inspect_image(f.path()).expect("inspect");
    verify_image(f.path()).expect("verify");
}

proptest! {
    #![proptest_config(fuzz::config(4000))]

    /// Edits anywhere in a valid image.
    #[test]
    fn edited_images(edits in fuzz::edits()) {
        fuzz::limit_memory();
        let mut bytes = sample().to_vec();
        fuzz::apply(&mut bytes, &edits);
        read_image(&bytes);
    }

    /// Edits aimed at the metadata: the superblock, and the tables packed at the image's end
    /// (inodes, directories, fragments, ids), where sizes and offsets live.
    #[test]
    fn edited_metadata(
        head in prop::collection::vec((0usize..96, any::<u8>()), 0..4),
        tail in prop::collection::vec((0usize..2048, any::<u32>()), 1..6),
    ) {
        fuzz::limit_memory();
        let mut bytes = sample().to_vec();
        let len = bytes.len();
        let mut edits: Vec<Edit> = head.into_iter().map(|(at, v)| Edit::Set(at, v)).collect();
        edits.extend(tail.into_iter().map(|(back, w)| Edit::Word(len.saturating_sub(back + 4), w)));
        fuzz::apply(&mut bytes, &edits);
        read_image(&bytes);
    }

    /// Random bytes, alone and behind the sample's real superblock (so the reader goes past
    /// the header checks into the tables).
    #[test]
    fn random_bytes(body in prop::collection::vec(any::<u8>(), 0..16_384), real_head in any::<bool>()) {
        fuzz::limit_memory();
        let mut bytes = Vec::new();
        if real_head {
            bytes.extend_from_slice(&sample()[..96]);
        }
        bytes.extend_from_slice(&body);
        read_image(&bytes);
    }
}

proptest! {
    #![proptest_config(fuzz::config(1500))]

    /// The import path itself: a store refuses a damaged image with a typed error and keeps
    /// nothing of it, or takes an image that verifies.
    #[test]
    fn imported_images(edits in fuzz::edits()) {
        fuzz::limit_memory();
        let mut bytes = sample().to_vec();
        fuzz::apply(&mut bytes, &edits);
        let (_data, store) = scratch_store();
        let name = LayerName::new("100-imported").expect("name");
        let result = fuzz::watch("import_image", || store.import_image(&name, &bytes[..], "fuzz", true));
        match result {
            Ok(layer) => {
                verify_image(&layer.path).expect("an imported layer verifies");
            }
            Err(_) => prop_assert!(!store.contains(&name), "a refused image was kept"),
        }
    }
}
