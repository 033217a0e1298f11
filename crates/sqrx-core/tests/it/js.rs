//! The JavaScript executors through their public API: the "must be true" list of issue 5,
//! run against the in-process executor and against the confined one (worker processes started
//! from this crate's `sqrx-init`). Each behaviour test `js_x` is `js_x::in_process` and
//! `js_x::confined`; the confinement itself is checked in `js_confined.rs`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use sqrx_core::js::{
    ABANDON_GRACE, ConfinedJsExecutor, Execution, ExecutionStatus, JsExecutor, JsLimits, JsRequest,
    JsRunner, LogLevel,
};

/// CPU-heavy tests (timeouts, OOM) run one at a time so they do not distort each other's
/// response times on a small machine.
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which executor a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InProcess,
    Confined,
}

/// The sqrx-init binary built with these tests: confined workers start from it.
pub const WORKER_PROGRAM: &str = env!("CARGO_BIN_EXE_sqrx-init");

/// A confined executor with these limits and workers, started from this build's sqrx-init.
pub fn confined(limits: JsLimits, workers: usize) -> ConfinedJsExecutor {
    ConfinedJsExecutor::builder()
        .limits(limits)
        .workers(workers)
        .program(WORKER_PROGRAM)
        .build()
        .expect("confined executor")
}

fn build(kind: Kind, limits: JsLimits, workers: Option<usize>) -> Box<dyn JsRunner> {
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match kind {
        Kind::InProcess => Box::new(
            JsExecutor::builder()
                .limits(limits)
                .workers(workers)
                .build()
                .expect("executor"),
        ),
        Kind::Confined => Box::new(confined(limits, workers)),
    }
}

fn executor(kind: Kind) -> Box<dyn JsRunner> {
    build(kind, JsLimits::default(), None)
}

fn with_limits(kind: Kind, limits: JsLimits) -> Box<dyn JsRunner> {
    build(kind, limits, None)
}

fn one_worker(kind: Kind, limits: JsLimits) -> Box<dyn JsRunner> {
    build(kind, limits, Some(1))
}

/// `js_x::in_process` and `js_x::confined` for each behaviour test `js_x(kind)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn in_process() {
                    super::$name(super::Kind::InProcess)
                }
                #[test]
                fn confined() {
                    super::$name(super::Kind::Confined)
                }
            }
        )*
    };
}

both!(
    js_results_console_await_and_input,
    js_value_conversions,
    js_thrown_errors,
    js_timeout_infinite_loop,
    js_timeout_catastrophic_regex,
    js_timeout_sort_with_looping_comparator,
    js_timeout_async_loop,
    js_timeout_keeps_logs_and_stops_pending_jobs,
    js_timeout_in_uninterruptible_builtin_abandons_the_worker,
    js_out_of_memory_then_next_run_succeeds,
    js_out_of_memory_is_recognised_after_the_heap_emptied,
    js_cyclic_garbage_is_collected_during_an_execution,
    js_deep_recursion_is_a_range_error,
    js_no_require_process_fetch_or_modules,
    js_fresh_global_state_per_execution,
    js_thousand_parallel_executions_get_their_own_results,
    js_async_run_is_a_future,
    js_log_cap_truncates_with_a_marker,
    js_result_cap_truncates_with_a_marker,
    js_invalid_limits_are_errors,
    js_throw_null_is_an_error_not_oom,
);

fn run(js: &dyn JsRunner, code: &str) -> Execution {
    js.run_blocking(JsRequest::new(code))
}

fn ok(js: &dyn JsRunner, code: &str) -> serde_json::Value {
    let out = run(js, code);
    assert_eq!(out.status, ExecutionStatus::Success, "{code}: {out:?}");
    assert_eq!(out.error, None);
    out.result
}

fn thrown(js: &dyn JsRunner, code: &str) -> sqrx_core::js::ExecutionError {
    let out = run(js, code);
    assert_eq!(out.status, ExecutionStatus::Error, "{code}: {out:?}");
    assert_eq!(out.result, serde_json::Value::Null);
    out.error.expect("error set")
}

// 1. results, console, await, input

