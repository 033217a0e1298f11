"""Fixtures for the sqrx Python tests: a throwaway data dir under /tmp (sqrx-test-*), one
runtime on it, and sandboxes that are destroyed even when a test fails.

Sandboxes need root (mounts, namespaces, cgroups). Without it these tests skip, unless
SQRX_REQUIRE_PRIVILEGED=1 (set by .ci/run), where they fail instead.
"""

import itertools
import os
import shutil
import subprocess
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


# Network namespaces for the network and secrets tests.
_ns_ids = itertools.count()


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns(privileged):
    """A namespace for the host side of sandbox links, with an uplink (a veth pair whose
    other end goes nowhere); deleted after the test."""
    name = f"sqrxpy-{os.getpid()}-{next(_ns_ids)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        _ip("-n", name, "link", "set", "up0", "up")
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def net_rt(data_dir, netns):
    """A runtime on the session's data dir whose sandbox links go to ``netns``; the sandboxes
    a test leaves are destroyed before the namespace goes."""
    rt = sqrx.Runtime(data_dir, net_netns=netns, net_uplink="up0")
    before = {sb.id for sb in rt.list()}
    try:
        yield rt
    finally:
        for sb in rt.list():
            if sb.id not in before:
                sb.destroy()
