//! `sqrx sandbox ...`

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sqrx_core::{Command, ExecEvent, ExecRequest, Runtime, RuntimeConfig, SandboxSpec};

use crate::cli::CliError;

/// Sandbox commands.
#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Create and start a sandbox.
    Create {
        /// The sandbox id.
        id: String,
        /// Layers, base first, comma-separated (default 000-base).
        #[arg(long, value_delimiter = ',')]
        layers: Vec<String>,
        /// CPU limit in cores (e.g. 0.5).
        #[arg(long)]
        cpu: Option<f64>,
        /// Memory limit in MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Maximum number of tasks.
        #[arg(long = "pids")]
        pids: Option<u64>,
        /// Size of the writable layer in MiB.
        #[arg(long, default_value_t = 512)]
        upper_mb: u64,
        /// Destroy the sandbox after this many seconds (0 = never).
        #[arg(long, default_value_t = 0)]
        lifetime: u64,
        /// Environment for every exec, KEY=VALUE.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Print the sandbox info as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command; prints its output and exits with its exit code (124 on timeout).
    Exec {
        /// The sandbox id.
        id: String,
        /// Kill the command's process tree after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Working directory inside the sandbox.
        #[arg(long)]
        workdir: Option<String>,
        /// Extra environment, KEY=VALUE.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Send this process's stdin to the command.
        #[arg(long, short = 'i')]
        stdin: bool,
        /// The command and its arguments (one argument is run with /bin/sh -c).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List sandboxes, or with an id the files of a directory inside that sandbox.
    Ls {
        /// A sandbox whose files to list.
        id: Option<String>,
        /// The directory inside the sandbox (default /).
        path: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a local file into a sandbox (parents created; `-` reads stdin).
    Put {
        /// The sandbox id.
        id: String,
        /// The local file, or `-`.
        local: String,
        /// The path inside the sandbox.
        path: String,
        /// Permission bits, octal.
        #[arg(long, default_value = "644")]
        mode: String,
    },
    /// Copy a file out of a sandbox (`-` writes to stdout).
    Get {
        /// The sandbox id.
        id: String,
        /// The path inside the sandbox.
        path: String,
        /// The local file, or `-`.
        local: String,
    },
    /// Show one sandbox.
    Info {
        /// The sandbox id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the exec history.
    Logs {
        /// The sandbox id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Freeze every process of a sandbox (execs are refused until resume).
    Pause {
        /// The sandbox id.
        id: String,
    },
    /// Thaw a paused sandbox.
    Resume {
        /// The sandbox id.
        id: String,
    },
    /// Destroy a sandbox.
    Rm {
        /// The sandbox id.
        id: String,
    },
}

fn parse_env(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError(format!("--env expects KEY=VALUE, got {p:?}"))),
        })
        .collect()
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start tokio: {e}")))
}

/// Run a sandbox command against `data_dir`.
pub fn run(cmd: SandboxCmd, data_dir: &Path) -> Result<ExitCode, CliError> {
    let rt = Runtime::open(RuntimeConfig::new(data_dir))?;
    rt.reap();
    match cmd {
        SandboxCmd::Create {
            id,
            layers,
            cpu,
            memory_mb,
            pids,
            upper_mb,
            lifetime,
            env,
            json,
        } => {
            let mut spec = SandboxSpec::new(id);
            if !layers.is_empty() {
                spec.layers = layers;
            }
            spec.cpu = cpu;
            spec.memory_mb = memory_mb;
            spec.pids_max = pids;
            spec.upper_mb = upper_mb;
            spec.max_lifetime = lifetime;
            spec.env = parse_env(&env)?;
            let sandbox = rt.create(spec)?;
            if json {
                print_json(&sandbox.info())?;
            } else {
                println!("{}", sandbox.id());
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Exec {
            id,
            timeout,
            workdir,
            env,
            stdin,
            command,
        } => {
            let sandbox = rt.get(&id)?;
            let command = if command.len() == 1 {
                Command::Shell(command[0].clone())
            } else {
                Command::Argv(command)
            };
            let mut req = ExecRequest::new(command);
            req.env = parse_env(&env)?;
            req.workdir = workdir;
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
        SandboxCmd::Ls {
            id: Some(id),
            path,
            json,
        } => {
            let files = rt.get(&id)?.list(path.as_deref().unwrap_or("/"))?;
            if json {
                print_json(&files)?;
            } else {
                for f in files {
                    println!(
                        "{:<8} {:>4o} {:>10} {} {}",
                        f.kind,
                        f.mode,
                        f.size,
                        f.mtime.format("%Y-%m-%d %H:%M"),
                        f.name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Put {
            id,
            local,
            path,
            mode,
        } => {
            let mode = u32::from_str_radix(&mode, 8).map_err(|_| {
                CliError(format!("--mode expects octal bits like 644, got {mode:?}"))
            })?;
            let data = if local == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
                buf
            } else {
                std::fs::read(&local).map_err(|e| CliError(format!("cannot read {local}: {e}")))?
            };
            rt.get(&id)?.write_file(&path, &data, mode)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Get { id, path, local } => {
            let data = rt.get(&id)?.read_file(&path)?;
            if local == "-" {
                std::io::stdout()
                    .write_all(&data)
                    .map_err(|e| CliError(format!("cannot write stdout: {e}")))?;
            } else {
                std::fs::write(&local, &data)
                    .map_err(|e| CliError(format!("cannot write {local}: {e}")))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Ls { id: None, json, .. } => {
            let infos: Vec<_> = rt.list().iter().map(|s| s.info()).collect();
            if json {
                print_json(&infos)?;
            } else {
                println!(
                    "{:<24} {:<8} {:<24} {:>8} CREATED",
                    "ID", "STATUS", "LAYERS", "INIT"
                );
                for i in infos {
                    println!(
                        "{:<24} {:<8} {:<24} {:>8} {}",
                        i.id,
                        i.status,
                        i.layers.join(","),
                        i.init_pid,
                        i.created.format("%Y-%m-%d %H:%M:%S")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Info { id, json } => {
            let info = rt.get(&id)?.info();
            if json {
                print_json(&info)?;
            } else {
                println!("id:       {}", info.id);
                println!("status:   {}", info.status);
                println!("layers:   {}", info.layers.join(", "));
                println!("init pid: {}", info.init_pid);
                println!("created:  {}", info.created);
                println!(
                    "limits:   cpu {:?}, memory {:?} MiB, pids {:?}, upper {} MiB",
                    info.cpu, info.memory_mb, info.pids_max, info.upper_mb
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Logs { id, json } => {
            let logs = rt.get(&id)?.logs();
            if json {
                print_json(&logs)?;
            } else {
                for e in logs {
                    let status = if e.timed_out {
                        "timeout".to_string()
                    } else if e.oom_killed {
                        "oom".to_string()
                    } else {
                        e.exit_code
                            .map(|c| format!("exit {c}"))
                            .unwrap_or_else(|| format!("signal {}", e.signal.unwrap_or(0)))
                    };
                    println!(
                        "#{:<4} {} {:>6} ms  {:<10} {}",
                        e.seq,
                        e.started.format("%H:%M:%S"),
                        e.duration_ms,
                        status,
                        e.command
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Pause { id } => {
            rt.get(&id)?.pause()?;
            println!("paused {id}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Resume { id } => {
            rt.get(&id)?.resume()?;
            println!("resumed {id}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Rm { id } => {
            rt.get(&id)?.destroy()?;
            println!("removed {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
