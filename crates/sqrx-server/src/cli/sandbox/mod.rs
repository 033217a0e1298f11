//! `sqrx sandbox ...`: the subcommands ([`SandboxCmd`]) and [`run`].

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sqrx_core::network::NetworkPolicy;
use sqrx_core::{Command, ExecEvent, ExecRequest, Runtime, RuntimeConfig, SandboxSpec};

use crate::cli::error::CliError;
use crate::cli::output::print_json;

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
        /// Network: `none` (loopback only, the default) or `all` (every destination but the
        /// host and other sandboxes).
        #[arg(long, value_enum, value_name = "none|all", conflicts_with = "allow")]
        net: Option<NetChoice>,
        /// Allow only these destinations (repeatable or comma-separated): HOST, *.DOMAIN,
        /// CIDR or an IPv4 address, each with an optional :PORT.
        #[arg(long, value_name = "RULE", value_delimiter = ',')]
        allow: Vec<String>,
        /// A secret, its value read from FILE (`@-`: stdin): the sandbox sees $NAME as a
        /// placeholder, the egress proxy puts the value in requests to its hosts
        /// (--secret-host). Repeatable. Needs --net or --allow.
        #[arg(long = "secret", value_name = "NAME=@FILE")]
        secrets: Vec<String>,
        /// A host (or *.DOMAIN) the secret NAME may go to. Repeatable.
        #[arg(long = "secret-host", value_name = "NAME=HOST")]
        secret_hosts: Vec<String>,
        /// Let setuid programs (sudo) raise privileges inside, to the sandbox's own root.
        #[arg(long)]
        setuid: bool,
        /// Print the sandbox info as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a secret to a running sandbox, or give one a new value or hosts (rotation: the
    /// next request uses it).
    Secret {
        /// The sandbox id.
        id: String,
        /// NAME=@FILE (`@-`: stdin).
        secret: String,
        /// A host (or *.DOMAIN) it may go to. Repeatable; at least one.
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
    },
    /// List a sandbox's secrets (names, placeholders, hosts; never values).
    Secrets {
        /// The sandbox id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a running sandbox's network policy; takes effect at once.
    Network {
        /// The sandbox id.
        id: String,
        /// `none`, `all`, or a comma-separated allow list (HOST, *.DOMAIN, CIDR, each with
        /// an optional :PORT).
        policy: String,
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
        /// Working directory inside the sandbox (default: the user's home, / for root).
        #[arg(long)]
        workdir: Option<String>,
        /// Run as this user of the sandbox's /etc/passwd (a name or a uid; default root).
        #[arg(long, short = 'u')]
        user: Option<String>,
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

/// `--net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetChoice {
    /// Loopback only.
    None,
    /// Every destination but the ones refused to every sandbox.
    All,
}

/// The policy `--net` and `--allow` ask for (clap refuses both together).
fn create_policy(net: Option<NetChoice>, allow: &[String]) -> Result<NetworkPolicy, CliError> {
    match net {
        Some(NetChoice::None) => Ok(NetworkPolicy::None),
        Some(NetChoice::All) => Ok(NetworkPolicy::All),
        None if allow.is_empty() => Ok(NetworkPolicy::None),
        None => {
            let rules: Vec<&str> = allow.iter().map(|r| r.trim()).collect();
            NetworkPolicy::allow(&rules).map_err(|e| CliError(format!("--allow: {e}")))
        }
    }
}

/// A policy on one line: `none`, `all`, or `allow R,R[; deny R,R]`.
pub fn policy_text(policy: &NetworkPolicy) -> String {
    let join = |rules: &[sqrx_core::network::NetRule]| {
        rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match policy {
        NetworkPolicy::None => "none".into(),
        NetworkPolicy::All => "all".into(),
        NetworkPolicy::List { allow, deny } if deny.is_empty() => {
            format!("allow {}", join(allow))
        }
        NetworkPolicy::List { allow, deny } => {
            format!("allow {}; deny {}", join(allow), join(deny))
        }
    }
}

/// The sandbox's info as JSON, with its network policy and, when it has a link, its
/// addresses.
fn info_json(sandbox: &sqrx_core::Sandbox) -> Result<serde_json::Value, CliError> {
    let encode = |e: serde_json::Error| CliError(format!("cannot encode JSON: {e}"));
    let mut value = serde_json::to_value(sandbox.info()).map_err(encode)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "network".into(),
            serde_json::to_value(sandbox.network_policy()).map_err(encode)?,
        );
        let link = sandbox.network_info();
        obj.insert(
            "address".into(),
            link.as_ref()
                .map_or(serde_json::Value::Null, |l| l.address.to_string().into()),
        );
        obj.insert(
            "gateway".into(),
            link.as_ref()
                .map_or(serde_json::Value::Null, |l| l.gateway.to_string().into()),
        );
    }
    Ok(value)
}

/// The NAME of a `NAME=@FILE` argument.
fn secret_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(n, _)| n)
}

