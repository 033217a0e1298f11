"""A `sqrx serve` and a headless Chromium for the console's end-to-end tests.

The server runs on a free loopback port over a throwaway data dir (/tmp/sqrx-test-ui-*) with a
token and a config holding a short-lived session template; its sandboxes are destroyed and the
directory removed at the end, whatever happened. Chromium is Debian's (/usr/bin/chromium or
$SQRX_CHROMIUM), driven by Playwright without any browser download. Screenshots go to
$SQRX_UI_ARTIFACTS (default: <target dir>/ui-artifacts). Without root or Chromium the tests
skip, except under SQRX_REQUIRE_PRIVILEGED=1 where they fail."""

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
CHROMIUM = os.environ.get("SQRX_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium stalls on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SHORT_TTL = 8


def _missing(reason):
    if os.environ.get("SQRX_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"the console tests cannot run: {reason} (SQRX_REQUIRE_PRIVILEGED=1)")
    pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir():
    d = os.environ.get("SQRX_UI_ARTIFACTS")
    if not d:
        target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
        d = os.path.join(target, "ui-artifacts")
    os.makedirs(d, exist_ok=True)
    return Path(d)


class Api:
    """The HTTP API with a key, for setting up and checking what the browser did."""

    def __init__(self, url, key):
        self.url = url
        self.key = key

    def call(self, method, path, body=None, raw=None):
        data = None
        headers = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                payload = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            payload = e.read()
            status = e.code
        ctype = "json"
        try:
            value = json.loads(payload) if payload else None
        except ValueError:
            value, ctype = payload, "bytes"
        return status, value if ctype == "json" else payload

    def ok(self, method, path, body=None, raw=None):
        status, value = self.call(method, path, body, raw)
        assert 200 <= status < 300, f"{method} {path}: {status} {value}"
        return value

    def read(self, sandbox, path):
        req = urllib.request.Request(
            f"{self.url}/v1/sandboxes/{sandbox}/files/{path.lstrip('/')}",
            headers={"Authorization": f"Bearer {self.key}"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def sh(self, sandbox, command):
        return self.ok("POST", f"/v1/sandboxes/{sandbox}/exec", {"command": command})


@pytest.fixture(scope="session")
def server():
    if os.geteuid() != 0:
        _missing("not running as root")
    binary = os.environ.get("SQRX_BIN") or str(ROOT / "target/debug/sqrx")
    if not os.access(binary, os.X_OK):
        _missing(f"no sqrx binary at {binary} (set SQRX_BIN)")
    data = tempfile.mkdtemp(prefix="sqrx-test-ui-")
    port = _free_port()
    token = "ui-" + secrets.token_hex(16)
    env = dict(os.environ, SQRX_DATA=data, SQRX_LOG="info")
    for k in ("SQRX_CONFIG", "SQRX_AUTH_TOKEN", "SQRX_LISTEN", "SQRX_DATABASE_URL"):
        env.pop(k, None)
    config = os.path.join(data, "sqrx.toml")
    with open(config, "w") as f:
        f.write(f'[[template]]\nname = "ui-short"\nport = 8080\nttl = {SHORT_TTL}\n')
    log_path = os.path.join(data, "server.log")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--auth-token", token, "--config", config],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log_path, "w"),
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, f"the server did not start: {line!r} {Path(log_path).read_text()}"
        url = f"http://127.0.0.1:{port}"
        yield {"url": url, "token": token, "data": data, "log": log_path, "api": Api(url, token)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log = Path(log_path).read_text(errors="replace") if os.path.exists(log_path) else ""
        shutil.copy(log_path, artifacts_dir() / "server.log") if os.path.exists(log_path) else None
        listed = subprocess.run([binary, "sandbox", "ls", "--json"], env=env, capture_output=True, text=True)
        try:
            ids = [s["id"] for s in json.loads(listed.stdout or "[]")]
        except ValueError:
            ids = []
        for sid in ids:
            subprocess.run([binary, "sandbox", "rm", sid], env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
        # The token never reaches the log, in any form (the terminal sends it as a subprotocol).
        enc = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        assert token not in log and enc not in log, "the token leaked into the server log"


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser, server):
    """new_page(key=None, signed_in=True, **context options): a page of a fresh context."""
    contexts = []

    def make(key=None, signed_in=True, **options):
        options.setdefault("viewport", {"width": 1280, "height": 800})
        ctx = browser.new_context(**options)
        contexts.append(ctx)
        ctx.set_default_timeout(20000)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(server["url"] + "/ui/")
        if signed_in:
            sign_in(page, key or server["token"])
        return page

    yield make
    for ctx in contexts:
        for page in ctx.pages:
            assert not getattr(page, "errors", []), f"uncaught errors in the page: {page.errors}"
        ctx.close()


def sign_in(page, key):
    page.get_by_label("Token").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Sandboxes").wait_for()


@pytest.fixture
def shot():
    d = artifacts_dir()

    def take(page, name, full_page=False):
        page.wait_for_timeout(150)
        page.screenshot(path=str(d / f"{name}.png"), full_page=full_page)

    return take
