//! The worker process's side: confine itself, then serve executions on its channel.
//!
//! Order matters. Everything that needs privilege (dropping the bounding set, switching
//! user) happens while still root; `PR_SET_PDEATHSIG` and `PR_SET_DUMPABLE` after the switch
//! (a credential change resets both); the seccomp filter last, once nothing but the serving
//! loop's own system calls is left to make. The first QuickJS runtime is built under the
//! filter, so a filter too strict for the engine fails at start, not in the middle of a run.

use std::fs::File;

use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid};

use super::protocol::{self, CHANNEL_FD, FromWorker, PROTOCOL_VERSION, ToWorker};
use crate::js::worker::LocalRunner;
use crate::js::{JsLimits, executor::THREAD_STACK_HEADROOM};

/// Address space allowed beyond the heap and stack limits: the binary, libc, the allocator's
/// own overhead and the host-side copies of a result and a log (each capped at their limits).
const ADDRESS_SPACE_BASE: u64 = 1 << 30;

/// A failed confinement step: what was being done, and why it failed.
struct StepError {
    step: &'static str,
    message: String,
}

fn step<T, E: std::fmt::Display>(step: &'static str, r: Result<T, E>) -> Result<T, StepError> {
    r.map_err(|e| StepError {
        step,
        message: e.to_string(),
    })
}

/// The worker's main: returns the exit code.
pub(super) fn main() -> i32 {
    let mut channel = match crate::sys::confine::take_channel(CHANNEL_FD) {
        Ok(c) => c,
        // Nobody to tell: the host sees the exit status.
        Err(_) => return 3,
    };
    let (limits, uid, gid) = match protocol::read_blocking::<ToWorker>(&mut channel) {
        Ok(Some(ToWorker::Configure {
            protocol,
            limits,
            uid,
            gid,
        })) if protocol == PROTOCOL_VERSION => (JsLimits::from(&limits), uid, gid),
        Ok(Some(ToWorker::Configure { protocol, .. })) => {
            return fail(
                &channel,
                StepError {
                    step: "handshake",
                    message: format!(
                        "host speaks protocol {protocol}, this worker {PROTOCOL_VERSION}"
                    ),
                },
            );
        }
        Ok(_) | Err(_) => return 4,
    };
    if let Err(e) = confine(&limits, uid, gid) {
        return fail(&channel, e);
    }
    serve(channel, limits)
}

fn fail(channel: &File, e: StepError) -> i32 {
    let frame = FromWorker::Failed {
        step: e.step.into(),
        message: e.message,
    };
    send(channel, &frame);
    1
}

fn confine(limits: &JsLimits, uid: u32, gid: u32) -> Result<(), StepError> {
    let parent = std::os::unix::process::parent_id();
    step(
        "close_range",
        crate::sys::confine::close_all_except(CHANNEL_FD),
    )?;
    step("chdir", nix::unistd::chdir("/"))?;

    // Resource limits, hard and soft, before giving up the right to lower them further.
    let stack = limits.stack_bytes as u64 + THREAD_STACK_HEADROOM as u64;
    let address_space = (limits.memory_bytes as u64)
        .saturating_mul(2)
        .saturating_add(stack)
        .saturating_add(ADDRESS_SPACE_BASE);
    step(
        "setrlimit(AS)",
        setrlimit(Resource::RLIMIT_AS, address_space, address_space),
    )?;
    step("setrlimit(CORE)", setrlimit(Resource::RLIMIT_CORE, 0, 0))?;
    step("setrlimit(FSIZE)", setrlimit(Resource::RLIMIT_FSIZE, 0, 0))?;
    let nofile = CHANNEL_FD as u64 + 1;
    step(
        "setrlimit(NOFILE)",
        setrlimit(Resource::RLIMIT_NOFILE, nofile, nofile),
    )?;

    if Uid::effective().is_root() {
        // The bounding set needs CAP_SETPCAP to shrink: drop it while still root.
        step(
            "drop bounding capabilities",
            crate::sys::confine::drop_bounding_and_ambient(),
        )?;
        step("setgroups", nix::unistd::setgroups(&[]))?;
        let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
        step("setresgid", nix::unistd::setresgid(g, g, g))?;
        step("setresuid", nix::unistd::setresuid(u, u, u))?;
    }
    // Whatever the start (root or not): no capability left in any set. (Switching from root
    // to another user already emptied the permitted and effective sets.)
    step(
        "drop capabilities",
        crate::sys::confine::drop_bounding_and_ambient(),
    )?;
    step(
        "drop capabilities",
        crate::sys::confine::clear_capabilities(),
    )?;
    // A credential change clears both of these: set them after it.
    step(
        "PR_SET_PDEATHSIG",
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
    )?;
    if std::os::unix::process::parent_id() != parent {
        return Err(StepError {
            step: "PR_SET_PDEATHSIG",
            message: "the host exited while the worker started".into(),
        });
    }
    step("PR_SET_DUMPABLE", nix::sys::prctl::set_dumpable(false))?;
    step("PR_SET_NO_NEW_PRIVS", nix::sys::prctl::set_no_new_privs())?;
    let filter = step("seccomp", super::seccomp::build())?;
    step("seccomp", seccompiler::apply_filter(&filter))?;
    Ok(())
}

fn serve(channel: File, limits: JsLimits) -> i32 {
    let mut runner = LocalRunner::new(limits);
    // The first runtime and context, under the filter.
    runner.prepare();
    let ready = FromWorker::Ready {
        protocol: PROTOCOL_VERSION,
    };
    if !send(&channel, &ready) {
        return 5;
    }
    // Buffered: a frame's header and body come in one `read`.
    let mut incoming = std::io::BufReader::new(&channel);
    loop {
        let request = match protocol::read_blocking::<ToWorker>(&mut incoming) {
            Ok(Some(ToWorker::Run(r))) => r,
            // The host closed the channel: done.
            Ok(None) => return 0,
            Ok(Some(ToWorker::Configure { .. })) | Err(_) => return 6,
        };
        let execution = runner.run(&request);
        drop(request);
        if !send(&channel, &FromWorker::Done(execution)) {
            return 7;
        }
        // The last context is freed and the next one built while the host delivers this
        // answer, before the worker blocks on the next request.
        runner.prepare();
    }
}

/// Write a frame with `write` (the filter allows no `sendto`). A host that went away makes
/// this fail with EPIPE (the Rust runtime ignores SIGPIPE), and the worker exits.
fn send(mut channel: &File, frame: &FromWorker) -> bool {
    use std::io::Write;
    match protocol::encode(frame) {
        Ok(buf) => channel.write_all(&buf).is_ok(),
        Err(_) => false,
    }
}
