//! `sqrx-server`: the same as `sqrx serve`, for deployments that want a server binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sqrx_server::config::{data_dir, process_env};
use sqrx_server::{ServeArgs, ServerConfig};

/// The sqrx HTTP server.
#[derive(Debug, Parser)]
#[command(name = "sqrx-server", version, about)]
struct Args {
    /// Data directory (else $SQRX_DATA, else sq-sandbox's $SQUASH_DATA, else /var/lib/sqrx for
    /// root and $XDG_DATA_HOME/sqrx otherwise).
    #[arg(long, env = "SQRX_DATA", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    // This binary doubles as the sandbox init, the network daemon, the session info service
    // and a confined JavaScript worker when the runtime or the server re-executes it.
    sqrx_core::roles::run_role_if_any();
    let args = Args::parse();
    sqrx_server::logging::init(args.serve.log_format, "info");
    let config = match ServerConfig::resolve(&args.serve, &process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match sqrx_server::serve::run(config, data_dir(args.data_dir, &process_env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
