"""Layers through a bucket from Python: push on one data directory, pull on another, sync,
background pushes with their states, an ephemeral sandbox moving between data directories,
and a clear error without a bucket. Against moto in server mode on loopback, started here
(scripts/s3-tools.sh installs it and sets SQRX_TEST_MOTO_SERVER)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import sqrx


@pytest.fixture
def bucket(privileged, monkeypatch):
    """A moto server with bucket "py-layers", named in the environment a Runtime reads."""
    program = os.environ.get("SQRX_TEST_MOTO_SERVER") or shutil.which("moto_server")
    if not program:
        if os.environ.get("SQRX_REQUIRE_PRIVILEGED") == "1":
            pytest.fail("moto_server is missing (scripts/s3-tools.sh)")
        pytest.skip("moto_server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [program, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"{endpoint}/py-layers", method="PUT")
                )
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        for k, v in {
            "SQRX_S3_BUCKET": "py-layers",
            "SQRX_S3_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "sqrx-test",
            "AWS_SECRET_ACCESS_KEY": "sqrx-test-secret",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Explicit pushes unless a test turns background pushes on.
            "SQRX_S3_AUTO_PUSH": "0",
        }.items():
            monkeypatch.setenv(k, v)
        yield endpoint
    finally:
        server.kill()
        server.wait()


def test_layers_go_through_a_bucket(rt, bucket, new_id):
    # The session runtime has the base layer once a sandbox was made; this one reads the bucket.
    rt.create(new_id(), layers=["000-base"]).destroy()
    here = sqrx.Runtime(rt.data_dir)
    pushed = here.push_layer("000-base")
    assert pushed["uploaded_bytes"] > 0 and pushed["key"].startswith("layers/sha256/")
    assert here.push_layer("000-base")["uploaded_bytes"] == 0
    other_dir = tempfile.mkdtemp(prefix="sqrx-test-py-s3-")
    try:
        other = sqrx.Runtime(other_dir)
        pulled = other.pull_layer("000-base")
        assert pulled == {
            "name": "000-base",
            "digest": pushed["digest"],
            "downloaded_bytes": pulled["downloaded_bytes"],
        }
        assert pulled["downloaded_bytes"] > 0
        assert other.layers() == ["000-base"]
        assert other.sync_layers() == {"pushed": [], "pulled": []}
        with pytest.raises(sqrx.NotFound, match="999-nope"):
            other.pull_layer("999-nope")
    finally:
        shutil.rmtree(other_dir, ignore_errors=True)


def test_no_bucket_is_a_clear_error(rt, monkeypatch):
    monkeypatch.delenv("SQRX_S3_BUCKET", raising=False)
    monkeypatch.delenv("SQUASH_S3_BUCKET", raising=False)
    with pytest.raises(sqrx.InvalidArgument, match="SQRX_S3_BUCKET"):
        sqrx.Runtime(rt.data_dir).push_layer("000-base")


def test_background_pushes_and_ephemeral_sandboxes(rt, bucket, new_id, monkeypatch):
    monkeypatch.setenv("SQRX_S3_AUTO_PUSH", "1")
    monkeypatch.setenv("SQRX_EPHEMERAL", "1")
    rt.create(new_id(), layers=["000-base"]).destroy()
    here = sqrx.Runtime(rt.data_dir)
    sid = new_id()
    sb = here.create(sid, layers=["000-base"])
    assert sb.exec("echo from-python > /root/p").exit_code == 0
    info = sb.snapshot("s1", push=True)
    assert sb.push_snapshot("s1")["uploaded_bytes"] == 0

    def state(kind, name):
        return next(
            (u["state"] for u in here.uploads() if u["kind"] == kind and u["name"] == name),
            None,
        )

    assert state("snapshot", f"{sid}@s1") == "pushed"
    deadline = time.monotonic() + 60
    while state("layer", "000-base") != "pushed":
        assert time.monotonic() < deadline, here.uploads()
        time.sleep(0.2)
    assert info.label == "s1"
    sb.destroy()  # ephemeral: saved into the bucket first
    other_dir = tempfile.mkdtemp(prefix="sqrx-test-py-s3-")
    try:
        other = sqrx.Runtime(other_dir)
        moved = other.create(sid)
        try:
            assert moved.exec("cat /root/p").text == "from-python\n"
        finally:
            moved.destroy(save=False)
        del other
    finally:
        shutil.rmtree(other_dir, ignore_errors=True)
