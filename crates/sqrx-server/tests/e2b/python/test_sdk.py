"""The official `e2b` Python SDK (pinned in requirements.txt), unchanged, against `sqrx serve`:
only E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY point it at sqrx (see conftest.py)."""

import time

import pytest
from e2b import (
    AuthenticationException,
    CommandExitException,
    FileNotFoundException,
    PtySize,
    Sandbox,
    SandboxException,
    TimeoutException,
)
from e2b.sandbox.sandbox_api import SandboxQuery


@pytest.fixture
def sbx(server):
    s = Sandbox.create("base", timeout=120, envs={"GREETING": "hello"}, metadata={"suite": "e2b"})
    try:
        yield s
    finally:
        s.kill()


def test_lifecycle_create_info_list_timeout_pause_connect_kill(server):
    a = Sandbox.create("base", timeout=60, metadata={"who": "a", "suite": "life"})
    b = Sandbox.create(timeout=60, metadata={"who": "b", "suite": "life"})
    info = a.get_info()
    assert info.sandbox_id == a.sandbox_id and info.template_id == "base"
    assert info.metadata == {"who": "a", "suite": "life"}
    assert info.state.value == "running"
    ends = info.end_at
    # Listed, newest first, one per page, filtered by metadata.
    pager = Sandbox.list(query=SandboxQuery(metadata={"suite": "life"}), limit=1)
    first = pager.next_items()
    assert [s.sandbox_id for s in first] == [b.sandbox_id] and pager.has_next
    second = pager.next_items()
    assert [s.sandbox_id for s in second] == [a.sandbox_id]
    # The timeout moves the end.
    a.set_timeout(600)
    assert a.get_info().end_at > ends
    # Paused: not running; connect resumes it.
    assert a.is_running()
    assert a.pause() is True
    assert a.is_running() is False
    assert a.pause() is False, "already paused"
    again = Sandbox.connect(a.sandbox_id)
    assert again.is_running()
    assert again.commands.run("echo back").stdout == "back\n"
    # Killed: gone.
    assert Sandbox.kill(b.sandbox_id) is True
    assert Sandbox.kill(b.sandbox_id) is False
    assert a.kill() is True
    assert a.is_running() is False
    with pytest.raises(SandboxException):
        Sandbox.connect(a.sandbox_id)


def test_a_sandbox_expires_at_its_timeout(server):
    s = Sandbox.create("base", timeout=2)
    assert s.is_running()
    deadline = time.time() + 15
    while time.time() < deadline and s.is_running():
        time.sleep(0.5)
    assert s.is_running() is False
    assert s.sandbox_id not in [x.sandbox_id for x in Sandbox.list().next_items()]


def test_commands_run_stream_fail_and_time_out(sbx):
    r = sbx.commands.run("echo $GREETING $EXTRA; pwd; echo oops >&2", envs={"EXTRA": "there"}, cwd="/tmp")
    assert r.stdout == "hello there\n/tmp\n" and r.stderr == "oops\n" and r.exit_code == 0
    with pytest.raises(CommandExitException) as e:
        sbx.commands.run("echo partial; exit 7")
    assert e.value.exit_code == 7 and e.value.stdout == "partial\n"
    # Output arrives while the command runs.
    seen = []
    started = time.time()
    sbx.commands.run(
        "for i in 1 2 3; do echo $i; sleep 0.4; done",
        on_stdout=lambda d: seen.append((time.time() - started, d)),
        on_stderr=lambda d: None,
    )
    assert [d for _, d in seen] == ["1\n", "2\n", "3\n"]
    assert seen[0][0] < 0.35 and seen[-1][0] > 0.7, seen
    with pytest.raises(TimeoutException):
        sbx.commands.run("sleep 10", timeout=1)


def test_background_commands_list_connect_stdin_and_kill(sbx):
    h = sbx.commands.run("sleep 30", background=True)
    assert h.pid in [p.pid for p in sbx.commands.list()]
    # Another handle on the same process, from its pid.
    other = sbx.commands.connect(h.pid)
    assert sbx.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException):
        other.wait()
    assert h.pid not in [p.pid for p in sbx.commands.list()]
    assert sbx.commands.kill(h.pid) is False
    # stdin: send some, close it, the command sees end-of-file.
    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(cat.pid, "line one\n")
    sbx.commands.send_stdin(cat.pid, "line two\n")
    sbx.commands.close_stdin(cat.pid)
    assert cat.wait().stdout == "line one\nline two\n"
    # stdin as a stream (StreamInput, a client-streaming call).
    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.stream_input(cat.pid, iter(["streamed one\n", b"streamed two\n"]))
    sbx.commands.close_stdin(cat.pid)
    assert cat.wait().stdout == "streamed one\nstreamed two\n"
    # wait() on a background command gives its result.
    bg = sbx.commands.run("sleep 0.3; echo done", background=True)
    assert bg.wait().stdout == "done\n"


