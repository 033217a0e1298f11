//! `sqrx sandbox create` and `sqrx sandbox clone`: starting a sandbox.

use clap::Args;
use sqrx_core::{Runtime, SandboxSpec};

use super::exec::parse_env;
use super::info::info_json;
use super::net::{NetChoice, create_policy};
use super::secrets::parse_secrets;
use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// The arguments of `sqrx sandbox create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The sandbox id.
    pub(super) id: String,
    /// Layers, base first, comma-separated (default 000-base).
    #[arg(long, value_delimiter = ',')]
    pub(super) layers: Vec<String>,
    /// CPU limit in cores (e.g. 0.5).
    #[arg(long)]
    pub(super) cpu: Option<f64>,
    /// The port a server's `/proxy/{id}/...` reaches when the path names none.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) default_port: Option<u16>,
    /// Memory limit in MiB.
    #[arg(long)]
    pub(super) memory_mb: Option<u64>,
    /// Maximum number of tasks.
    #[arg(long = "pids")]
    pub(super) pids: Option<u64>,
    /// Size of the writable layer in MiB.
    #[arg(long, default_value_t = 512)]
    pub(super) upper_mb: u64,
    /// Destroy the sandbox after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub(super) lifetime: u64,
    /// Environment for every exec, KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(super) env: Vec<String>,
    /// Network: `none` (loopback only, the default) or `all` (every destination but the
    /// host and other sandboxes).
    #[arg(long, value_enum, value_name = "none|all", conflicts_with = "allow")]
    pub(super) net: Option<NetChoice>,
    /// Allow only these destinations (repeatable or comma-separated): HOST, *.DOMAIN,
    /// CIDR or an IPv4 address, each with an optional :PORT.
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub(super) allow: Vec<String>,
    /// A secret, its value read from FILE (`@-`: stdin): the sandbox sees $NAME as a
    /// placeholder, the egress proxy puts the value in requests to its hosts
    /// (--secret-host). Repeatable. Needs --net or --allow.
    #[arg(long = "secret", value_name = "NAME=@FILE")]
    pub(super) secrets: Vec<String>,
    /// A host (or *.DOMAIN) the secret NAME may go to. Repeatable.
    #[arg(long = "secret-host", value_name = "NAME=HOST")]
    pub(super) secret_hosts: Vec<String>,
    /// Let setuid programs (sudo) raise privileges inside, to the sandbox's own root.
    #[arg(long)]
    pub(super) setuid: bool,
    /// Print the sandbox info as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

/// Create and start a sandbox; prints its id or, with `--json`, its info.
pub fn create(rt: &Runtime, args: CreateArgs) -> Result<(), CliError> {
    let CreateArgs {
        id,
        layers,
        cpu,
        default_port,
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
    } = args;
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
    spec.default_port = default_port;
    // Layers this store lacks come from the bucket: pulled here first, with progress.
    crate::cli::remote::pull_missing(rt, &spec.layers)?;
    let sandbox = rt.create(spec)?;
    if json {
        print_json(&info_json(&sandbox)?)?;
    } else {
        println!("{}", sandbox.id());
    }
    Ok(())
}

/// Start the sandbox `new` from the current state of `src`.
pub fn clone(rt: &Runtime, src: &str, new: &str, json: bool) -> Result<(), CliError> {
    let sb = rt.clone_sandbox(src, new)?;
    if json {
        print_json(&info_json(&sb)?)?;
    } else {
        println!("{new}");
    }
    Ok(())
}
