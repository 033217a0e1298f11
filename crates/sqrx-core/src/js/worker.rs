//! A worker thread: one QuickJS runtime kept for many executions, and a fresh context for each
//! execution, built before the execution arrives.
//!
//! Nothing of one execution is visible to the next: each gets a new context (new global
//! object, new builtins), and the runtime itself is replaced after any execution that may have
//! left something behind in it (a timeout leaves promise jobs queued, an out-of-memory leaves a
//! fragmented heap).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rquickjs::context::{EvalOptions, intrinsic};
use rquickjs::function::Rest;
use rquickjs::promise::PromiseState;
use rquickjs::{
    Coerced, Context, Ctx, Exception, FromJs, Function, Object, Persistent, Promise, Runtime, Value,
};

use super::console::{self, LogBuffer};
use super::convert::{self, Budget, Mode};
use super::executor::Shared;
use super::host::{HostFn, HostFunction, HostFuture, HostResult};
use super::reply::Reply;
use super::{Execution, ExecutionError, ExecutionStatus, JsLimits, JsRequest};

/// The ECMAScript builtins every context gets: QuickJS's full set minus its non-standard
/// extras (`performance`, `DOMException`, `atob`/`btoa`).
type Intrinsics = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
    intrinsic::WeakRef,
);

/// The heap size past which QuickJS collects on its own: its default for a new runtime, set
/// again after each execution so every script starts with the same collector behaviour. It is
/// above one context's heap (~100 KiB with the runtime's own), so building a context never
/// triggers a collection.
const GC_THRESHOLD: usize = 256 << 10;

/// The longest a worker sleeps waiting for an async host function before it looks at the
/// deadline and the caller's cancellation again.
const PARK_SLICE: Duration = Duration::from_millis(10);

/// A queued execution. Dropped unanswered (executor shut down, worker died), it answers with
/// an error so no caller waits forever.
pub(crate) struct Job {
    pub(crate) request: JsRequest,
    pub(crate) reply: Arc<Reply>,
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.reply.answered() {
            self.reply.send(failed(
                "InternalError",
                "the js executor stopped before this execution finished".into(),
                Duration::ZERO,
            ));
        }
    }
}

/// What the watchdog sees of a worker.
pub(crate) struct Slot {
    pub(crate) index: usize,
    pub(crate) in_flight: Mutex<Option<InFlight>>,
    /// Set by the watchdog when it answered for this worker and started a replacement: the
    /// thread exits as soon as the engine gives control back.
    pub(crate) abandoned: AtomicBool,
}

/// The execution a worker is running.
pub(crate) struct InFlight {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) reply: Arc<Reply>,
}

impl Slot {
    pub(crate) fn new(index: usize) -> Self {
        Slot {
            index,
            in_flight: Mutex::new(None),
            abandoned: AtomicBool::new(false),
        }
    }

    fn set(&self, f: Option<InFlight>) {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = f;
    }
}

/// What the interrupt handler checks.
struct Watch {
    deadline: Cell<Option<Instant>>,
    cancel: RefCell<Option<Arc<Reply>>>,
    fired: Cell<bool>,
}

impl Watch {
    fn expired(&self) -> bool {
        if self.fired.get() {
            return true;
        }
        let late = self.deadline.get().is_some_and(|d| Instant::now() >= d);
        let cancelled = self
            .cancel
            .borrow()
            .as_ref()
            .is_some_and(|r| r.cancelled.load(Ordering::Relaxed));
        if late || cancelled {
            self.fired.set(true);
        }
        self.fired.get()
    }
}

/// A pending call of an async host function.
struct HostCall {
    future: HostFuture,
    resolve: Persistent<Function<'static>>,
    reject: Persistent<Function<'static>>,
}

/// Wakes the worker thread when a host future can make progress.
struct ThreadWaker {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// One runtime and the per-execution state its callbacks write into.
struct Engine {
    // Field order is drop order: host calls hold values of the runtime.
    host_calls: Rc<RefCell<Vec<HostCall>>>,
    log: Rc<RefCell<LogBuffer>>,
    watch: Rc<Watch>,
    /// Set by the allocator when it refused memory (reset before each execution).
    refused: Arc<AtomicBool>,
    rt: Runtime,
}

/// Why an engine must not be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    Keep,
    Replace,
    /// Replace and hand freed memory back to the OS.
    ReplaceAndTrim,
}

