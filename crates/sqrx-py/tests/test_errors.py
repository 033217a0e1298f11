"""Every exception class, each from a real failure, and the class hierarchy."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import sqrx

KINDS = [
    "NotFound",
    "AlreadyExists",
    "InvalidArgument",
    "LimitExceeded",
    "Conflict",
    "Unavailable",
    "Timeout",
    "PermissionDenied",
    "InsufficientStorage",
    "Internal",
]


def test_one_subclass_per_kind():
    for kind in KINDS:
        cls = getattr(sqrx, kind)
        assert issubclass(cls, sqrx.SqrxError) and cls.kind == kind
    assert issubclass(sqrx.SqrxError, Exception)


def test_not_found(rt):
    with pytest.raises(sqrx.NotFound) as e:
        rt.get("no-such-sandbox")
    assert "no-such-sandbox" in str(e.value) and e.value.kind == "NotFound"


def test_not_found_file_and_command(sb):
    with pytest.raises(sqrx.NotFound):
        sb.files.read("/no/such/file")
    with pytest.raises(sqrx.NotFound):
        sb.exec(["no-such-program"])


def test_already_exists(rt, sb):
    with pytest.raises(sqrx.AlreadyExists):
        rt.create(sb.id)


def test_invalid_argument(rt, sb):
    with pytest.raises(sqrx.InvalidArgument):
        rt.create("not a valid id")
    with pytest.raises(sqrx.InvalidArgument):
        sb.files.read("relative/path")
    with pytest.raises(sqrx.InvalidArgument):
        sb.exec("true", workdir="relative")
    with pytest.raises(sqrx.InvalidArgument):
        rt.create("ok-id", memory_mb=0)
    with pytest.raises(sqrx.InvalidArgument):
        sqrx.run_js("1", memory_mb=0)


def test_limit_exceeded(data_dir, rt, sb, new_id):
    # One sandbox (sb) exists in the data dir; a runtime that allows one refuses another.
    limited = sqrx.Runtime(data_dir, max_sandboxes=1)
    with pytest.raises(sqrx.LimitExceeded):
        limited.create(new_id())


def test_timeout(sb):
    p = sb.spawn("sleep 1000")
    with pytest.raises(sqrx.Timeout) as e:
        p.wait(timeout=0.1)
    assert e.value.kind == "Timeout"
    p.kill(9)
    assert p.wait(timeout=5) == (None, 9)


def test_conflict(rt, sb):
    sb.pause()
    try:
        with pytest.raises(sqrx.Conflict):
            sb.exec("true")
    finally:
        sb.resume()


def test_permission_denied(sb):
    sb.files.write("/data/not-executable", "#!/bin/sh\necho no\n", mode=0o644)
    with pytest.raises(sqrx.PermissionDenied):
        sb.exec(["/data/not-executable"])


def test_unavailable_without_sqrx_init(tmp_path, data_dir):
    """A package without its sqrx-init (and no SQRX_INIT) cannot start sandboxes."""
    pkg = tmp_path / "sqrx"
    shutil.copytree(os.path.dirname(sqrx.__file__), pkg, ignore=shutil.ignore_patterns("sqrx-init"))
    script = textwrap.dedent(
        f"""
        import sqrx
        assert sqrx.__file__.startswith({str(tmp_path)!r}), sqrx.__file__
        try:
            sqrx.Runtime({data_dir!r}).create("never-created")
        except sqrx.Unavailable as e:
            print("Unavailable:", e)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "SQRX_INIT"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "Unavailable: cannot find sqrx-init" in out.stdout