/// Secrets from `--secret NAME=@FILE` (`@-` reads `stdin`) and `--secret-host NAME=HOST`. A
/// value on the command line is refused: it would land in shell history and `ps`.
fn parse_secrets(
    secrets: &[String],
    hosts: &[String],
    stdin: &mut dyn std::io::Read,
) -> Result<std::collections::BTreeMap<String, sqrx_core::Secret>, CliError> {
    let mut out = std::collections::BTreeMap::new();
    for arg in secrets {
        let Some((name, source)) = arg.split_once('=') else {
            return Err(CliError(format!(
                "--secret expects NAME=@FILE, got {arg:?}"
            )));
        };
        let Some(source) = source.strip_prefix('@') else {
            return Err(CliError(format!(
                "--secret {name}: give the value in a file (NAME=@FILE) or on stdin (NAME=@-), \
                 not on the command line, where shell history and ps would show it"
            )));
        };
        let mut value = String::new();
        let read = if source == "-" {
            stdin.read_to_string(&mut value)
        } else {
            std::fs::File::open(source)
                .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut value))
        };
        read.map_err(|e| CliError(format!("--secret {name}: cannot read {source}: {e}")))?;
        // A key file's final newline is not part of the key.
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value).to_string();
        out.insert(
            name.to_string(),
            sqrx_core::Secret::new(value, Vec::<String>::new()),
        );
    }
    for arg in hosts {
        let Some((name, host)) = arg.split_once('=') else {
            return Err(CliError(format!(
                "--secret-host expects NAME=HOST, got {arg:?}"
            )));
        };
        let Some(secret) = out.get_mut(name) else {
            return Err(CliError(format!(
                "--secret-host {arg}: no --secret {name}=@FILE given"
            )));
        };
        secret.allowed_hosts.push(host.trim().to_string());
    }
    Ok(out)
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

fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start tokio: {e}")))
}

