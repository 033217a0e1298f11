//! The store: names, duplicates, replacement, removal, recovery of lost metadata.

use sqrx_core::{ErrorKind, LayerError, Provenance};

use crate::{name, opts, temp_store};

fn small_tree() -> tempfile::TempDir {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("f"), b"content").expect("write");
    src
}

#[test]
fn duplicate_names_are_refused_unless_forced() {
    let src = small_tree();
    let (_data, store) = temp_store();
    let first = store
        .build_from_dir(&name("100-a"), src.path(), &opts())
        .expect("build");
    let e = store
        .build_from_dir(&name("100-a"), src.path(), &opts())
        .expect_err("duplicate");
    assert!(matches!(e, LayerError::AlreadyExists { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    std::fs::write(src.path().join("g"), b"more").expect("write");
    let mut o = opts();
    o.force = true;
    let second = store
        .build_from_dir(&name("100-a"), src.path(), &o)
        .expect("forced");
    assert_ne!(first.layer.digest, second.layer.digest);
    assert_eq!(
        store.get(&name("100-a")).expect("get").digest,
        second.layer.digest
    );
}

#[test]
fn list_get_remove() {
    let src = small_tree();
    let (data, store) = temp_store();
    for n in ["200-b", "000-a", "100-c"] {
        store
            .build_from_dir(&name(n), src.path(), &opts())
            .expect("build");
    }
    let names: Vec<String> = store
        .list()
        .expect("list")
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    assert_eq!(names, ["000-a", "100-c", "200-b"]);
    let l = store.get(&name("100-c")).expect("get");
    assert!(
        l.digest.starts_with("sha256:") && l.digest.len() == 71,
        "{}",
        l.digest
    );
    assert_eq!(l.size, std::fs::metadata(&l.path).expect("stat").len());
    assert!(matches!(l.provenance, Provenance::Directory { .. }));
    store.remove(&name("100-c")).expect("remove");
    assert!(matches!(
        store.get(&name("100-c")),
        Err(LayerError::NotFound { .. })
    ));
    assert!(matches!(
        store.remove(&name("100-c")),
        Err(LayerError::NotFound { .. })
    ));
    assert_eq!(store.list().expect("list").len(), 2);
    // nothing left behind in the staging area
    let staging = data.path().join("layers/.tmp");
    assert_eq!(std::fs::read_dir(staging).expect("read .tmp").count(), 0);
}

#[test]
fn lost_metadata_is_recovered_from_the_image() {
    let src = small_tree();
    let (_data, store) = temp_store();
    let built = store
        .build_from_dir(&name("100-m"), src.path(), &opts())
        .expect("build");
    std::fs::remove_file(store.dir().join("100-m.json")).expect("rm json");
    let l = store.get(&name("100-m")).expect("get");
    assert_eq!(l.digest, built.layer.digest);
    assert_eq!(l.provenance, Provenance::Unknown);
    store.verify(&name("100-m")).expect("verify");
}

#[test]
fn a_changed_image_fails_verification() {
    let src = small_tree();
    let (_data, store) = temp_store();
    let built = store
        .build_from_dir(&name("100-v"), src.path(), &opts())
        .expect("build");
    let mut bytes = std::fs::read(&built.layer.path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // padding byte: still a valid image, but not the one stored
    std::fs::write(&built.layer.path, bytes).expect("write");
    let e = store.verify(&name("100-v")).expect_err("digest");
    assert!(matches!(e, LayerError::DigestMismatch { .. }), "{e}");
}

#[test]
fn host_closure_layer_has_the_loader_and_libc() {
    let (_data, store) = temp_store();
    let r = store
        .from_host(&name("100-sh"), &["/bin/sh".into()], &opts())
        .expect("from_host");
    assert!(r.entries > 5, "{r:?}");
    let v = store.verify(&name("100-sh")).expect("verify");
    assert!(v.files >= 3, "shell, libc and the loader at least: {v:?}");
}