impl Engine {
    fn new(limits: &JsLimits) -> rquickjs::Result<Self> {
        // The allocator enforces the heap limit (not QuickJS's own check, which refuses
        // before any allocator sees the request) so that it can tell us it refused.
        let refused = Arc::new(AtomicBool::new(false));
        let rt = Runtime::new_with_alloc(crate::sys::malloc::LimitedAllocator::new(
            limits.memory_bytes,
            Arc::clone(&refused),
        ))?;
        rt.set_max_stack_size(limits.stack_bytes);
        rt.set_gc_threshold(GC_THRESHOLD);
        let watch = Rc::new(Watch {
            deadline: Cell::new(None),
            cancel: RefCell::new(None),
            fired: Cell::new(false),
        });
        let w = Rc::clone(&watch);
        rt.set_interrupt_handler(Some(Box::new(move || w.expired())));
        Ok(Engine {
            host_calls: Rc::default(),
            log: Rc::default(),
            watch,
            refused,
            rt,
        })
    }

    /// Free what the last execution left: its dropped context's builtins form cycles that
    /// only the collector frees. Run while no context is alive, a collection visits only that
    /// garbage (~20 µs for a context); the automatic collections it replaces ran while the next
    /// context was being built, and visited it as well.
    fn collect(&self) {
        self.rt.run_gc();
        self.rt.set_gc_threshold(GC_THRESHOLD);
    }

    /// A fresh context with `console` and the host functions defined.
    fn prepare(&self, hosts: &[HostFunction], limits: &JsLimits) -> rquickjs::Result<Context> {
        let context = Context::custom::<Intrinsics>(&self.rt)?;
        context.with(|ctx| {
            console::install(&ctx, &self.log)?;
            for h in hosts {
                install_host(&ctx, h, &self.host_calls, limits.max_result_bytes)?;
            }
            Ok::<_, rquickjs::Error>(())
        })?;
        Ok(context)
    }

    fn execute(
        &mut self,
        context: &Context,
        request: &JsRequest,
        reply: &Arc<Reply>,
        limits: &JsLimits,
        started: Instant,
    ) -> (Execution, Reuse) {
        let deadline = started + limits.timeout;
        self.watch.deadline.set(Some(deadline));
        self.watch.fired.set(false);
        *self.watch.cancel.borrow_mut() = Some(Arc::clone(reply));
        self.log.borrow_mut().reset(limits.max_log_bytes);

        self.refused.store(false, Ordering::Relaxed);
        let outcome = context.with(|ctx| {
            let outcome = self.evaluate(&ctx, request, limits);
            // Calls the script never awaited are abandoned with its context.
            self.host_calls.borrow_mut().clear();
            outcome
        });

        // An uncaught exception after the allocator refused memory is an out-of-memory, whatever
        // was thrown: `InternalError: out of memory`, or `null` when the engine could not even
        // allocate that error (the heap may be empty again once the exception unwound).
        let outcome = match outcome {
            Outcome::Thrown(_) if self.refused.load(Ordering::Relaxed) => {
                Outcome::OutOfMemory(oom_error())
            }
            Outcome::Thrown(e) if e.name == NULL_THROWN => Outcome::Thrown(ExecutionError {
                name: "Error".into(),
                ..e
            }),
            o => o,
        };
        self.watch.deadline.set(None);
        *self.watch.cancel.borrow_mut() = None;
        let log = self.log.borrow_mut().take();
        let elapsed = started.elapsed();
        let (status, result, error) = match outcome {
            Outcome::Value(v) => (ExecutionStatus::Success, v, None),
            Outcome::Thrown(e) => (ExecutionStatus::Error, serde_json::Value::Null, Some(e)),
            Outcome::TimedOut => (
                ExecutionStatus::Timeout,
                serde_json::Value::Null,
                Some(timeout_error(limits.timeout)),
            ),
            Outcome::OutOfMemory(e) => (
                ExecutionStatus::OutOfMemory,
                serde_json::Value::Null,
                Some(e),
            ),
        };
        let reuse = match status {
            ExecutionStatus::Success | ExecutionStatus::Error => Reuse::Keep,
            ExecutionStatus::Timeout => Reuse::Replace,
            ExecutionStatus::OutOfMemory => Reuse::ReplaceAndTrim,
        };
        let execution = Execution {
            status,
            result,
            error,
            log,
            execution_time_ms: Execution::millis(elapsed),
        };
        (execution, reuse)
    }

