"""sqrx.run_js: QuickJS in-process."""

import sqrx


def test_result_and_input():
    res = sqrx.run_js("1+2")
    assert (res.status, res.result, res.error, res.log) == ("success", 3, None, [])
    assert res.execution_time_ms >= 0
    res = sqrx.run_js("({sum: input.xs.reduce((a, b) => a + b, 0), k: input.k})", input={"xs": [1, 2, 3], "k": "v"})
    assert res.result == {"sum": 6, "k": "v"}


def test_console_and_async():
    res = sqrx.run_js("console.log('hi', {a: 1}); console.error('bad'); await Promise.resolve(5)")
    assert res.status == "success" and res.result == 5
    assert [(e["type"], e["data"]) for e in res.log] == [("log", ["hi", {"a": 1}]), ("error", ["bad"])]


def test_thrown_error():
    res = sqrx.run_js("throw new TypeError('boom')")
    assert res.status == "error" and res.result is None
    assert res.error is not None
    assert res.error["name"] == "TypeError" and res.error["message"] == "boom"


def test_limits():
    res = sqrx.run_js("for (;;) {}", timeout_ms=100)
    assert res.status == "timeout"
    res = sqrx.run_js("let a = []; for (;;) a.push(new Array(1e5).fill(1))", memory_mb=8)
    assert res.status == "out_of_memory"
