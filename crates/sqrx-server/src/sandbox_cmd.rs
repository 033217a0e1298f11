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
    /// Copy a local file or directory into a sandbox (parents created; `-` reads stdin).
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
    /// Snapshot a sandbox's filesystem (label default: the current time).
    Snapshot {
        /// The sandbox id.
        id: String,
        /// `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`.
        label: Option<String>,
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (the sandbox's processes are restarted).
    Restore {
        /// The sandbox id.
        id: String,
        /// The snapshot label.
        label: String,
    },
    /// List a sandbox's snapshots.
    Snapshots {
        /// The sandbox id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a layer to a running sandbox (files are kept; its processes are restarted).
    Activate {
        /// The sandbox id.
        id: String,
        /// The layer name.
        layer: String,
    },
    /// Start a new sandbox from the current state of another.
    Clone {
        /// The source sandbox.
        src: String,
        /// The new sandbox's id.
        new: String,
        /// Print the new sandbox's info as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extract a tar archive into a directory of a sandbox.
    Upload {
        /// The sandbox id.
        id: String,
        /// The directory inside the sandbox (created when missing).
        path: String,
        /// The archive (`-` or absent: stdin).
        archive: Option<String>,
    },
    /// Write a directory of a sandbox as a tar archive.
    Download {
        /// The sandbox id.
        id: String,
        /// The directory inside the sandbox.
        path: String,
        /// The archive to write (`-` or absent: stdout).
        archive: Option<String>,
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
            if local != "-" && Path::new(&local).is_dir() {
                let sb = rt.get(&id)?;
                let n = upload_dir(&sb, Path::new(&local), &path)?;
                println!("{n} entries copied to {path}");
                return Ok(ExitCode::SUCCESS);
            }
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
                if let Some(snap) = &info.active_snapshot {
                    println!("snapshot: {snap}");
                }
                println!("upper:    {} bytes used", info.upper_bytes);
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
        SandboxCmd::Snapshot { id, label, json } => {
            let snap = rt.get(&id)?.snapshot(label.as_deref())?;
            if json {
                print_json(&snap)?;
            } else {
                println!("{} ({} bytes)", snap.label, snap.size);
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Restore { id, label } => {
            rt.get(&id)?.restore(&label)?;
            println!("restored {id} to {label}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Snapshots { id, json } => {
            let snaps = rt.get(&id)?.snapshots()?;
            if json {
                print_json(&snaps)?;
            } else {
                println!("{:<32} {:>12} {:<20} PARENT", "LABEL", "BYTES", "CREATED");
                for s in snaps {
                    println!(
                        "{:<32} {:>12} {:<20} {}",
                        s.label,
                        s.size,
                        s.created.format("%Y-%m-%d %H:%M:%S"),
                        s.parent.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Activate { id, layer } => {
            rt.get(&id)?.activate(&layer)?;
            println!("activated {layer} in {id}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Clone { src, new, json } => {
            let sb = rt.clone_sandbox(&src, &new)?;
            if json {
                print_json(&sb.info())?;
            } else {
                println!("{new}");
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Upload { id, path, archive } => {
            let sb = rt.get(&id)?;
            let n = match archive.as_deref() {
                None | Some("-") => sb.upload_tar(&path, std::io::stdin().lock())?,
                Some(file) => {
                    let f = std::fs::File::open(file)
                        .map_err(|e| CliError(format!("cannot open {file}: {e}")))?;
                    sb.upload_tar(&path, std::io::BufReader::new(f))?
                }
            };
            eprintln!("{n} entries extracted to {path}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Download { id, path, archive } => {
            let sb = rt.get(&id)?;
            match archive.as_deref() {
                None | Some("-") => sb.download_tar(&path, std::io::stdout().lock())?,
                Some(file) => {
                    let f = std::fs::File::create(file)
                        .map_err(|e| CliError(format!("cannot create {file}: {e}")))?;
                    sb.download_tar(&path, std::io::BufWriter::new(f))?
                }
            };
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Rm { id } => {
            rt.get(&id)?.destroy()?;
            println!("removed {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Copy the local directory `local` into `path` inside the sandbox, streaming a tar archive
/// through a pipe (never the whole tree in memory).
fn upload_dir(sb: &sqrx_core::Sandbox, local: &Path, path: &str) -> Result<u64, CliError> {
    let (reader, writer) =
        std::io::pipe().map_err(|e| CliError(format!("cannot create a pipe: {e}")))?;
    let local = local.to_path_buf();
    let packer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.append_dir_all(".", &local)?;
        b.into_inner().map(drop)
    });
    let uploaded = sb.upload_tar(path, reader);
    let packed = packer
        .join()
        .map_err(|_| CliError("the archiving thread panicked".into()))?;
    let n = uploaded?;
    packed.map_err(|e| CliError(format!("cannot archive the local directory: {e}")))?;
    Ok(n)
}
