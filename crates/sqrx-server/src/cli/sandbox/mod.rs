//! `sqrx sandbox ...`: the subcommands ([`SandboxCmd`]) and [`run`], which opens the runtime
//! and hands each subcommand to the module of its operation.

mod create;
mod exec;
mod files;
mod info;
mod lifecycle;
mod net;
mod secrets;
mod snapshot;

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use sqrx_core::{Runtime, RuntimeConfig};

use crate::cli::error::CliError;

/// Sandbox commands.
#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Create and start a sandbox.
    Create(create::CreateArgs),
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
    Exec(exec::ExecArgs),
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
        /// Push it into the bucket (SQRX_S3_BUCKET) before returning, with its chain's images.
        #[arg(long)]
        push: bool,
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
    /// Destroy a sandbox (an ephemeral one is first snapshotted into the bucket).
    Rm {
        /// The sandbox id.
        id: String,
        /// Ephemeral sandboxes (SQRX_EPHEMERAL=1): do not snapshot it into the bucket first.
        #[arg(long)]
        no_save: bool,
    },
}

/// Run a sandbox command against `data_dir`.
pub fn run(cmd: SandboxCmd, data_dir: &Path) -> Result<ExitCode, CliError> {
    let mut config = RuntimeConfig::new(data_dir);
    // Where sandbox links go: the same variables a server on this data directory reads.
    config.network =
        sqrx_server::config::runtime_network_from_env(&sqrx_server::config::process_env);
    // Layers a sandbox needs and this store lacks come from the bucket, when one is set.
    config.remote = sqrx_core::remote::RemoteConfig::from_env(&sqrx_server::config::process_env)
        .map_err(|e| CliError(e.to_string()))?;
    let rt = Runtime::open(config)?;
    rt.reap();
    let done = match cmd {
        // The one command whose exit code is not ours but the command's.
        SandboxCmd::Exec(args) => return exec::exec(&rt, args),
        SandboxCmd::Create(args) => create::create(&rt, args),
        SandboxCmd::Clone { src, new, json } => create::clone(&rt, &src, &new, json),
        SandboxCmd::Secret { id, secret, hosts } => secrets::set(&rt, &id, secret, &hosts),
        SandboxCmd::Secrets { id, json } => secrets::list(&rt, &id, json),
        SandboxCmd::Network { id, policy, json } => net::set(&rt, &id, &policy, json),
        SandboxCmd::Ls { id: None, json, .. } => info::list(&rt, json),
        SandboxCmd::Info { id, json } => info::info(&rt, &id, json),
        SandboxCmd::Logs { id, json } => info::logs(&rt, &id, json),
        SandboxCmd::Ls {
            id: Some(id),
            path,
            json,
        } => files::ls(&rt, &id, path.as_deref().unwrap_or("/"), json),
        SandboxCmd::Put {
            id,
            local,
            path,
            mode,
        } => files::put(&rt, &id, &local, &path, &mode),
        SandboxCmd::Get { id, path, local } => files::get(&rt, &id, &path, &local),
        SandboxCmd::Upload { id, path, archive } => {
            files::upload(&rt, &id, &path, archive.as_deref())
        }
        SandboxCmd::Download { id, path, archive } => {
            files::download(&rt, &id, &path, archive.as_deref())
        }
        SandboxCmd::Snapshot {
            id,
            label,
            push,
            json,
        } => snapshot::snapshot(&rt, &id, label.as_deref(), push, json),
        SandboxCmd::Restore { id, label } => snapshot::restore(&rt, &id, &label),
        SandboxCmd::Snapshots { id, json } => snapshot::list(&rt, &id, json),
        SandboxCmd::Pause { id } => lifecycle::pause(&rt, &id),
        SandboxCmd::Resume { id } => lifecycle::resume(&rt, &id),
        SandboxCmd::Activate { id, layer } => lifecycle::activate(&rt, &id, &layer),
        SandboxCmd::Rm { id, no_save } => lifecycle::rm(&rt, &id, !no_save),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Parse `sqrx sandbox ARGS` as clap does, for the tests of the subcommand modules.
#[cfg(test)]
fn parse(args: &[&str]) -> Result<SandboxCmd, String> {
    #[derive(Debug, clap::Parser)]
    struct Sandbox {
        #[command(subcommand)]
        cmd: SandboxCmd,
    }
    let argv = std::iter::once("sandbox").chain(args.iter().copied());
    <Sandbox as clap::Parser>::try_parse_from(argv)
        .map(|s| s.cmd)
        .map_err(|e| e.to_string())
}