    fn evaluate<'js>(&self, ctx: &Ctx<'js>, request: &JsRequest, limits: &JsLimits) -> Outcome {
        match self.evaluate_inner(ctx, request, limits) {
            Ok(o) => o,
            Err(e) => self.classify(ctx, e),
        }
    }

    fn evaluate_inner<'js>(
        &self,
        ctx: &Ctx<'js>,
        request: &JsRequest,
        limits: &JsLimits,
    ) -> Result<Outcome, rquickjs::Error> {
        let input = match &request.input {
            Some(v) => json_to_js(ctx, v)?,
            None => Value::new_null(ctx.clone()),
        };
        ctx.globals().set("input", input)?;

        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.promise = true;
        options.backtrace_barrier = true;
        options.filename = Some("<script>".into());
        // Script mode with top-level await: QuickJS wraps the completion value as
        // `{value: <last expression>}` in the promise it returns.
        let wrapped: Promise<'js> = ctx.eval_with_options(request.code.as_bytes(), options)?;
        let completion: Object<'js> = match self.settle(ctx, &wrapped)? {
            Settled::Fulfilled(v) => Object::from_js(ctx, v)?,
            Settled::Rejected(reason) => return Ok(self.thrown(ctx, reason)),
            Settled::Stuck(o) => return Ok(o),
        };
        let mut value: Value<'js> = completion.get("value")?;
        // A returned promise is awaited too.
        if let Some(p) = value.as_promise().cloned() {
            value = match self.settle(ctx, &p)? {
                Settled::Fulfilled(v) => v,
                Settled::Rejected(reason) => return Ok(self.thrown(ctx, reason)),
                Settled::Stuck(o) => return Ok(o),
            };
        }
        // Jobs queued by the script but not awaited still run, under the same deadline.
        loop {
            if self.watch.expired() {
                return Ok(Outcome::TimedOut);
            }
            if !ctx.execute_pending_job() {
                break;
            }
        }

        let mut budget = Budget::new(limits.max_result_bytes.saturating_add(1));
        match convert::to_json(value, Mode::Result, &mut budget) {
            Ok(json) => {
                let (json, _) =
                    convert::cap_result(json, budget.exhausted, limits.max_result_bytes);
                Ok(Outcome::Value(json))
            }
            Err(convert::ConvertError::Js(e)) => Err(e),
            Err(e) => Ok(Outcome::Thrown(ExecutionError {
                name: "TypeError".into(),
                message: e.to_string(),
                stack: String::new(),
            })),
        }
    }

    /// Run promise jobs and host futures until `p` settles or the deadline passes.
    fn settle<'js>(&self, ctx: &Ctx<'js>, p: &Promise<'js>) -> rquickjs::Result<Settled<'js>> {
        let waker = Arc::new(ThreadWaker {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        loop {
            match p.state() {
                PromiseState::Resolved => {
                    let v: Value<'js> = p
                        .result()
                        .unwrap_or_else(|| Ok(Value::new_undefined(ctx.clone())))?;
                    return Ok(Settled::Fulfilled(v));
                }
                PromiseState::Rejected => {
                    // The reason comes back as a pending exception.
                    let reason = match p.result::<Value<'js>>() {
                        Some(Err(rquickjs::Error::Exception)) | None => ctx.catch(),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(v)) => v,
                    };
                    return Ok(Settled::Rejected(reason));
                }
                PromiseState::Pending => {}
            }
            if self.watch.expired() {
                return Ok(Settled::Stuck(Outcome::TimedOut));
            }
            if ctx.execute_pending_job() {
                continue;
            }
            if self.host_calls.borrow().is_empty() {
                return Ok(Settled::Stuck(Outcome::Thrown(ExecutionError {
                    name: "Error".into(),
                    message: "the script awaits a promise that nothing can settle".into(),
                    stack: String::new(),
                })));
            }
            if !self.poll_host_calls(ctx, &waker)? && !waker.woken.swap(false, Ordering::AcqRel) {
                std::thread::park_timeout(PARK_SLICE);
            }
        }
    }

    /// Poll every pending host future once; settle the finished ones. Returns whether any
    /// finished.
    fn poll_host_calls<'js>(
        &self,
        ctx: &Ctx<'js>,
        waker: &Arc<ThreadWaker>,
    ) -> rquickjs::Result<bool> {
        let waker = Waker::from(Arc::clone(waker));
        let mut cx = std::task::Context::from_waker(&waker);
        let calls = std::mem::take(&mut *self.host_calls.borrow_mut());
        let mut pending = Vec::with_capacity(calls.len());
        let mut finished = Vec::new();
        for mut call in calls {
            let polled = catch_unwind(AssertUnwindSafe(|| call.future.as_mut().poll(&mut cx)));
            match polled {
                Ok(Poll::Pending) => pending.push(call),
                Ok(Poll::Ready(r)) => finished.push((call, r)),
                Err(_) => finished.push((call, Err("host function panicked".into()))),
            }
        }
        let progress = !finished.is_empty();
        {
            let mut calls = self.host_calls.borrow_mut();
            pending.append(&mut calls);
            *calls = pending;
        }
        for (call, result) in finished {
            settle_host_call(ctx, call, result)?;
        }
        Ok(progress)
    }

    fn thrown<'js>(&self, ctx: &Ctx<'js>, reason: Value<'js>) -> Outcome {
        if self.watch.fired.get() {
            return Outcome::TimedOut;
        }
        let e = describe_thrown(ctx, reason);
        if e.name == "InternalError" && e.message == "out of memory" {
            Outcome::OutOfMemory(e)
        } else {
            Outcome::Thrown(e)
        }
    }

    fn classify<'js>(&self, ctx: &Ctx<'js>, e: rquickjs::Error) -> Outcome {
        match e {
            rquickjs::Error::Exception => {
                let reason = ctx.catch();
                self.thrown(ctx, reason)
            }
            _ if self.watch.fired.get() => Outcome::TimedOut,
            rquickjs::Error::Allocation => Outcome::OutOfMemory(oom_error()),
            other => Outcome::Thrown(ExecutionError {
                name: "InternalError".into(),
                message: other.to_string(),
                stack: String::new(),
            }),
        }
    }
}

