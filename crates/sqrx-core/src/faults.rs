//! Fault injection for tests: named step points in the state operations (snapshot, restore,
//! activate, clone, pause) that a test can make fail, to prove that a failure at any step
//! leaves the sandbox as it was.
//!
//! Each step calls `point` with its name. Without the `fault-injection` cargo feature (never
//! in a release, never by default) `point` is a constant `Ok(())` and compiles away. With it, a
//! test arms the current thread with `fail_at(n)`: the `n`-th point that thread reaches
//! from then on fails with [`Injected`], once; `trace` tells which points were reached.
//! Arming is per thread, so tests running in parallel do not see each other's faults (every
//! step point is reached on the thread that called the operation).
//!
//! `kill_at(n)` arms a crash instead: the `n`-th point sends SIGKILL to the whole process,
//! as `kill -9` of the program embedding the library would at that moment (the crash tests run
//! an operation in a child process armed this way, then recover the data directory).

/// The error a step fails with when a test injected a fault there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected fault at step {point}")]
pub struct Injected {
    /// The step point that failed.
    pub point: &'static str,
}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::cell::RefCell;

    #[derive(Default)]
    pub(super) struct Plan {
        pub fail_at: Option<usize>,
        /// Kill the process at `fail_at` instead of failing the step.
        pub kill: bool,
        pub reached: Vec<&'static str>,
        pub fired: Option<&'static str>,
    }

    thread_local! {
        pub(super) static PLAN: RefCell<Plan> = RefCell::new(Plan::default());
    }
}

/// Reach the step point `name`: fails with [`Injected`] when a test armed this thread to fail
/// here.
#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &'static str) -> Result<(), Injected> {
    armed::PLAN.with_borrow_mut(|plan| {
        let Some(at) = plan.fail_at else {
            return Ok(());
        };
        plan.reached.push(name);
        if plan.fired.is_none() && plan.reached.len() == at {
            if plan.kill {
                tracing::warn!(point = name, "injected crash: SIGKILL to this process");
                // Not caught, not blocked: the process ends here, destructors unrun.
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            plan.fired = Some(name);
            tracing::warn!(point = name, "injected fault");
            return Err(Injected { point: name });
        }
        Ok(())
    })
}

/// Reach the step point `name`. Never fails in this build (no `fault-injection` feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &'static str) -> Result<(), Injected> {
    Ok(())
}

/// Arm the current thread: the `step`-th step point it reaches from now (1-based) fails, once.
/// Clears the trace of points reached.
#[cfg(feature = "fault-injection")]
pub fn fail_at(step: usize) {
    armed::PLAN.with_borrow_mut(|plan| {
        *plan = armed::Plan {
            fail_at: Some(step),
            ..Default::default()
        }
    });
}

/// Arm the current thread: the `step`-th step point it reaches from now (1-based) kills the
/// whole process with SIGKILL (a crash at that step; see the module docs).
#[cfg(feature = "fault-injection")]
pub fn kill_at(step: usize) {
    armed::PLAN.with_borrow_mut(|plan| {
        *plan = armed::Plan {
            fail_at: Some(step),
            kill: true,
            ..Default::default()
        }
    });
}

/// Record the step points the current thread reaches, failing none (a dry run that counts the
/// steps of an operation).
#[cfg(feature = "fault-injection")]
pub fn record() {
    fail_at(usize::MAX);
}

/// Disarm the current thread; returns the step points reached since [`fail_at`] or
/// [`record`], in order (the failed one last, if one failed) and the one that failed.
#[cfg(feature = "fault-injection")]
pub fn disarm() -> (Vec<&'static str>, Option<&'static str>) {
    armed::PLAN.with_borrow_mut(|plan| {
        let plan = std::mem::take(plan);
        (plan.reached, plan.fired)
    })
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn the_nth_point_fails_once_and_only_on_its_thread() {
        assert!(point("a").is_ok(), "disarmed: nothing fails");
        fail_at(2);
        assert!(point("a").is_ok());
        std::thread::spawn(|| assert!(point("other").is_ok()))
            .join()
            .expect("thread");
        assert_eq!(point("b"), Err(Injected { point: "b" }));
        assert!(point("c").is_ok(), "a fault fires once");
        assert_eq!(disarm(), (vec!["a", "b", "c"], Some("b")));
        assert!(point("d").is_ok());
    }
}