def test_files(sbx):
    info = sbx.files.write("/tmp/dir/hello.txt", "hi there")
    assert info.path == "/tmp/dir/hello.txt" and info.name == "hello.txt"
    assert sbx.files.read("/tmp/dir/hello.txt") == "hi there"
    sbx.files.write("/tmp/dir/bin.dat", bytes(range(256)))
    assert bytes(sbx.files.read("/tmp/dir/bin.dat", format="bytes")) == bytes(range(256))
    # A stream (sent raw, octet-stream) and a gzip-compressed upload.
    import io

    sbx.files.write("/tmp/dir/stream.txt", io.BytesIO(b"from a stream"))
    assert sbx.files.read("/tmp/dir/stream.txt") == "from a stream"
    sbx.files.write("/tmp/dir/zipped.txt", "x" * 10000, gzip=True)
    assert sbx.files.read("/tmp/dir/zipped.txt") == "x" * 10000
    assert b"".join(sbx.files.read("/tmp/dir/zipped.txt", format="stream")) == b"x" * 10000
    written = sbx.files.write_files(
        [{"path": "/tmp/many/a.txt", "data": "A"}, {"path": "/tmp/many/sub/b.txt", "data": b"B"}]
    )
    assert sorted(w.path for w in written) == ["/tmp/many/a.txt", "/tmp/many/sub/b.txt"]
    assert sbx.commands.run("cat /tmp/many/a.txt /tmp/many/sub/b.txt").stdout == "AB"
    names = {e.path: e.type.value for e in sbx.files.list("/tmp/many", depth=2)}
    assert names == {"/tmp/many/a.txt": "file", "/tmp/many/sub": "dir", "/tmp/many/sub/b.txt": "file"}
    assert [e.name for e in sbx.files.list("/tmp/many")] == ["a.txt", "sub"]
    assert sbx.files.exists("/tmp/dir/hello.txt") and not sbx.files.exists("/tmp/nothing")
    entry = sbx.files.get_info("/tmp/dir/hello.txt")
    assert entry.size == 8 and entry.permissions == "-rw-r--r--"
    assert sbx.files.make_dir("/tmp/new/deep") is True
    assert sbx.files.make_dir("/tmp/new/deep") is False
    moved = sbx.files.rename("/tmp/dir/hello.txt", "/tmp/new/deep/moved.txt")
    assert moved.path == "/tmp/new/deep/moved.txt"
    assert not sbx.files.exists("/tmp/dir/hello.txt")
    sbx.files.remove("/tmp/new")
    assert not sbx.files.exists("/tmp/new")
    with pytest.raises(FileNotFoundException):
        sbx.files.read("/tmp/nothing")
    with pytest.raises(FileNotFoundException):
        sbx.files.remove("/tmp/nothing")


def test_watch_dir_sees_a_command_write(sbx):
    sbx.files.make_dir("/tmp/w")
    handle = sbx.files.watch_dir("/tmp/w", recursive=True)
    h = sbx.commands.run(
        "echo a > /tmp/w/a.txt; sleep 0.4; mkdir /tmp/w/sub; sleep 0.4; "
        "echo b > /tmp/w/sub/b.txt; sleep 0.4; echo more >> /tmp/w/a.txt; sleep 0.4; "
        "rm /tmp/w/sub/b.txt; sleep 0.4; sleep 5",
        background=True,
    )
    seen = set()
    deadline = time.time() + 10
    wanted = {
        ("a.txt", "create"), ("sub", "create"), ("sub/b.txt", "create"),
        ("a.txt", "write"), ("sub/b.txt", "remove"),
    }
    # Events arrive while the command still runs.
    while time.time() < deadline and not wanted <= seen:
        seen |= {(e.name, e.type.value) for e in handle.get_new_events()}
        time.sleep(0.2)
    assert wanted <= seen, seen
    assert h.pid in [p.pid for p in sbx.commands.list()], "the command is still running"
    handle.stop()
    h.kill()
    with pytest.raises(SandboxException):
        sbx.files.watch_dir("/tmp/w/nothing-here")


def test_get_host_reaches_a_service_in_the_sandbox(sbx, server):
    import urllib.request

    sbx.files.write("/tmp/www/index.html", "served from the sandbox\n")
    sbx.commands.run("busybox httpd -f -p 8000 -h /tmp/www", background=True)
    host = sbx.get_host(8000)
    assert host == f"8000-{sbx.sandbox_id}.sqrx.test"
    # Wildcard DNS would send {host} here; the test says so with the Host header.
    req = urllib.request.Request(
        server["url"] + "/index.html",
        headers={"Host": host, "Authorization": "Bearer " + server["token"]},
    )
    body = None
    for _ in range(50):
        try:
            body = urllib.request.urlopen(req, timeout=5).read()
            break
        except Exception:
            time.sleep(0.1)
    assert body == b"served from the sandbox\n"


