"""The GIL is released during blocking calls: Python threads' execs run in parallel, and
Ctrl-C during a long exec interrupts it instead of hanging the interpreter."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time


def test_eight_threads_exec_in_parallel(sb):
    results = []
    errors = []

    def work():
        try:
            results.append(sb.exec("sleep 1"))
        except Exception as e:  # reported below, not swallowed
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert not errors, errors
    assert [r.exit_code for r in results] == [0] * 8
    # Serial would be >= 8 s; with the GIL held during execs the threads would serialise.
    assert elapsed < 4, f"8 x 1 s execs on 8 threads took {elapsed:.1f} s"


def test_python_runs_while_an_exec_waits(sb):
    counter = 0
    done = threading.Event()

    def spin():
        nonlocal counter
        while not done.is_set():
            counter += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        sb.exec("sleep 1")
    finally:
        done.set()
        t.join()
    assert counter > 10_000, f"the spinning thread barely ran ({counter}): GIL held"


def test_ctrl_c_interrupts_a_long_exec(data_dir, sb):
    script = textwrap.dedent(
        f"""
        import signal, sys, time, sqrx
        # Python keeps an inherited "ignore SIGINT" (a test run started in the background by a
        # non-interactive shell has one): take Ctrl-C as an interactive Python does.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sb = sqrx.Runtime({data_dir!r}).get({sb.id!r})
        print("ready", flush=True)
        start = time.monotonic()
        try:
            sb.exec("exec sleep 1000")
        except KeyboardInterrupt:
            print(f"interrupted after %.1f s" % (time.monotonic() - start), flush=True)
            sys.exit(0)
        sys.exit(1)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.startswith("interrupted")
    # The interrupted exec was stopped inside the sandbox too.
    deadline = time.monotonic() + 5
    while "sleep" in sb.exec("ps -o comm").text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "sleep" not in sb.exec("ps -o comm").text