fn js_results_console_await_and_input(kind: Kind) {
    let js = &*executor(kind);
    let out = run(js, "1+2");
    let v = serde_json::to_value(&out).expect("json");
    assert_eq!(v["status"], "success");
    assert_eq!(v["result"], 3);
    assert_eq!(v["error"], false);
    assert_eq!(v["log"], json!([]));
    assert!(v["executionTime"].as_f64().expect("number") >= 0.0);

    let out = run(js, r#"console.log("Hello!", {a:1})"#);
    assert_eq!(out.status, ExecutionStatus::Success);
    assert_eq!(
        out.result,
        serde_json::Value::Null,
        "undefined becomes null"
    );
    assert_eq!(out.log.len(), 1);
    assert_eq!(out.log[0].level, LogLevel::Log);
    assert_eq!(out.log[0].data, vec![json!("Hello!"), json!({"a": 1})]);
    let ts = &out.log[0].timestamp;
    chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339");
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-01-02T03:04:05.678Z".len(),
        "{ts}"
    );
    let v = serde_json::to_value(&out).expect("json");
    assert_eq!(v["log"][0]["type"], "log");

    assert_eq!(ok(js, "await Promise.resolve(7)"), 7);
    let out = js.run_blocking(JsRequest::new("input.x*2").with_input(json!({"x": 21})));
    assert_eq!(out.result, 42);
}

fn js_value_conversions(kind: Kind) {
    let js = &*executor(kind);
    assert_eq!(
        ok(js, "({a: [1, 'two', null, undefined], b: {c: true}})"),
        json!({"a": [1, "two", null, null], "b": {"c": true}})
    );
    assert_eq!(ok(js, "undefined"), serde_json::Value::Null);
    assert_eq!(
        ok(js, "12345678901234567890n"),
        json!("12345678901234567890")
    );
    assert_eq!(ok(js, "0.5 + 0.25"), json!(0.75));
    assert_eq!(ok(js, "NaN"), serde_json::Value::Null);
    assert_eq!(ok(js, "new Date(0)"), json!("1970-01-01T00:00:00.000Z"));
    assert_eq!(
        ok(js, "Promise.resolve({ok: 1})"),
        json!({"ok": 1}),
        "a returned promise is awaited"
    );
    assert_eq!(
        ok(js, "input"),
        serde_json::Value::Null,
        "input is null when absent"
    );
    for level in ["log", "info", "warn", "error", "debug"] {
        let out = run(js, &format!("console.{level}(1n, [undefined], () => 1)"));
        assert_eq!(out.log.len(), 1, "{level}");
        let v = serde_json::to_value(&out.log[0]).expect("json");
        assert_eq!(v["type"], level);
        assert_eq!(v["data"], json!(["1", [null], "[Function (anonymous)]"]));
    }

    let e = thrown(js, "const a = {}; a.self = a; a");
    assert_eq!(e.name, "TypeError");
    assert!(
        e.message.contains("cyclic") && e.message.contains("$.self"),
        "{e:?}"
    );
    let e = thrown(js, "({f() {}})");
    assert!(
        e.message.contains("function") && e.message.contains("$.f"),
        "{e:?}"
    );
    let e = thrown(js, "let a = []; for (let i = 0; i < 10000; i++) a = [a]; a");
    assert!(e.message.contains("nested"), "{e:?}");
    // Logging cyclic values is fine.
    let out = run(js, "const o = {}; o.o = o; console.log(o); 1");
    assert_eq!(out.log[0].data, vec![json!({"o": "[Circular]"})]);
}

// 2. errors

