//! Corrupt, truncated and random images give errors from inspect/verify, never a panic.

use std::path::Path;

use proptest::prelude::*;
use sqrx_core::layer::{inspect_image, verify_image};
use sqrx_core::{ErrorKind, LayerError};

use crate::{name, opts, temp_store};

fn sample_image() -> Vec<u8> {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("d/e")).expect("mkdir");
    std::fs::write(src.path().join("d/e/text"), "sqrx layer ".repeat(30_000)).expect("write");
    std::fs::write(src.path().join("noise"), sqrx_testkit::noise(150_000, 7)).expect("write");
    std::fs::write(src.path().join("small"), b"tiny").expect("write");
    std::os::unix::fs::symlink("d/e/text", src.path().join("link")).expect("symlink");
    let (_data, store) = temp_store();
    let mut o = opts();
    o.block_size = 4096;
    let r = store
        .build_from_dir(&name("100-sample"), src.path(), &o)
        .expect("build");
    std::fs::read(&r.layer.path).expect("read image")
}

fn check(bytes: &[u8]) -> (Result<(), LayerError>, Result<(), LayerError>) {
    let f = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(f.path(), bytes).expect("write");
    let p: &Path = f.path();
    (inspect_image(p).map(|_| ()), verify_image(p).map(|_| ()))
}

#[test]
fn truncated_images_are_clear_errors() {
    let image = sample_image();
    for len in [0, 10, 95, 96, 500, image.len() / 2, image.len() - 5000] {
        let (i, v) = check(&image[..len]);
        let e = i.expect_err("inspect must fail");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{len}: {e}");
        assert!(v.is_err(), "verify must fail at {len}");
        assert!(e.to_string().contains("corrupt squashfs image"), "{e}");
    }
    let (i, _) = check(&image[..image.len() / 2]);
    assert!(i.expect_err("half").to_string().contains("truncated"));
}

#[test]
fn the_untouched_sample_verifies() {
    let image = sample_image();
    let (i, v) = check(&image);
    i.expect("inspect");
    v.expect("verify");
}

#[test]
fn random_bytes_are_not_an_image() {
    let (i, v) = check(&sqrx_testkit::noise(65536, 11));
    assert!(i.expect_err("random").to_string().contains("bad magic"));
    assert!(v.is_err());
    let mut fake = b"hsqs".to_vec();
    fake.extend(sqrx_testkit::noise(8192, 12));
    assert!(check(&fake).0.is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Flip bytes anywhere in a valid image: inspect and verify return (Ok or Err), never panic.
    #[test]
    fn mutated_images_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12)) {
        thread_local!(static IMAGE: Vec<u8> = sample_image());
        let mut bytes = IMAGE.with(|i| i.clone());
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = check(&bytes);
    }

    /// Mutations focused on the metadata (superblock and tables at the end of the image).
    #[test]
    fn mutated_metadata_never_panics(flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..6), head in any::<bool>()) {
        thread_local!(static IMAGE: Vec<u8> = sample_image());
        let mut bytes = IMAGE.with(|i| i.clone());
        let len = bytes.len();
        for (off, value) in flips {
            let i = if head { off % 96 } else { len.saturating_sub(4096 + 1) + off % 4096 };
            bytes[i] = value;
        }
        let _ = check(&bytes);
    }
}
