//! The `sqrx` command line: [`Cli`], its [`Command`]s and [`run`], which hands each command
//! to the module of its group.

mod admin;
mod error;
mod js;
mod layer;
mod output;
mod remote;
mod sandbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use admin::AdminCmd;
use error::CliError;
use js::JsCmd;
use layer::LayerCmd;
use sandbox::SandboxCmd;

/// sqrx: fast, composable sandboxes for untrusted code.
#[derive(Debug, Parser)]
#[command(name = "sqrx", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory (else $SQRX_DATA, else sq-sandbox's $SQUASH_DATA, else /var/lib/sqrx for
    /// root and $XDG_DATA_HOME/sqrx otherwise).
    #[arg(long, global = true, env = "SQRX_DATA", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, import, list, inspect, verify and remove layers.
    #[command(subcommand)]
    Layer(LayerCmd),
    /// Create sandboxes, run commands in them, inspect and remove them.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Run JavaScript in-process with QuickJS and print the Execution JSON.
    #[command(subcommand)]
    Js(JsCmd),
    /// Run the HTTP server: the native API (/v1), the sq-sandbox API (/cgi-bin), JavaScript
    /// (/v1/execute, /api/execute), /openapi.json and /metrics.
    Serve(Box<sqrx_server::ServeArgs>),
    /// Print the server's OpenAPI document (docs/openapi.json).
    Openapi,
    /// Users and API keys of the multi-tenant server, offline (`bootstrap` makes the first
    /// admin key).
    #[command(subcommand)]
    Admin(AdminCmd),
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<std::process::ExitCode, CliError> {
    let data_dir = sqrx_server::config::data_dir(cli.data_dir, &sqrx_server::config::process_env);
    match cli.command {
        Command::Layer(cmd) => layer::run(cmd, &data_dir).map(|()| std::process::ExitCode::SUCCESS),
        Command::Sandbox(cmd) => sandbox::run(cmd, &data_dir),
        Command::Js(cmd) => js::run(cmd).map(|()| std::process::ExitCode::SUCCESS),
        Command::Serve(args) => {
            let config =
                sqrx_server::ServerConfig::resolve(&args, &sqrx_server::config::process_env)
                    .map_err(|e| CliError(e.to_string()))?;
            sqrx_server::serve::run(config, data_dir).map_err(|e| CliError(e.to_string()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin::run(cmd, &data_dir).map(|()| std::process::ExitCode::SUCCESS),
        Command::Openapi => {
            print!("{}", sqrx_server::openapi::document());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
