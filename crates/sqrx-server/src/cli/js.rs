//! `sqrx js ...`: run a script with the in-process QuickJS executor and print its Execution.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use sqrx_core::js::{JsExecutor, JsLimits, JsLimitsPolicy, JsRequest};

use crate::cli::error::CliError;

/// JavaScript commands.
#[derive(Debug, Subcommand)]
pub enum JsCmd {
    /// Run the code given on the command line.
    Eval {
        /// The script.
        code: String,
        #[command(flatten)]
        opts: JsOpts,
    },
    /// Run a script file; `-` reads stdin.
    Run {
        /// The script file, or `-`.
        file: PathBuf,
        #[command(flatten)]
        opts: JsOpts,
    },
}

/// Options shared by `eval` and `run`.
#[derive(Debug, Args)]
pub struct JsOpts {
    /// JSON made available to the script as the global `input`.
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// Timeout in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = JsLimits::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Heap limit in MiB.
    #[arg(long, value_name = "MIB", default_value_t = JsLimits::DEFAULT_MEMORY_MB)]
    memory_mb: u64,
}

/// Run a js command: prints the Execution JSON; fails (exit 1) unless the status is success.
pub fn run(cmd: JsCmd) -> Result<(), CliError> {
    let (code, opts) = match cmd {
        JsCmd::Eval { code, opts } => (code, opts),
        JsCmd::Run { file, opts } => (read_script(&file)?, opts),
    };
    let input = opts
        .input
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| CliError(format!("--input is not valid JSON: {e}")))?;
    let limits = JsLimitsPolicy::default()
        .resolve(Some(opts.timeout_ms), Some(opts.memory_mb))
        .map_err(|e| CliError(e.to_string()))?;
    // One script per process: one worker, no executor kept for later.
    let js = JsExecutor::builder()
        .limits(limits)
        .workers(1)
        .build()
        .map_err(|e| CliError(e.to_string()))?;
    let out = js.run_blocking(JsRequest { code, input });
    let json = serde_json::to_string_pretty(&out).map_err(|e| CliError(e.to_string()))?;
    println!("{json}");
    if out.is_success() {
        Ok(())
    } else {
        // The JSON above says what happened; the error line names the status for scripts.
        Err(CliError(format!(
            "script ended with status {}",
            out.status.as_str()
        )))
    }
}

fn read_script(file: &std::path::Path) -> Result<String, CliError> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError(format!("cannot read the script from stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError(format!("cannot read {}: {e}", file.display())))
    }
}
