"""The synchronous API against real sandboxes: create, exec, streams, files, lifecycle."""

import datetime

import pytest

import sqrx


def test_exec_shell_string_and_argv(sb):
    r = sb.exec("echo hi")
    assert r.exit_code == 0 and r.stdout == b"hi\n" and r.text == "hi\n"
    assert r.stderr == b"" and not r.timed_out and not r.oom_killed and not r.truncated
    assert r.signal is None and r.duration_ms >= 0
    assert isinstance(r.started, datetime.datetime) and r.finished >= r.started
    r = sb.exec(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr, r.stderr_text) == (7, b"out\n", b"err\n", "err\n")
    # A list is argv, not a shell line: the ';' reaches echo as an argument.
    assert sb.exec(["echo", "a;", "b"]).text == "a; b\n"


def test_exec_options(sb):
    r = sb.exec("echo $FOO; pwd; cat", env={"FOO": "bar"}, workdir="/tmp", stdin=b"in")
    assert r.text == "bar\n/tmp\nin"
    assert sb.exec("cat", stdin="text").stdout == b"text"
    r = sb.exec("head -c 100000 /dev/zero", output_cap=1000)
    assert len(r.stdout) == 1000 and r.truncated


def test_exec_as_a_user_and_setuid(rt, sb, new_id):
    # An account of the sandbox's /etc/passwd: its uid, its home as the workdir (nobody's
    # does not exist: /), its HOME; files it makes are its own.
    r = sb.exec("id -u; id -g; pwd; echo $HOME; touch /tmp/n; stat -c %u /tmp/n", user="nobody")
    assert r.text == "65534\n65534\n/\n/nonexistent\n65534\n"
    assert sb.spawn("sleep 5", user="65534").pid > 1
    with pytest.raises(sqrx.NotFound):
        sb.exec("true", user="mallory")
    assert "NoNewPrivs:\t1" in sb.exec("grep NoNewPrivs /proc/self/status").text
    suid = rt.create(new_id(), layers=["000-base"], memory_mb=256, setuid=True)
    try:
        assert "NoNewPrivs:\t0" in suid.exec("grep NoNewPrivs /proc/self/status").text
    finally:
        suid.destroy()


def test_exec_timeout_kills_the_process_tree(sb):
    r = sb.exec("sleep 30 & sleep 30", timeout=0.5)
    assert r.timed_out and r.exit_code is None and r.signal == 9
    assert r.duration_ms < 10_000
    assert "sleep" not in sb.exec("ps -o comm").text


def test_processes_survive_between_execs(sb):
    p = sb.spawn("sleep 1000")
    assert p.pid > 1
    assert str(p.pid) in sb.exec("ps -o pid").text
    p.kill(9)
    assert p.wait() == (None, 9)


def test_exec_stream(sb):
    events = list(sb.exec_stream(["sh", "-c", "echo a; sleep 0.1; echo b >&2; exit 3"]))
    kinds = [e.kind for e in events]
    assert kinds == ["stdout", "stderr", "exit"]
    assert events[0].data == b"a\n" and events[1].text == "b\n"
    assert events[0].result is None
    result = events[-1].result
    assert result is not None and result.exit_code == 3 and result.stdout == b"a\n"


def test_closing_a_stream_stops_the_exec(sb):
    with sb.exec_stream("echo started; exec sleep 1000") as stream:
        first = next(stream)
        assert first.text == "started\n"
    assert next(stream, None) is None
    assert "sleep" not in sb.exec("ps -o comm").text


def test_files(sb):
    sb.files.write("/data/a.txt", b"data")
    assert sb.files.read("/data/a.txt") == b"data"
    sb.files.write("/data/b.sh", "echo from b", mode=0o755)
    assert [(f.name, f.kind, f.size) for f in sb.files.list("/data")] == [
        ("a.txt", "file", 4),
        ("b.sh", "file", 11),
    ]
    info = sb.files.stat("/data/b.sh")
    assert info.path == "/data/b.sh" and info.mode == 0o755
    assert isinstance(info.mtime, datetime.datetime)
    assert sb.exec("/data/b.sh").text == "from b\n"
    assert sb.exec("cat /data/a.txt").stdout == b"data"
    sb.files.mkdir("/data/x/y")
    assert sb.files.stat("/data/x/y").kind == "dir"
    sb.files.remove("/data/x", recursive=True)
    with pytest.raises(sqrx.NotFound):
        sb.files.stat("/data/x")


def test_list_get_info_logs(rt, sb):
    assert sb.id in [s.id for s in rt.list()]
    again = rt.get(sb.id)
    assert again.id == sb.id
    info = again.info()
    assert info.status == "running" and info.layers == ["000-base"] and info.memory_mb == 256
    assert info.init_pid > 1 and info.upper_mb == 512 and info.expires is None
    sb.exec("echo logged")
    last = sb.logs()[-1]
    assert last.command == "echo logged" and last.exit_code == 0 and last.stdout == "logged\n"
    assert "000-base" in rt.layers()


def test_pause_and_resume(sb):
    sb.pause()
    assert sb.info().status == "paused"
    with pytest.raises(sqrx.Conflict):
        sb.exec("true")
    sb.resume()
    assert sb.exec("echo back").text == "back\n"


def test_context_manager_destroys(rt, new_id):
    sid = new_id()
    with rt.create(sid) as sb:
        sb.exec("true")
        sb.destroy()  # explicit destroy, then the with block's: the second does nothing
    with pytest.raises(sqrx.NotFound):
        rt.get(sid)
    with pytest.raises(sqrx.NotFound):
        sb.exec("true")


def test_lifetime_timeout_destroys_the_sandbox(rt, new_id):
    import time

    sb = rt.create(new_id(), timeout=1)
    try:
        assert sb.info().expires is not None
        deadline = time.monotonic() + 10
        while sb.id in [s.id for s in rt.list()] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sb.id not in [s.id for s in rt.list()]
    finally:
        sb.destroy()


def test_sandbox_survives_its_runtime_object(data_dir, new_id):
    sid = new_id()
    sb = sqrx.Runtime(data_dir).create(sid)
    try:
        assert sqrx.Runtime(data_dir).get(sid).exec("echo still").text == "still\n"
    finally:
        sb.destroy()


def test_snapshot_and_restore(sb):
    sb.files.write("/data/state.txt", b"one")
    info = sb.snapshot("s1")
    assert info.label == "s1" and info.size > 0 and info.layers == ["000-base"]
    sb.files.write("/data/state.txt", b"two")
    sb.files.write("/data/later.txt", b"later")
    assert [s.label for s in sb.snapshots()] == ["s1"]
    sb.restore("s1")
    assert sb.files.read("/data/state.txt") == b"one"
    assert sb.exec("cat /data/state.txt; test -e /data/later.txt || echo \" gone\"").text == "one gone\n"
    with pytest.raises(sqrx.NotFound):
        sb.restore("no-such-snapshot")
    with pytest.raises(sqrx.AlreadyExists):
        sb.snapshot("s1")


def test_clone_sandbox(rt, sb, new_id):
    sb.files.write("/data/origin.txt", b"from the source")
    clone = rt.clone_sandbox(sb.id, new_id())
    try:
        assert clone.files.read("/data/origin.txt") == b"from the source"
        clone.files.write("/data/origin.txt", b"changed in the clone")
        assert sb.files.read("/data/origin.txt") == b"from the source"
    finally:
        clone.destroy()
