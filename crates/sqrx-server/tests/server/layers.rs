//! `/v1/layers`: uploads (tar and squashfs), listing, removal.

use serde_json::json;
use sqrx_testkit::privileged;

use crate::harness::*;

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, *data).expect("tar");
    }
    tar.into_inner().expect("tar")
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_list_remove() {
    if !privileged("server upload_list_remove") {
        return;
    }
    let data = DataDir::new();
    let s = Server::start_with(&data, Binary::Server, &["--max-upload-mb", "1"], &[]);
    let c = client();

    let listed = get(&c, s.url("/v1/layers")).await;
    assert_eq!(listed.1[0]["name"], "000-base");
    let base = get(&c, s.url("/v1/layers/000-base")).await;
    assert_eq!(base.0, 200);
    assert!(
        base.1["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_error(
        &get(&c, s.url("/v1/layers/999-nope")).await,
        404,
        "999-nope",
    );
    assert_error(&get(&c, s.url("/v1/layers/not-a-name")).await, 400, "");

    let put = |name: &str, ct: &str, body: Vec<u8>| {
        c.put(s.url(&format!("/v1/layers/{name}")))
            .header("content-type", ct)
            .body(body)
    };
    let tar = tar_of(&[
        ("etc/motd", b"hello\n"),
        ("srv/app/run.sh", b"#!/bin/sh\necho app\n"),
    ]);
    let up = send(put("200-app", "application/x-tar", tar.clone())).await;
    assert_eq!(up.0, 201, "{}", up.1);
    assert_eq!(up.1["name"], "200-app");
    assert_eq!(up.1["provenance"]["type"], "tar");
    assert_error(
        &send(put("200-app", "application/x-tar", tar.clone())).await,
        409,
        "exists",
    );
    let forced = send(
        c.put(s.url("/v1/layers/200-app?force=true"))
            .header("content-type", "application/x-tar")
            .body(tar.clone()),
    )
    .await;
    assert_eq!(forced.0, 201, "{}", forced.1);
    assert_error(
        &send(put("201-x", "text/plain", tar.clone())).await,
        415,
        "Content-Type",
    );
    assert_error(
        &send(c.put(s.url("/v1/layers/201-x")).body(tar.clone())).await,
        415,
        "",
    );
    assert_error(
        &send(put("bad", "application/x-tar", tar.clone())).await,
        400,
        "",
    );
    assert_error(
        &send(put(
            "201-x",
            "application/x-tar",
            b"this is not a tar archive at all".repeat(40),
        ))
        .await,
        400,
        "",
    );

    // A squashfs image: the image just built, uploaded again under another name.
    let image = sqrx_core::LayerStore::open(data.path())
        .expect("store")
        .image_path(&sqrx_core::LayerName::new("200-app").expect("name"));
    let bytes = std::fs::read(&image).expect("image");
    let up = send(put("300-copy", "application/vnd.squashfs", bytes.clone())).await;
    assert_eq!(up.0, 201, "{}", up.1);
    assert_eq!(up.1["provenance"]["type"], "image");
    assert_error(
        &send(put(
            "301-bad",
            "application/vnd.squashfs",
            b"hsqs garbage".to_vec(),
        ))
        .await,
        400,
        "",
    );

    // Past the upload limit (1 MiB): 413, by length or while streaming (a valid tar whose one
    // file is larger than the limit, sent without a length).
    let big = vec![0u8; (1 << 20) + 1];
    let by_length = raw(
        &s.addr,
        &format!("PUT /v1/layers/400-big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nContent-Length: {}", big.len()),
        big,
    )
    .await;
    assert_error(&by_length, 413, "limit");
    let mut head = tar::Header::new_gnu();
    head.set_path("big.bin").expect("path");
    head.set_size(2_000_000);
    head.set_mode(0o644);
    head.set_uid(0);
    head.set_gid(0);
    head.set_mtime(1_700_000_000);
    head.set_cksum();
    let mut archive = head.as_bytes().to_vec();
    archive.extend(std::iter::repeat_n(7u8, 2_000_000));
    let streamed = raw(
        &s.addr,
        "PUT /v1/layers/401-big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked",
        chunked(&archive, 100_000),
    )
    .await;
    assert_error(&streamed, 413, "limit");
    assert_error(&get(&c, s.url("/v1/layers/401-big")).await, 404, "");

    // A layer in use cannot be removed.
    let created = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "user", "layers": ["000-base", "200-app"]}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(
        exec(&c, &s, "user", "cat /etc/motd; sh /srv/app/run.sh").await["stdout"],
        "hello\napp\n"
    );
    assert_error(&delete(&c, s.url("/v1/layers/200-app")).await, 409, "user");
    delete(&c, s.url("/v1/sandboxes/user")).await;
    assert_eq!(delete(&c, s.url("/v1/layers/200-app")).await.0, 204);
    assert_error(&delete(&c, s.url("/v1/layers/200-app")).await, 404, "");
    let names: Vec<String> = get(&c, s.url("/v1/layers"))
        .await
        .1
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, ["000-base", "300-copy"]);
}
