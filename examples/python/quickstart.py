"""sqrx quick start: a sandbox, a command, a script file, streamed output, a timeout, an
error, and JavaScript in QuickJS. The same story as examples/rust/src/bin/quickstart.rs and
examples/typescript/quickstart.ts.

    pip install ./crates/sqrx-py && sudo python examples/python/quickstart.py

Sandboxes need root. The data dir is the CLI's default ($SQRX_DATA, else /var/lib/sqrx).
"""

import sqrx

# The runtime owns the data dir: layers, sandboxes. The base layer is built on first use.
rt = sqrx.Runtime()

# A sandbox on the base layer with 256 MiB of memory; `with` destroys it at the end.
with rt.create("quickstart", layers=["000-base"], memory_mb=256) as sb:
    r = sb.exec("echo hello from $(hostname)")
    print(f"exit {r.exit_code}: {r.text.strip()}")

    # Files go in from the host; a list is an argv, no shell involved.
    sb.files.write("/data/greet.sh", b'#!/bin/sh\necho "hi, $1"\n', mode=0o755)
    print(sb.exec(["/data/greet.sh", "world"]).text.strip())
    print("files in /data:", [f.name for f in sb.files.list("/data")])

    # Output as it is written.
    for ev in sb.exec_stream("for i in 1 2 3; do echo tick $i; sleep 0.1; done"):
        if ev.kind == "exit":
            print("stream ended, exit", ev.result.exit_code if ev.result else None)
        else:
            print(f"{ev.kind}: {ev.text.strip()}")

    # A timeout kills the command's whole process tree.
    r = sb.exec("sleep 30", timeout=1)
    print(f"timed out: {r.timed_out}")

# Errors are exceptions, one class per kind.
try:
    rt.get("quickstart")
except sqrx.NotFound as e:
    print(f"{e.kind}: {e}")

# JavaScript runs in-process with QuickJS, no sandbox needed.
res = sqrx.run_js("input.xs.map(x => x * 2)", input={"xs": [1, 2, 3]})
print(f"js {res.status}: {res.result}")
