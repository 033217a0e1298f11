//! Host functions: named Rust functions that scripts may call.
//!
//! An embedder gives scripts controlled capabilities by registering functions on the
//! [`JsExecutorBuilder`](super::JsExecutorBuilder). Each becomes a global function in every
//! execution; arguments arrive as JSON values (converted like log arguments) and the returned
//! JSON becomes the call's value. A sync function returns directly; an async one returns a
//! future and the script sees a `Promise`. An `Err(message)` becomes a thrown (or rejected)
//! `Error` with that message.
//!
//! Async host functions are polled on the worker thread that runs the script, with a waker
//! that wakes that thread; the execution's timeout covers them. A future that needs a specific
//! async runtime (a tokio timer, a tokio socket) must be spawned onto that runtime by the host
//! function and its `JoinHandle` awaited instead, which works from any thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::JsError;

/// What a host function returns: a JSON value, or a message the script receives as an `Error`.
pub type HostResult = Result<serde_json::Value, String>;

/// The future an async host function returns.
pub type HostFuture = Pin<Box<dyn Future<Output = HostResult> + Send + 'static>>;

/// A sync host function.
pub type SyncHostFn = dyn Fn(Vec<serde_json::Value>) -> HostResult + Send + Sync + 'static;

/// An async host function.
pub type AsyncHostFn = dyn Fn(Vec<serde_json::Value>) -> HostFuture + Send + Sync + 'static;

/// One registered host function.
#[derive(Clone)]
pub(crate) enum HostFn {
    Sync(Arc<SyncHostFn>),
    Async(Arc<AsyncHostFn>),
}

/// A host function and the global name scripts call it by.
#[derive(Clone)]
pub(crate) struct HostFunction {
    pub(crate) name: String,
    pub(crate) f: HostFn,
}

impl std::fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.f {
            HostFn::Sync(_) => "sync",
            HostFn::Async(_) => "async",
        };
        write!(f, "HostFunction({} {kind})", self.name)
    }
}

/// Names the executor itself defines in every execution.
const RESERVED: [&str; 3] = ["console", "input", "globalThis"];

/// A host function name must be a plain identifier that does not replace the executor's own
/// globals.
pub(crate) fn validate_name(name: &str) -> Result<(), JsError> {
    let bad = |reason| {
        Err(JsError::InvalidHostFunctionName {
            name: name.to_string(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return bad("empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_' || c == '$') => {
            return bad("must start with a letter, `_` or `$`");
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
        return bad("may hold only ASCII letters, digits, `_` and `$`");
    }
    if RESERVED.contains(&name) {
        return bad("reserved by the executor");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["add", "_x", "$", "fetchUser2"] {
            validate_name(ok).expect(ok);
        }
        for bad in ["", "2x", "a-b", "a.b", "console", "input", "é"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