def test_the_base_template_is_e2b_s_user_image(sbx):
    # Commands run as `user` in its home, with passwordless sudo and python3.
    r = sbx.commands.run("whoami; pwd; echo $HOME; id -G")
    assert r.stdout == "user\n/home/user\n/home/user\n1000 27\n"
    assert sbx.commands.run("sudo whoami").stdout == "root\n"
    assert sbx.commands.run("sudo -n touch /root/by-sudo && sudo ls /root").stdout == "by-sudo\n"
    py = sbx.commands.run("python3 -c 'import sys, json; print(json.dumps(sys.version_info[:2]))'")
    assert py.stdout.startswith("[3, ")
    # user= picks another account; root's home is root's.
    assert sbx.commands.run("whoami; pwd", user="root").stdout == "root\n/root\n"
    with pytest.raises(CommandExitException):
        sbx.commands.run("touch /root/not-yours")
    # Files: relative paths start in the user's home, written files are the user's (0644),
    # and a command of the user can change them; user.* xattrs work.
    info = sbx.files.write("notes.txt", "mine")
    assert info.path == "/home/user/notes.txt"
    entry = sbx.files.get_info("notes.txt")
    assert (entry.owner, entry.group, entry.permissions) == ("user", "user", "-rw-r--r--")
    sbx.commands.run("echo more >> notes.txt && mkdir -p made/here")
    assert sbx.files.read("/home/user/notes.txt") == "minemore\n"
    made = sbx.files.get_info("made/here")
    assert (made.owner, made.type.value) == ("user", "dir")
    sbx.files.make_dir("mine/deep")
    assert sbx.files.get_info("mine").owner == "user"
    assert sbx.files.write("/tmp/as-root.txt", "r", user="root").path == "/tmp/as-root.txt"
    assert sbx.files.get_info("/tmp/as-root.txt").owner == "root"
    x = sbx.commands.run(
        "python3 -c \"import os; os.setxattr('notes.txt', 'user.tag', b'v'); "
        "print(os.getxattr('notes.txt', 'user.tag').decode())\""
    )
    assert x.stdout == "v\n"


def test_pty(sbx):
    out = []
    term = sbx.pty.create(PtySize(rows=24, cols=80), timeout=0)
    sbx.pty.resize(term.pid, PtySize(rows=40, cols=100))
    sbx.pty.send_stdin(term.pid, b"stty size; echo marker-$((40+2)); exit\n")
    # The output arrives through the callback; the shell exits at `exit`.
    try:
        term.wait(on_pty=lambda data: out.append(bytes(data)))
    except CommandExitException:
        pass
    text = b"".join(out)
    assert b"marker-42" in text and b"40 100" in text, text
    other = sbx.pty.create(PtySize(rows=24, cols=80), timeout=0)
    assert sbx.pty.kill(other.pid) is True


def test_signed_file_urls(sbx):
    import urllib.error
    import urllib.request

    sbx.files.write("/tmp/signed.txt", "signed content")
    url = sbx.download_url("/tmp/signed.txt")
    assert "signature=v1_" in url
    # No sandbox header, no token: the signature alone opens it.
    assert urllib.request.urlopen(url, timeout=10).read() == b"signed content"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("signed.txt", "other.txt"), timeout=10)
    assert e.value.code == 401
    upload = sbx.upload_url("/tmp/uploaded.txt")
    boundary = "sqrxboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/uploaded.txt\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\nup we go\r\n--{boundary}--\r\n"
    ).encode()
    req = urllib.request.Request(
        upload, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert urllib.request.urlopen(req, timeout=10).status == 200
    assert sbx.files.read("/tmp/uploaded.txt") == "up we go"


def test_errors_map_to_the_sdk_exceptions(sbx):
    from e2b import InvalidArgumentException, NotFoundException, SandboxNotFoundException

    sbx.files.write("/tmp/plain.txt", "x")
    with pytest.raises(InvalidArgumentException):
        sbx.files.list("/tmp/plain.txt")
    with pytest.raises(NotFoundException):
        sbx.commands.connect(999999)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info("inosuchsandbox")
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect("inosuchsandbox")


def test_the_example_runs_unchanged(server):
    import os
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(__file__), "../../../../../examples/e2b/hello.py")
    out = subprocess.run(
        [sys.executable, example], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["stdout: user", "stdout: hello from Linux", "stdout: root"], out.stdout
    assert "exit code: 0" in lines, out.stdout
    assert "hello.py" in out.stdout


def test_templates_are_layers_or_session_templates(server):
    # `sqrx-e2b-test` is a [[template]] entry of the server's config (conftest.py), no layer.
    s = Sandbox.create("sqrx-e2b-test", timeout=60)
    try:
        assert s.commands.run("echo from a template").stdout == "from a template\n"
    finally:
        s.kill()
    with pytest.raises(SandboxException):
        Sandbox.create("no-such-template-or-layer")


def test_a_bad_body_is_a_400_in_e2b_s_error_shape(server):
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        server["url"] + "/v2/sandboxes",
        data=b'{"timeout": "soon"}',
        headers={"X-API-KEY": server["token"], "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    body = json.loads(e.value.read())
    assert body["code"] == 400 and body["message"].startswith("bad request body")


def test_a_wrong_key_is_an_authentication_error(server):
    with pytest.raises(AuthenticationException):
        Sandbox.create("base", api_key="e2b_" + "0" * 40)
    with pytest.raises(SandboxException):
        Sandbox.create("no-such-template")