enum Settled<'js> {
    Fulfilled(Value<'js>),
    Rejected(Value<'js>),
    Stuck(Outcome),
}

enum Outcome {
    Value(serde_json::Value),
    Thrown(ExecutionError),
    TimedOut,
    OutOfMemory(ExecutionError),
}

fn oom_error() -> ExecutionError {
    ExecutionError {
        name: "InternalError".into(),
        message: "out of memory".into(),
        stack: String::new(),
    }
}

pub(crate) fn timeout_error(timeout: Duration) -> ExecutionError {
    ExecutionError {
        name: "TimeoutError".into(),
        message: format!("execution exceeded the {} ms timeout", timeout.as_millis()),
        stack: String::new(),
    }
}

/// An execution that never ran a script to its end.
pub(crate) fn failed(name: &str, message: String, elapsed: Duration) -> Execution {
    Execution {
        status: ExecutionStatus::Error,
        result: serde_json::Value::Null,
        error: Some(ExecutionError {
            name: name.into(),
            message,
            stack: String::new(),
        }),
        log: Vec::new(),
        execution_time_ms: Execution::millis(elapsed),
    }
}

/// A marker name for a thrown `null` until [`Engine::execute`] has looked at the heap.
const NULL_THROWN: &str = "\0null";

/// `{name, message, stack}` of any thrown value.
fn describe_thrown<'js>(ctx: &Ctx<'js>, reason: Value<'js>) -> ExecutionError {
    let text = |v: rquickjs::Result<Value<'js>>| -> String {
        match v {
            Ok(v) if v.is_undefined() => String::new(),
            Ok(v) => Coerced::<String>::from_js(ctx, v)
                .map(|c| c.0)
                .unwrap_or_else(|_| {
                    ctx.catch();
                    String::new()
                }),
            Err(_) => {
                ctx.catch();
                String::new()
            }
        }
    };
    match reason.as_object() {
        Some(obj) if reason.is_error() || obj.contains_key("message").unwrap_or(false) => {
            let mut name = text(obj.get("name"));
            if name.is_empty() {
                name = "Error".into();
            }
            ExecutionError {
                name,
                message: text(obj.get("message")),
                stack: text(obj.get("stack")),
            }
        }
        _ => ExecutionError {
            name: if reason.is_null() {
                NULL_THROWN
            } else {
                "Error"
            }
            .into(),
            message: text(Ok(reason.clone())),
            stack: String::new(),
        },
    }
}

