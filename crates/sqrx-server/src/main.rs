//! `sqrx`: the command-line interface and `sqrx serve`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // This binary doubles as the sandbox init, the network daemon, the session info service
    // and a confined JavaScript worker when the runtime or the server re-executes it.
    sqrx_core::roles::run_role_if_any();
    let args = cli::Cli::parse();
    match &args.command {
        // The server logs its requests; the CLI only its errors.
        cli::Command::Serve(serve) => sqrx_server::logging::init(serve.log_format, "info"),
        _ => sqrx_server::logging::init(sqrx_server::LogFormat::Text, "error"),
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
