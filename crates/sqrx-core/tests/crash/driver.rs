//! `sqrx-crash-driver DATA_DIR INIT STEP OP ARGS...`: one state operation of sqrx-core in a
//! process of its own, for the crash tests (`tests/it/crash.rs`), which kill it.
//!
//! `STEP` arms the fault-injection hook: a number `n` makes the `n`-th step point of the
//! operation send SIGKILL to this process (`sqrx_core::faults::kill_at`); `run` arms nothing
//! (the test kills the process from outside, at a random time, or lets it finish). On success
//! the driver prints the step points it passed, one line, space-separated, and exits 0; a
//! failed operation prints the error and exits 1.
//!
//! Operations: `create ID`, `snapshot ID LABEL`, `restore ID LABEL`, `activate ID LAYER`,
//! `clone SRC NEW`, `destroy ID`.

use std::path::PathBuf;
use std::process::ExitCode;

use sqrx_core::{Runtime, RuntimeConfig, SandboxError, SandboxSpec, faults};

fn run(rt: &Runtime, op: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("{op}: argument {} missing", i + 1))
    };
    // A missing second argument is empty, which the operations refuse as invalid.
    let (a, b) = (arg(0)?, args.get(1).map(String::as_str).unwrap_or(""));
    let done: Result<(), SandboxError> = match op {
        "create" => rt.create(SandboxSpec::new(a)).map(|_| ()),
        "snapshot" => rt.get(a).and_then(|sb| sb.snapshot(Some(b)).map(|_| ())),
        "restore" => rt.get(a).and_then(|mut sb| sb.restore(b)),
        "activate" => rt.get(a).and_then(|mut sb| sb.activate(b)),
        "clone" => rt.clone_sandbox(a, b).map(|_| ()),
        "destroy" => rt.get(a).and_then(|sb| sb.destroy()),
        other => return Err(format!("unknown operation {other:?}")),
    };
    done.map_err(|e| format!("{op}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, init, step, op, rest @ ..] = args.as_slice() else {
        eprintln!("usage: sqrx-crash-driver DATA_DIR INIT STEP|run OP ARGS...");
        return ExitCode::from(2);
    };
    let mut config = RuntimeConfig::new(data);
    config.init_path = Some(PathBuf::from(init));
    let rt = match Runtime::open(config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("open: {e}");
            return ExitCode::from(2);
        }
    };
    match step.parse::<usize>() {
        Ok(n) => faults::kill_at(n),
        Err(_) => faults::record(),
    }
    let result = run(&rt, op, rest);
    let (reached, _) = faults::disarm();
    match result {
        Ok(()) => {
            println!("{}", reached.join(" "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