/// Run a sandbox command against `data_dir`.
pub fn run(cmd: SandboxCmd, data_dir: &Path) -> Result<ExitCode, CliError> {
    let mut config = RuntimeConfig::new(data_dir);
    // Where sandbox links go: the same variables a server on this data directory reads.
    config.network =
        sqrx_server::config::runtime_network_from_env(&sqrx_server::config::process_env);
    let rt = Runtime::open(config)?;
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
            net,
            allow,
            secrets,
            secret_hosts,
            setuid,
            json,
        } => {
            let network = create_policy(net, &allow)?;
            let secrets = parse_secrets(&secrets, &secret_hosts, &mut std::io::stdin().lock())?;
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
            spec.network = network;
            spec.secrets = secrets;
            spec.setuid = setuid;
            let sandbox = rt.create(spec)?;
            if json {
                print_json(&info_json(&sandbox)?)?;
            } else {
                println!("{}", sandbox.id());
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Secret { id, secret, hosts } => {
            let hosts: Vec<String> = hosts
                .iter()
                .map(|h| format!("{}={h}", secret_name(&secret)))
                .collect();
            let secrets = parse_secrets(&[secret], &hosts, &mut std::io::stdin().lock())?;
            let mut sandbox = rt.get(&id)?;
            for (name, s) in secrets {
                sandbox.set_secret(&name, s)?;
                println!("{id}: secret {name} set");
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Secrets { id, json } => {
            let secrets = rt.get(&id)?.secrets();
            if json {
                print_json(&secrets)?;
            } else {
                for s in secrets {
                    println!(
                        "{}\t{}\t{}\t{}",
                        s.name,
                        s.placeholder,
                        s.allowed_hosts.join(","),
                        s.source
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Network { id, policy, json } => {
            let policy: NetworkPolicy = policy
                .trim()
                .parse()
                .map_err(|e: sqrx_core::network::PolicyError| CliError(e.to_string()))?;
            let mut sandbox = rt.get(&id)?;
            sandbox.set_network(policy)?;
            if json {
                print_json(&info_json(&sandbox)?)?;
            } else {
                println!("{id}: network {}", policy_text(sandbox.network_policy()));
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Exec {
            id,
            timeout,
            workdir,
            user,
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
            let sandboxes = rt.list();
            if json {
                let infos = sandboxes
                    .iter()
                    .map(info_json)
                    .collect::<Result<Vec<_>, _>>()?;
                print_json(&infos)?;
            } else {
                println!(
                    "{:<24} {:<8} {:<24} {:>8} {:<19} NETWORK",
                    "ID", "STATUS", "LAYERS", "INIT", "CREATED"
                );
                for sb in sandboxes {
                    let i = sb.info();
                    println!(
                        "{:<24} {:<8} {:<24} {:>8} {:<19} {}",
                        i.id,
                        i.status,
                        i.layers.join(","),
                        i.init_pid,
                        i.created.format("%Y-%m-%d %H:%M:%S"),
                        policy_text(sb.network_policy())
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxCmd::Info { id, json } => {
            let sandbox = rt.get(&id)?;
            let info = sandbox.info();
            if json {
                print_json(&info_json(&sandbox)?)?;
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
                println!("network:  {}", policy_text(sandbox.network_policy()));
                if let Some(link) = sandbox.network_info() {
                    println!("address:  {} (gateway {})", link.address, link.gateway);
                }
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
                print_json(&info_json(&sb)?)?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command as Top};

    fn parse(args: &[&str]) -> Result<SandboxCmd, String> {
        let mut argv = vec!["sqrx", "sandbox"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Top::Sandbox(cmd),
                ..
            }) => Ok(cmd),
            Ok(other) => Err(format!("not a sandbox command: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn secrets_come_from_files_or_stdin_never_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-real\n").expect("write");
        let file_arg = format!("API={}", key.display());
        let cmd = parse(&[
            "create",
            "a",
            "--allow",
            "api.example.com",
            "--secret",
            &format!("API=@{}", key.display()),
            "--secret",
            "OTHER=@-",
            "--secret-host",
            "API=api.example.com",
            "--secret-host",
            "OTHER=*.example.org",
        ])
        .expect("parse");
        let SandboxCmd::Create {
            secrets,
            secret_hosts,
            ..
        } = cmd
        else {
            panic!("not create");
        };
        let mut stdin: &[u8] = b"from-stdin";
        let parsed = parse_secrets(&secrets, &secret_hosts, &mut stdin).expect("secrets");
        assert_eq!(
            parsed["API"].value, "sk-real",
            "the final newline is dropped"
        );
        assert_eq!(parsed["API"].allowed_hosts, vec!["api.example.com"]);
        assert_eq!(parsed["OTHER"].value, "from-stdin");
        assert_eq!(parsed["OTHER"].allowed_hosts, vec!["*.example.org"]);
        let inline = parse_secrets(&["API=sk-real".into()], &[], &mut stdin).expect_err("inline");
        assert!(
            inline.0.contains("@FILE") && !inline.0.contains("sk-real"),
            "{}",
            inline.0
        );
        let e = parse_secrets(&[file_arg], &[], &mut stdin).expect_err("no @");
        assert!(e.0.contains("@FILE"), "{}", e.0);
        let e = parse_secrets(&[], &["NOPE=a.com".into()], &mut stdin).expect_err("no secret");
        assert!(e.0.contains("--secret NOPE"), "{}", e.0);
        assert!(
            parse(&["secret", "a", "API=@-"]).is_err(),
            "--host is required"
        );
    }

    fn policy_of(args: &[&str]) -> Result<NetworkPolicy, String> {
        match parse(args)? {
            SandboxCmd::Create { net, allow, .. } => create_policy(net, &allow).map_err(|e| e.0),
            other => Err(format!("not a create: {other:?}")),
        }
    }

    #[test]
    fn net_and_allow_flags() {
        assert_eq!(policy_of(&["create", "a"]), Ok(NetworkPolicy::None));
        assert_eq!(
            policy_of(&["create", "a", "--net", "none"]),
            Ok(NetworkPolicy::None)
        );
        assert_eq!(
            policy_of(&["create", "a", "--net", "all"]),
            Ok(NetworkPolicy::All)
        );
        assert_eq!(
            policy_of(&[
                "create",
                "a",
                "--allow",
                "10.1.0.0/16",
                "--allow",
                "pypi.org:443,*.pythonhosted.org"
            ]),
            Ok(
                NetworkPolicy::allow(&["10.1.0.0/16", "pypi.org:443", "*.pythonhosted.org"])
                    .expect("policy")
            )
        );
        let both = policy_of(&["create", "a", "--net", "all", "--allow", "10.0.0.0/8"])
            .expect_err("--net with --allow");
        assert!(
            both.contains("--net") && both.contains("--allow") && both.contains("cannot be used"),
            "{both}"
        );
        let word = policy_of(&["create", "a", "--net", "some"]).expect_err("unknown --net");
        assert!(word.contains("none") && word.contains("all"), "{word}");
        let rule = policy_of(&["create", "a", "--allow", "10.0.0.1/8"]).expect_err("bad rule");
        assert!(
            rule.starts_with("--allow: invalid network rule") && rule.contains("prefix"),
            "{rule}"
        );
        let port = policy_of(&["create", "a", "--allow", "10.0.0.1:0"]).expect_err("port 0");
        assert!(port.contains("port"), "{port}");
    }

    #[test]
    fn network_command_and_policy_text() {
        match parse(&["network", "a", "10.1.0.0/16,10.2.0.1:80"]) {
            Ok(SandboxCmd::Network { id, policy, json }) => {
                assert_eq!(
                    (id.as_str(), policy.as_str(), json),
                    ("a", "10.1.0.0/16,10.2.0.1:80", false)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["network", "a"]).is_err(), "POLICY is required");
        assert_eq!(policy_text(&NetworkPolicy::None), "none");
        assert_eq!(policy_text(&NetworkPolicy::All), "all");
        assert_eq!(
            policy_text(&"10.1.0.0/16,10.2.0.1:80".parse().expect("policy")),
            "allow 10.1.0.0/16,10.2.0.1:80"
        );
        let both: NetworkPolicy =
            serde_json::from_str(r#"{"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]}"#)
                .expect("policy");
        assert_eq!(policy_text(&both), "allow 10.0.0.0/8; deny 10.9.0.0/16");
    }
}
