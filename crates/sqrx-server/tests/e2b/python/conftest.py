"""A `sqrx serve` for the E2B SDK tests: a throwaway data dir (/tmp/sqrx-test-e2b-*), a token
shaped like an E2B key, and the SDK pointed at it by environment variables only. Its sandboxes
are destroyed and the directory removed at the end, whatever happened."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    if os.geteuid() != 0:
        if os.environ.get("SQRX_REQUIRE_PRIVILEGED") == "1":
            pytest.fail("the E2B tests need root (SQRX_REQUIRE_PRIVILEGED=1)")
        pytest.skip("not running as root")
    binary = os.environ["SQRX_BIN"]
    data = tempfile.mkdtemp(prefix="sqrx-test-e2b-")
    port = _free_port()
    token = "e2b_" + secrets.token_hex(20)
    env = dict(os.environ, SQRX_DATA=data)
    # A session template, which E2B's templateID can name as well as a layer.
    config = os.path.join(data, "sqrx.toml")
    with open(config, "w") as f:
        f.write('[[template]]\nname = "sqrx-e2b-test"\nport = 8080\nttl = 60\n')
    proc = subprocess.Popen(
        [
            binary, "serve", "--listen", f"127.0.0.1:{port}", "--auth-token", token,
            # get_host(port) names {port}-{id}.sqrx.test: wildcard DNS, as a deployment has.
            "--allowed-host", "*.sqrx.test",
            "--config", config,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(data, "server.log"), "w"),
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, f"the server did not start: {line!r}"
        url = f"http://127.0.0.1:{port}"
        os.environ.update(
            E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=token, E2B_DOMAIN="sqrx.test"
        )
        yield {"url": url, "token": token, "data": data}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        listed = subprocess.run(
            [binary, "sandbox", "ls", "--json"], env=env, capture_output=True, text=True
        )
        try:
            ids = [s["id"] for s in json.loads(listed.stdout or "[]")]
        except ValueError:
            ids = []
        for sid in ids:
            subprocess.run([binary, "sandbox", "rm", sid], env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