/// JSON to a JavaScript value, through the engine's own JSON parser.
fn json_to_js<'js>(ctx: &Ctx<'js>, v: &serde_json::Value) -> rquickjs::Result<Value<'js>> {
    // serde_json's output is always valid JSON, so a failure here is an allocation failure.
    let text = serde_json::to_string(v).map_err(|_| rquickjs::Error::Allocation)?;
    ctx.json_parse(text)
}

fn host_args<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    args: Vec<Value<'js>>,
    cap: usize,
) -> rquickjs::Result<Vec<serde_json::Value>> {
    let mut budget = Budget::new(cap);
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        match convert::to_json(a, Mode::Result, &mut budget) {
            Ok(v) => out.push(v),
            Err(convert::ConvertError::Js(e)) => return Err(e),
            Err(e) => {
                return Err(Exception::throw_type(
                    ctx,
                    &format!(
                        "{name}: argument {}",
                        e.to_string().replace("result is", "is")
                    ),
                ));
            }
        }
        if budget.exhausted {
            return Err(Exception::throw_range(
                ctx,
                &format!("{name}: arguments exceed {cap} bytes of JSON"),
            ));
        }
    }
    Ok(out)
}

fn install_host<'js>(
    ctx: &Ctx<'js>,
    h: &HostFunction,
    calls: &Rc<RefCell<Vec<HostCall>>>,
    cap: usize,
) -> rquickjs::Result<()> {
    let name = h.name.clone();
    let f = match &h.f {
        HostFn::Sync(f) => {
            let f = Arc::clone(f);
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
                    let args = host_args(&ctx, &name, args.0, cap)?;
                    match catch_unwind(AssertUnwindSafe(|| f(args))) {
                        Ok(Ok(v)) => json_to_js(&ctx, &v),
                        Ok(Err(message)) => Err(Exception::throw_message(&ctx, &message)),
                        Err(_) => Err(Exception::throw_internal(
                            &ctx,
                            &format!("host function {name} panicked"),
                        )),
                    }
                },
            )?
        }
        HostFn::Async(f) => {
            let f = Arc::clone(f);
            let calls = Rc::clone(calls);
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
                    let args = host_args(&ctx, &name, args.0, cap)?;
                    let future = match catch_unwind(AssertUnwindSafe(|| f(args))) {
                        Ok(fut) => fut,
                        Err(_) => {
                            return Err(Exception::throw_internal(
                                &ctx,
                                &format!("host function {name} panicked"),
                            ));
                        }
                    };
                    let (promise, resolve, reject) = ctx.promise()?;
                    calls.borrow_mut().push(HostCall {
                        future,
                        resolve: Persistent::save(&ctx, resolve),
                        reject: Persistent::save(&ctx, reject),
                    });
                    Ok(promise.into_value())
                },
            )?
        }
    };
    f.set_name(&h.name)?;
    ctx.globals().set(h.name.as_str(), f)
}

fn settle_host_call<'js>(
    ctx: &Ctx<'js>,
    call: HostCall,
    result: HostResult,
) -> rquickjs::Result<()> {
    let resolve = call.resolve.restore(ctx)?;
    let reject = call.reject.restore(ctx)?;
    match result {
        Ok(v) => {
            let v = json_to_js(ctx, &v)?;
            resolve.call::<_, ()>((v,))
        }
        Err(message) => {
            let e = Exception::from_message(ctx.clone(), &message)?;
            reject.call::<_, ()>((e,))
        }
    }
}

