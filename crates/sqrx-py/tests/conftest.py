"""Fixtures for the sqrx Python tests: a throwaway data dir under /tmp (sqrx-test-*), one
runtime on it, and sandboxes that are destroyed even when a test fails.

Sandboxes need root (mounts, namespaces, cgroups). Without it these tests skip, unless
SQRX_REQUIRE_PRIVILEGED=1 (set by .ci/run), where they fail instead.
"""

import itertools
import os
import shutil
import tempfile

import pytest

import sqrx


def _privilege_problem():
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control"
    with open("/proc/filesystems") as f:
        if "squashfs" not in f.read():
            return "kernel has no squashfs"
    return None


@pytest.fixture(scope="session")
def privileged():
    """Skip (or, under SQRX_REQUIRE_PRIVILEGED=1, fail) when sandboxes cannot run here."""
    problem = _privilege_problem()
    if problem:
        if os.environ.get("SQRX_REQUIRE_PRIVILEGED") == "1":
            pytest.fail(f"privileged test cannot run: {problem} (SQRX_REQUIRE_PRIVILEGED=1)")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def data_dir(privileged):
    """One data dir for the session (the base layer is built once), removed at the end
    together with any sandbox a failed test left in it."""
    d = tempfile.mkdtemp(prefix="sqrx-test-py-")
    try:
        yield d
    finally:
        try:
            for sb in sqrx.Runtime(d).list():
                sb.destroy()
        finally:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def rt(data_dir):
    """A runtime on the session's data dir."""
    return sqrx.Runtime(data_dir)


_ids = itertools.count()


@pytest.fixture
def new_id():
    """Unique sandbox ids for this session."""
    return lambda: f"py{os.getpid()}-{next(_ids)}"


@pytest.fixture
def sb(rt, new_id):
    """A fresh sandbox on the base layer, destroyed after the test whatever happens."""
    sandbox = rt.create(new_id(), layers=["000-base"], memory_mb=256)
    try:
        yield sandbox
    finally:
        sandbox.destroy()
