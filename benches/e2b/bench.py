"""Benchmark: `Sandbox.create()` then a first `commands.run("true")` through E2B's Python SDK
against `sqrx serve`, and the same (create + first exec) through sqrx's own Python binding, in
one run, the two interleaved round by round. Prints p50/p99 of each and their ratio.

Run by run.sh (which builds sqrx in release, starts the server and installs both packages)."""

import os
import statistics
import sys
import tempfile
import time

import sqrx
from e2b import Sandbox

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main():
    data = tempfile.mkdtemp(prefix="sqrx-bench-e2b-binding-")
    rt = sqrx.Runtime(data)
    # Warm both (the base layer, the first mount, the SDK's connection pool).
    rt.create("warm").destroy()
    Sandbox.create("base", timeout=60).kill()
    e2b_times, binding_times = [], []
    for i in range(ROUNDS):
        order = ["e2b", "binding"] if i % 2 == 0 else ["binding", "e2b"]
        for which in order:
            if which == "e2b":
                t = time.perf_counter()
                sbx = Sandbox.create("base", timeout=60)
                sbx.commands.run("true")
                e2b_times.append(time.perf_counter() - t)
                sbx.kill()
            else:
                t = time.perf_counter()
                sb = rt.create(f"b{i}")
                sb.exec("true")
                binding_times.append(time.perf_counter() - t)
                sb.destroy()
    print(f"| path ({ROUNDS} rounds, interleaved) | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, ts in [
        ("E2B Python SDK → sqrx serve: Sandbox.create() + commands.run(\"true\")", e2b_times),
        ("sqrx Python binding: Runtime.create() + exec(\"true\")", binding_times),
    ]:
        print(f"| {name} | {pct(ts, 0.5) * 1e3:.1f} | {pct(ts, 0.99) * 1e3:.1f} |")
    print(
        f"\nratio of p50s (E2B SDK / binding): "
        f"{statistics.median(e2b_times) / statistics.median(binding_times):.2f}"
    )


if __name__ == "__main__":
    main()