/// The worker thread's body.
pub(crate) fn run(shared: Arc<Shared>, slot: Arc<Slot>) {
    let limits = shared.limits.clone();
    let mut engine: Option<Engine> = None;
    loop {
        if engine.is_none() {
            match Engine::new(&limits) {
                Ok(e) => engine = Some(e),
                Err(e) => tracing::error!(error = %e, "cannot create a QuickJS runtime"),
            }
        }
        // The context for the next execution is built before it arrives.
        let prepared = engine.as_ref().map(|e| e.prepare(&shared.hosts, &limits));
        let Some(job) = shared.next_job() else {
            return;
        };
        let started = Instant::now();
        let (Some(eng), Some(Ok(context))) = (engine.as_mut(), prepared) else {
            // Drop the broken engine; the next round starts a new one.
            engine = None;
            job.reply.send(failed(
                "InternalError",
                "cannot create a JavaScript context".into(),
                started.elapsed(),
            ));
            continue;
        };
        let deadline = started + limits.timeout;
        slot.set(Some(InFlight {
            started,
            deadline,
            reply: Arc::clone(&job.reply),
        }));
        shared.watch_until(deadline);
        let (execution, reuse) = eng.execute(&context, &job.request, &job.reply, &limits, started);
        slot.set(None);
        job.reply.send(execution);
        drop(job);
        drop(context);
        if slot.abandoned.load(Ordering::Acquire) {
            // The watchdog answered for us and started a replacement.
            return;
        }
        match reuse {
            Reuse::Keep => eng.collect(),
            Reuse::Replace => engine = None,
            Reuse::ReplaceAndTrim => {
                engine = None;
                crate::sys::malloc::release_free_memory();
            }
        }
    }
}

/// One engine driven by its caller's thread, without a pool or a watchdog: what a confined
/// worker process runs, one execution at a time. Like a pool worker, it builds the context for
/// the next execution ahead of it ([`LocalRunner::prepare`]), and frees the last execution's
/// context there too, after its answer went out; it replaces its runtime after a timeout or an
/// out-of-memory.
pub(crate) struct LocalRunner {
    limits: JsLimits,
    // Field order is drop order: the contexts hold the runtime.
    /// The last execution's context and what it left the runtime fit for.
    spent: Option<(Context, Reuse)>,
    prepared: Option<Context>,
    engine: Option<Engine>,
}

impl LocalRunner {
    pub(crate) fn new(limits: JsLimits) -> Self {
        LocalRunner {
            limits,
            spent: None,
            prepared: None,
            engine: None,
        }
    }

    /// Free the last execution's context, start the runtime if there is none and build the
    /// next execution's context.
    pub(crate) fn prepare(&mut self) {
        if let Some((context, reuse)) = self.spent.take() {
            drop(context);
            match reuse {
                Reuse::Keep => {
                    if let Some(engine) = &self.engine {
                        engine.collect();
                    }
                }
                Reuse::Replace => self.engine = None,
                Reuse::ReplaceAndTrim => {
                    self.engine = None;
                    crate::sys::malloc::release_free_memory();
                }
            }
        }
        if self.engine.is_none() {
            match Engine::new(&self.limits) {
                Ok(e) => self.engine = Some(e),
                Err(e) => tracing::error!(error = %e, "cannot create a QuickJS runtime"),
            }
        }
        if self.prepared.is_none()
            && let Some(engine) = &self.engine
        {
            match engine.prepare(&[], &self.limits) {
                Ok(c) => self.prepared = Some(c),
                Err(_) => self.engine = None,
            }
        }
    }

    /// Run one script to its end (the interrupt handler enforces the deadline). Its context is
    /// freed by the next [`LocalRunner::prepare`].
    pub(crate) fn run(&mut self, request: &JsRequest) -> Execution {
        self.prepare();
        let started = Instant::now();
        let (Some(engine), Some(context)) = (self.engine.as_mut(), self.prepared.take()) else {
            self.engine = None;
            return failed(
                "InternalError",
                "cannot create a JavaScript context".into(),
                started.elapsed(),
            );
        };
        // Nobody cancels in-process: the host cancels a confined execution by killing the
        // process.
        let reply = Arc::new(Reply::default());
        let (execution, reuse) = engine.execute(&context, request, &reply, &self.limits, started);
        self.spent = Some((context, reuse));
        execution
    }
}
