"""Smoke test of the Python module: it imports and reaches the core's layer store."""

import os
import subprocess
import tempfile

import pytest

import sqrx


def test_version():
    assert sqrx.__version__.count(".") == 2


def test_empty_store_lists_nothing():
    with tempfile.TemporaryDirectory() as d:
        assert sqrx.list_layers(d) == []


def test_lists_a_layer_built_by_the_cli(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    # scripts/test.sh names the directory; else cargo's default layout.
    bin_dir = os.environ.get("SQRX_BIN_DIR") or os.path.join(os.environ["CARGO_TARGET_DIR"], "debug")
    sqrx_bin = os.path.join(bin_dir, "sqrx")
    subprocess.run([sqrx_bin, "--data-dir", str(tmp_path / "data"), "layer", "build", str(src), "100-py"], check=True)
    assert sqrx.list_layers(str(tmp_path / "data")) == ["100-py"]


def test_errors_are_sqrx_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(sqrx.SqrxError):
        sqrx.list_layers(str(blocker))
