//! The one-shot slot an execution's outcome is delivered through.
//!
//! The worker running the script and the watchdog race to fill it (the watchdog only when a
//! worker is stuck past its deadline); the first answer wins. The caller waits on it either
//! blocking ([`PendingExecution::wait`]) or as a future, so the executor needs no async
//! runtime of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Execution;

#[derive(Default)]
struct State {
    value: Option<Execution>,
    answered: bool,
    waker: Option<Waker>,
}

/// Shared between the caller and whoever answers.
#[derive(Default)]
pub(crate) struct Reply {
    state: Mutex<State>,
    ready: Condvar,
    /// Set when the caller stopped waiting: the worker interrupts the script.
    pub(crate) cancelled: AtomicBool,
}

impl Reply {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deliver the outcome. Returns `false` (and drops it) when someone answered first.
    pub(crate) fn send(&self, e: Execution) -> bool {
        let waker = {
            let mut s = self.lock();
            if s.answered {
                return false;
            }
            s.answered = true;
            s.value = Some(e);
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Has an answer been delivered?
    pub(crate) fn answered(&self) -> bool {
        self.lock().answered
    }
}

/// An execution submitted to a [`JsExecutor`](super::JsExecutor): a future of its
/// [`Execution`], or [`wait`](Self::wait) for it. Dropping it before the answer interrupts the
/// script.
#[must_use = "an execution is interrupted when its PendingExecution is dropped"]
pub struct PendingExecution {
    pub(crate) reply: Arc<Reply>,
}

impl PendingExecution {
    /// Block the calling thread until the execution ends.
    pub fn wait(self) -> Execution {
        let mut s = self.reply.lock();
        loop {
            if let Some(e) = s.value.take() {
                return e;
            }
            s = self
                .reply
                .ready
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Future for PendingExecution {
    type Output = Execution;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Execution> {
        let mut s = self.reply.lock();
        match s.value.take() {
            Some(e) => Poll::Ready(e),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for PendingExecution {
    fn drop(&mut self) {
        if !self.reply.answered() {
            self.reply.cancelled.store(true, Ordering::Relaxed);
        }
    }
}
