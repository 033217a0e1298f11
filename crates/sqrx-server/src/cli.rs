//! Argument definitions and dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin_cmd::{self, AdminCmd};
use crate::js_cmd::{self, JsCmd};
use crate::layer_cmd::{self, LayerCmd};
use crate::sandbox_cmd::{self, SandboxCmd};

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

/// An error already formatted for the one line the CLI prints.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<sqrx_core::Error> for CliError {
    fn from(e: sqrx_core::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<sqrx_core::SandboxError> for CliError {
    fn from(e: sqrx_core::SandboxError) -> Self {
        CliError(e.to_string())
    }
}

impl From<sqrx_core::LayerError> for CliError {
    fn from(e: sqrx_core::LayerError) -> Self {
        CliError(e.to_string())
    }
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<std::process::ExitCode, CliError> {
    let data_dir = sqrx_server::config::data_dir(cli.data_dir, &sqrx_server::config::process_env);
    match cli.command {
        Command::Layer(cmd) => {
            layer_cmd::run(cmd, &data_dir).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Sandbox(cmd) => sandbox_cmd::run(cmd, &data_dir),
        Command::Js(cmd) => js_cmd::run(cmd).map(|()| std::process::ExitCode::SUCCESS),
        Command::Serve(args) => {
            let config =
                sqrx_server::ServerConfig::resolve(&args, &sqrx_server::config::process_env)
                    .map_err(|e| CliError(e.to_string()))?;
            sqrx_server::serve::run(config, data_dir).map_err(|e| CliError(e.to_string()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => {
            admin_cmd::run(cmd, &data_dir).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Openapi => {
            print!("{}", sqrx_server::openapi::document());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
