//! `sqrx sandbox exec`: running a command in a sandbox, its output streamed to ours.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sqrx_core::{Command, ExecEvent, ExecRequest, Runtime};

use crate::cli::error::CliError;

/// The arguments of `sqrx sandbox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The sandbox id.
    pub(super) id: String,
    /// Kill the command's process tree after this many seconds.
    #[arg(long)]
    pub(super) timeout: Option<f64>,
    /// Working directory inside the sandbox (default: the user's home, / for root).
    #[arg(long)]
    pub(super) workdir: Option<String>,
    /// Run as this user of the sandbox's /etc/passwd (a name or a uid; default root).
    #[arg(long, short = 'u')]
    pub(super) user: Option<String>,
    /// Extra environment, KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(super) env: Vec<String>,
    /// Send this process's stdin to the command.
    #[arg(long, short = 'i')]
    pub(super) stdin: bool,
    /// The command and its arguments (one argument is run with /bin/sh -c).
    #[arg(last = true, required = true)]
    pub(super) command: Vec<String>,
}

/// Run a command and wait for it; the exit code is the command's, 124 on timeout and 128 + N
/// when signal N killed it.
pub fn exec(rt: &Runtime, args: ExecArgs) -> Result<ExitCode, CliError> {
    let ExecArgs {
        id,
        timeout,
        workdir,
        user,
        env,
        stdin,
        command,
    } = args;
    let sandbox = rt.get(&id)?;
    let command = if command.len() == 1 {
        Command::Shell(command[0].clone())
    } else {
        Command::Argv(command)
    };
    let mut req = ExecRequest::new(command);
    req.env = parse_env(&env)?;
    req.workdir = workdir;
    req.user = user;
    if let Some(t) = timeout {
        if !(t.is_finite() && t > 0.0) {
            return Err(CliError(format!(
                "--timeout must be a positive number of seconds, got {t}"
            )));
        }
        req.timeout = Some(Duration::from_secs_f64(t));
    }
    if stdin {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
        req.stdin = Some(buf);
    }
    let result = tokio_runtime()?.block_on(async {
        let mut stream = sandbox.exec_stream(req).await?;
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        while let Some(event) = stream.next().await {
            match event? {
                ExecEvent::Stdout(d) => {
                    let _ = out.write_all(&d);
                    let _ = out.flush();
                }
                ExecEvent::Stderr(d) => {
                    let _ = err.write_all(&d);
                }
                ExecEvent::Exit(r) => return Ok(r),
            }
        }
        Err(sqrx_core::SandboxError::Protocol {
            id: id.clone(),
            reason: "no exit status".into(),
        })
    })?;
    if result.truncated {
        eprintln!("warning: output truncated at the cap");
    }
    let code = if result.timed_out {
        124
    } else if let Some(c) = result.exit_code {
        c
    } else {
        128 + result.signal.unwrap_or(0)
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The environment of `--env KEY=VALUE` flags.
pub(super) fn parse_env(
    pairs: &[String],
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError(format!("--env expects KEY=VALUE, got {p:?}"))),
        })
        .collect()
}

/// A runtime on this thread for the exec's stream.
fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start tokio: {e}")))
}
