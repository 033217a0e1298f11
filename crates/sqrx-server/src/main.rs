//! `sqrx`: the command-line interface (and, later, `sqrx serve`).

mod cli;
mod js_cmd;
mod layer_cmd;
mod sandbox_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // This binary doubles as the sandbox init when the runtime re-executes it.
    sqrx_core::init::run_if_init();
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQRX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
