"""The asyncio API: create_async, exec_async, async iteration, async with, cancellation."""

import asyncio
import time

import pytest

import sqrx


def test_create_exec_destroy_async(rt, new_id):
    async def main():
        sb = await rt.create_async(new_id(), layers=["000-base"])
        async with sb:
            r = await sb.exec_async("true")
            assert r.exit_code == 0
            r = await sb.exec_async(["sh", "-c", "echo $X"], env={"X": "y"})
            assert r.stdout == b"y\n"
            assert (await rt.get_async(sb.id)).id == sb.id
            kinds = [ev.kind async for ev in sb.exec_stream("echo a; echo b >&2")]
            assert kinds == ["stdout", "stderr", "exit"]
        return sb.id

    sid = asyncio.run(main())
    with pytest.raises(sqrx.NotFound):
        rt.get(sid)


def test_async_errors(rt, sb):
    async def main():
        with pytest.raises(sqrx.NotFound):
            await rt.get_async("missing-async")
        with pytest.raises(sqrx.AlreadyExists):
            await rt.create_async(sb.id)
        with pytest.raises(sqrx.InvalidArgument):
            await sb.exec_async("true", workdir="rel")

    asyncio.run(main())


def test_execs_overlap_and_the_loop_stays_free(sb):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        start = time.monotonic()
        results = await asyncio.gather(*(sb.exec_async("sleep 1") for _ in range(8)))
        elapsed = time.monotonic() - start
        t.cancel()
        return results, elapsed, ticks

    results, elapsed, ticks = asyncio.run(main())
    assert all(r.exit_code == 0 for r in results)
    assert elapsed < 4, f"8 x 1 s execs took {elapsed:.1f} s: they did not overlap"
    assert ticks > 20, f"the event loop was blocked (only {ticks} ticks)"


def test_cancelling_exec_async_stops_the_exec(sb):
    async def main():
        task = asyncio.ensure_future(sb.exec_async("exec sleep 1000"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while "sleep" in sb.exec("ps -o comm").text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "sleep" not in sb.exec("ps -o comm").text


def test_run_js_async():
    async def main():
        return await asyncio.gather(*(sqrx.run_js_async("input * 2", input=i) for i in range(4)))

    assert [r.result for r in asyncio.run(main())] == [0, 2, 4, 6]


def test_snapshot_and_restore_async(sb):
    async def main():
        sb.files.write("/data/f", b"before")
        snap = await sb.snapshot_async("a1")
        sb.files.write("/data/f", b"after")
        await sb.restore_async(snap.label)
        return (await sb.exec_async("cat /data/f")).stdout

    assert asyncio.run(main()) == b"before"
