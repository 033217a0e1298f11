"""An unchanged E2B program: nothing here knows about sqrx. Pointed at `sqrx serve` by
environment variables only (see README.md)."""

from e2b import Sandbox

with Sandbox.create("base", timeout=120, metadata={"example": "hello"}) as sbx:
    sbx.files.write("hello.py", "print('hello from', __import__('platform').system())\n")
    result = sbx.commands.run(
        "whoami; python3 hello.py; sudo whoami", on_stdout=lambda line: print("stdout:", line, end="")
    )
    print("exit code:", result.exit_code)
    print("files:", [e.name for e in sbx.files.list(".")])
    print("sandbox:", sbx.sandbox_id, "running:", sbx.is_running())