fn js_thrown_errors(kind: Kind) {
    let js = &*executor(kind);
    let e = thrown(js, r#"throw new TypeError("bad")"#);
    assert_eq!(e.name, "TypeError");
    assert_eq!(e.message, "bad");
    assert!(e.stack.contains("<script>:1"), "{e:?}");
    let v = serde_json::to_value(run(js, "throw new TypeError('bad')")).expect("json");
    assert_eq!(v["error"]["name"], "TypeError");
    assert!(v["error"]["stack"].is_string());

    let e = thrown(js, "let x = ;");
    assert_eq!(e.name, "SyntaxError");
    assert!(!e.message.is_empty());
    assert!(e.stack.contains("<script>"), "{e:?}");

    let e = thrown(js, "throw 5");
    assert_eq!((e.name.as_str(), e.message.as_str()), ("Error", "5"));
    let e = thrown(js, "await Promise.reject(new RangeError('no'))");
    assert_eq!((e.name.as_str(), e.message.as_str()), ("RangeError", "no"));
    let e = thrown(js, "throw {message: 'plain object'}");
    assert_eq!(e.message, "plain object");
    let e = thrown(js, "await new Promise(() => {})");
    assert!(e.message.contains("nothing can settle"), "{e:?}");
}

// 3. timeouts

/// Run `code` on a one-worker executor with a 500 ms timeout: it must answer `timeout` within
/// timeout + 100 ms, and the same worker must then run a script normally.
fn assert_times_out(kind: Kind, code: &str, limits: JsLimits) {
    let _g = heavy();
    let timeout = limits.timeout;
    let js = &*one_worker(kind, limits);
    let start = Instant::now();
    let out = run(js, code);
    let elapsed = start.elapsed();
    assert_eq!(out.status, ExecutionStatus::Timeout, "{code}: {out:?}");
    assert_eq!(
        out.error.as_ref().map(|e| e.name.as_str()),
        Some("TimeoutError")
    );
    assert!(
        elapsed <= timeout + Duration::from_millis(100),
        "{code}: answered after {elapsed:?} (timeout {timeout:?})"
    );
    assert_eq!(ok(js, "40 + 2"), 42, "the worker is reusable after {code}");
}

fn half_second() -> JsLimits {
    JsLimits {
        timeout: Duration::from_millis(500),
        ..JsLimits::default()
    }
}

fn js_timeout_infinite_loop(kind: Kind) {
    assert_times_out(kind, "while(true){}", half_second());
}

fn js_timeout_catastrophic_regex(kind: Kind) {
    assert_times_out(kind, r#"/(a+)+$/.test("a".repeat(40)+"b")"#, half_second());
}

fn js_timeout_sort_with_looping_comparator(kind: Kind) {
    // 1e7 elements take ~160 MB of JSValues: give the heap room so that the time limit, not
    // the memory limit, is what stops it.
    let limits = JsLimits {
        memory_bytes: 1 << 30,
        ..half_second()
    };
    assert_times_out(
        kind,
        "Array.from({length:1e7},(_, i)=>i).sort((a,b)=>{while(true){}})",
        limits,
    );
}

fn js_timeout_async_loop(kind: Kind) {
    assert_times_out(kind, "for(;;) await null", half_second());
}

fn js_timeout_keeps_logs_and_stops_pending_jobs(kind: Kind) {
    let _g = heavy();
    let js = &*one_worker(kind, half_second());
    let out = run(
        js,
        "console.log('before'); (async () => { for(;;) await null })(); 1",
    );
    assert_eq!(out.status, ExecutionStatus::Timeout, "{out:?}");
    assert_eq!(out.log[0].data, vec![json!("before")]);
    // The abandoned job chain of the timed-out run never runs in the next one.
    let out = run(js, "console.log('next'); 2");
    assert_eq!(out.status, ExecutionStatus::Success, "{out:?}");
    assert_eq!(out.log.len(), 1);
}

fn js_timeout_in_uninterruptible_builtin_abandons_the_worker(kind: Kind) {
    let _g = heavy();
    // replaceAll over a 20 MB string runs entirely in C (~2 s here) and never polls the
    // interrupt handler; the watchdog answers for the worker and starts a replacement.
    let limits = JsLimits {
        timeout: Duration::from_millis(100),
        memory_bytes: 1 << 30,
        ..JsLimits::default()
    };
    let js = &*one_worker(kind, limits.clone());
    let code = "const s = 'a'.repeat(2e7); s.replaceAll('a', 'bb').length";
    let start = Instant::now();
    let out = run(js, code);
    let elapsed = start.elapsed();
    assert_eq!(out.status, ExecutionStatus::Timeout, "{out:?}");
    assert!(
        elapsed <= limits.timeout + Duration::from_millis(100),
        "answered after {elapsed:?}"
    );
    // Only the watchdog answers this late (the interrupt handler answers at the deadline).
    let watchdog_after = (limits.timeout + ABANDON_GRACE).as_secs_f64() * 1000.0;
    assert!(out.execution_time_ms >= watchdog_after, "{out:?}");
    assert_eq!(
        ok(js, "40 + 2"),
        42,
        "a replacement worker runs the next script"
    );
}

// 4. memory and stack

fn js_out_of_memory_then_next_run_succeeds(kind: Kind) {
    let _g = heavy();
    let js = &*one_worker(kind, JsLimits::default());
    let out = run(js, r#"let a=[]; for(;;) a.push("x".repeat(1e6))"#);
    assert_eq!(out.status, ExecutionStatus::OutOfMemory, "{out:?}");
    assert_eq!(
        serde_json::to_value(&out).expect("json")["status"],
        "out_of_memory"
    );
    assert_eq!(ok(js, "1+2"), 3);
}

fn js_out_of_memory_is_recognised_after_the_heap_emptied(kind: Kind) {
    let _g = heavy();
    let js = &*one_worker(kind, JsLimits::default());
    // The data is freed while the exception unwinds out of `fill`, and what reaches the top is
    // not the engine's own error: still an out-of-memory.
    let out = run(
        js,
        r#"function fill() { let a = []; for (;;) a.push("y".repeat(1e6)); }
           try { fill() } catch (e) { throw new Error("gave up: " + e) }"#,
    );
    assert_eq!(out.status, ExecutionStatus::OutOfMemory, "{out:?}");
    // Memory problems a script handles are its own business.
    let out = run(
        js,
        r#"function fill() { let a = []; for (;;) a.push("y".repeat(1e6)); }
           let r = "none"; try { fill() } catch (e) { r = "recovered" }; r"#,
    );
    assert_eq!(out.status, ExecutionStatus::Success, "{out:?}");
    assert_eq!(out.result, serde_json::json!("recovered"));
    // A script's own `throw null` is an ordinary error.
    assert_eq!(run(js, "throw null").status, ExecutionStatus::Error);
}

/// The body of `js_out_of_memory_returns_rss_to_baseline`, run in a child process of the test
/// binary so that no other test's allocations move the RSS.
fn oom_rss_in_this_process() {
    let js = &*one_worker(Kind::InProcess, JsLimits::default());
    for _ in 0..20 {
        ok(
            js,
            "JSON.stringify(Array.from({length: 1000}, (_, i) => ({i})))",
        );
    }
    let baseline = rss_bytes();
    for (round, code) in [
        r#"let a=[]; for(;;) a.push("x".repeat(1e6))"#,
        "let a=[]; for(;;) a.push({n: Math.random(), s: 'k' + a.length})",
        r#"let a=[]; for(;;) a.push("x".repeat(1e6))"#,
    ]
    .into_iter()
    .enumerate()
    {
        let out = run(js, code);
        assert_eq!(
            out.status,
            ExecutionStatus::OutOfMemory,
            "round {round}: {out:?}"
        );
        assert_eq!(ok(js, "1+2"), 3);
    }
    let after = rss_bytes();
    println!("RSS baseline {baseline} after {after}");
    // Each OOM run grew the heap by the 64 MiB limit; what stays must be far less than that.
    assert!(
        after <= baseline + (16 << 20),
        "RSS grew from {baseline} to {after} bytes"
    );
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn js_out_of_memory_returns_rss_to_baseline() {
    if std::env::var_os("SQRX_JS_RSS_CHILD").is_some() {
        return oom_rss_in_this_process();
    }
    let _g = heavy();
    // The same test again, alone in a child process (which takes the branch above).
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "js::js_out_of_memory_returns_rss_to_baseline",
            "--exact",
            "--nocapture",
        ])
        .env("SQRX_JS_RSS_CHILD", "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("RSS baseline"),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn js_cyclic_garbage_is_collected_during_an_execution(kind: Kind) {
    let _g = heavy();
    // ~50 MB of cycles in total, never more than a few live: only the collector running on its
    // own during the script keeps it under 8 MiB. Twice, since the executor collects and
    // resets the collector's threshold itself between executions.
    let js = &*one_worker(
        kind,
        JsLimits {
            memory_bytes: 8 << 20,
            ..JsLimits::default()
        },
    );
    for _ in 0..2 {
        let code = "for (let i = 0; i < 3e5; i++) { const a = {i}; a.self = {a}; } 'done'";
        assert_eq!(ok(js, code), "done");
    }
}

fn js_deep_recursion_is_a_range_error(kind: Kind) {
    let js = &*executor(kind);
    let e = thrown(js, "function f(n) { return f(n + 1) + 1 } f(0)");
    assert_eq!(e.name, "RangeError", "{e:?}");
    assert_eq!(ok(js, "1+2"), 3);
}

// 5. no ambient capabilities

fn js_no_require_process_fetch_or_modules(kind: Kind) {
    let js = &*executor(kind);
    assert_eq!(
        ok(
            js,
            "[typeof require, typeof process, typeof fetch, typeof Deno, typeof setTimeout, typeof performance]"
        ),
        json!([
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "undefined"
        ])
    );
    let e = thrown(js, r#"await import("fs")"#);
    assert!(e.message.contains("fs"), "{e:?}");
    let e = thrown(js, r#"await import("./x.js")"#);
    assert!(!e.message.is_empty(), "{e:?}");
    assert_eq!(thrown(js, "import fs from 'fs'").name, "SyntaxError");
}

fn js_fresh_global_state_per_execution(kind: Kind) {
    let js = &*one_worker(kind, JsLimits::default());
    ok(
        js,
        "globalThis.leak = 1; var v = 2; Array.prototype.evil = () => 3; Object.freeze(Object.prototype); 0",
    );
    assert_eq!(
        ok(
            js,
            "[typeof leak, typeof v, typeof [].evil, Object.isFrozen(Object.prototype)]"
        ),
        json!(["undefined", "undefined", "undefined", false])
    );
}

// 6. parallelism

fn js_thousand_parallel_executions_get_their_own_results(kind: Kind) {
    let js = &*executor(kind);
    let pending: Vec<_> = (0..1000)
        .map(|i| {
            js.run(
                JsRequest::new("globalThis.mine = (globalThis.mine ?? 0) + input.i; console.log(input.i); await null; [mine, input.s]")
                    .with_input(json!({"i": i, "s": format!("s{i}")})),
            )
        })
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        let out = p.wait();
        assert_eq!(out.status, ExecutionStatus::Success, "{i}: {out:?}");
        assert_eq!(out.result, json!([i, format!("s{i}")]));
        assert_eq!(out.log[0].data, vec![json!(i)]);
    }
}

fn js_async_run_is_a_future(kind: Kind) {
    let js = &*executor(kind);
    let out = futures_lite_block_on(js.run(JsRequest::new("await 1; 5")));
    assert_eq!(out.result, 5);
}

/// A minimal executor for one future (the crate depends on no async runtime).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

// 7. caps

fn js_log_cap_truncates_with_a_marker(kind: Kind) {
    let js = &*executor(kind);
    let out = run(
        js,
        r#"for (let i = 0; i < 100; i++) console.log("x".repeat(1e6)); "done""#,
    );
    assert_eq!(out.status, ExecutionStatus::Success, "{:?}", out.error);
    assert_eq!(out.result, "done");
    let last = out.log.last().expect("marker");
    assert_eq!(last.level, LogLevel::Warn);
    assert!(
        last.data[0]
            .as_str()
            .expect("string")
            .contains("log truncated"),
        "{last:?}"
    );
    let bytes = serde_json::to_string(&out.log).expect("json").len();
    assert!(bytes < 2 << 20, "log is {bytes} bytes");

    let out = run(
        js,
        r#"for (let i = 0; i < 3000; i++) console.log("y".repeat(1000)); 1"#,
    );
    assert_eq!(out.status, ExecutionStatus::Success);
    assert!(
        out.log.len() > 900 && out.log.len() < 1100,
        "{}",
        out.log.len()
    );
    assert!(
        out.log.last().expect("marker").data[0]
            .as_str()
            .expect("s")
            .contains("truncated")
    );
}

fn js_result_cap_truncates_with_a_marker(kind: Kind) {
    let js = &*with_limits(
        kind,
        JsLimits {
            max_result_bytes: 1000,
            ..JsLimits::default()
        },
    );
    let out = run(js, "Array.from({length: 1e6}, (_, i) => i)");
    assert_eq!(out.status, ExecutionStatus::Success);
    let s = out.result.as_str().expect("truncated to a string");
    assert!(s.starts_with("[0,1,2,3"), "{s}");
    assert!(s.ends_with("[truncated: over the 1000-byte limit]"), "{s}");
    assert!(s.len() < 1100);
    assert_eq!(ok(js, "'x'.repeat(900)").as_str().map(str::len), Some(900));
}

// host functions

#[test]
fn js_host_functions_sync_and_async() {
    let js = &JsExecutor::builder()
        .host_fn("add", |args| {
            let n: f64 = args.iter().filter_map(|v| v.as_f64()).sum();
            Ok(json!(n))
        })
        .host_fn("fail", |_| Err("no such user".into()))
        .host_fn_async("lookup", |args| {
            Box::pin(async move {
                let key = args
                    .first()
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                // Resolved from another thread, as an embedder's runtime would.
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = tx.send(format!("value of {key}"));
                });
                let v = ThreadFuture(Some(rx)).await;
                Ok(json!({"key": v}))
            })
        })
        .host_fn_async("reject", |_| Box::pin(async { Err("denied".to_string()) }))
        .build()
        .expect("executor");
    assert_eq!(ok(js, "add(1, 2, 3)"), 6);
    assert_eq!(ok(js, "const r = await lookup('k'); r.key"), "value of k");
    assert_eq!(
        ok(
            js,
            "(await Promise.all([lookup('a'), lookup('b')])).map(r => r.key)"
        ),
        json!(["value of a", "value of b"])
    );
    let e = thrown(js, "fail()");
    assert_eq!(
        (e.name.as_str(), e.message.as_str()),
        ("Error", "no such user")
    );
    assert_eq!(
        ok(js, "try { fail() } catch (e) { e.message }"),
        "no such user"
    );
    assert_eq!(thrown(js, "await reject()").message, "denied");
    assert_eq!(thrown(js, "add(() => 1)").name, "TypeError");

    let bad = JsExecutor::builder()
        .host_fn("console", |_| Ok(json!(1)))
        .build();
    assert_eq!(
        bad.expect_err("reserved").kind(),
        sqrx_core::ErrorKind::InvalidArgument
    );
    let dup = JsExecutor::builder()
        .host_fn("a", |_| Ok(json!(1)))
        .host_fn("a", |_| Ok(json!(1)))
        .build();
    assert_eq!(
        dup.expect_err("duplicate").kind(),
        sqrx_core::ErrorKind::AlreadyExists
    );
}

/// A future that waits for a value from another thread, polling with its waker (no runtime).
struct ThreadFuture(Option<std::sync::mpsc::Receiver<String>>);

impl std::future::Future for ThreadFuture {
    type Output = String;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<String> {
        let rx = self.0.take().expect("polled after completion");
        match rx.try_recv() {
            Ok(v) => std::task::Poll::Ready(v),
            Err(_) => {
                let waker = cx.waker().clone();
                self.0 = Some(rx);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    waker.wake();
                });
                std::task::Poll::Pending
            }
        }
    }
}

fn js_invalid_limits_are_errors(kind: Kind) {
    let limits = JsLimits {
        timeout: Duration::ZERO,
        ..JsLimits::default()
    };
    let err = match kind {
        Kind::InProcess => JsExecutor::new(limits).expect_err("invalid"),
        Kind::Confined => ConfinedJsExecutor::builder()
            .limits(limits)
            .program(WORKER_PROGRAM)
            .build()
            .expect_err("invalid"),
    };
    let err = sqrx_core::Error::from(err);
    assert_eq!(err.kind(), sqrx_core::ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("timeout"), "{err}");
}

fn js_throw_null_is_an_error_not_oom(kind: Kind) {
    let js = &*executor(kind);
    let e = thrown(js, "throw null");
    assert_eq!((e.name.as_str(), e.message.as_str()), ("Error", "null"));
}
