//! `sqrx serve` options, and their resolution with the sq-sandbox environment variables
//! (`SQUASH_*`) as aliases of sqrx's own; the optional TOML file (`--config sqrx.toml`) with
//! session templates and limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sqrx_core::network::{NetworkConfig, NetworkPolicy};
use sqrx_core::session::SessionTemplate;

use crate::hosts::AllowedHosts;

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where `POST /v1/execute` and `/api/execute` run QuickJS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum JsIsolation {
    /// In confined worker processes started from `sqrx-init` (an unprivileged user, no
    /// capabilities, a seccomp allow-list, no descriptor but their channel); see docs/js.md.
    #[default]
    Process,
    /// In the server process itself: the QuickJS limits are the only isolation, and a
    /// memory-safety bug in QuickJS is a bug in the server.
    InProcess,
}

/// Command-line options of `sqrx serve` and `sqrx-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; SQUASH_PORT=P means 127.0.0.1:P].
    #[arg(long, env = "SQRX_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Require `Authorization: Bearer <TOKEN>` on every route but the health checks and
    /// /openapi.json [env: SQRX_AUTH_TOKEN or SQUASH_AUTH_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// The tenant database (users, API keys, audit): `postgres://...` or `sqlite://PATH`
    /// [default: sqlite://<data dir>/tenants.db; env: SQRX_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Most sandboxes alive at once [default: 100; env: SQRX_MAX_SANDBOXES or
    /// SQUASH_MAX_SANDBOXES].
    #[arg(long, value_name = "N")]
    pub max_sandboxes: Option<usize>,
    /// Size of a sandbox's writable layer when its spec sets none, MiB [default: 512; env:
    /// SQRX_UPPER_LIMIT_MB or SQUASH_UPPER_LIMIT_MB].
    #[arg(long, value_name = "MIB")]
    pub upper_limit_mb: Option<u64>,
    /// Largest JSON request body, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_JSON_BYTES)]
    pub max_json_bytes: usize,
    /// Largest upload (a layer image or tar stream, a file), MiB.
    #[arg(
        long,
        value_name = "MIB",
        env = "SQRX_MAX_UPLOAD_MB",
        default_value_t = 4096
    )]
    pub max_upload_mb: u64,
    /// Time limit of requests other than exec, uploads and JavaScript, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub request_timeout: u64,
    /// Timeout of an exec that asks for none, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub exec_timeout: u64,
    /// How long a client connection may wait between requests, or take to send a request's
    /// head, before the server closes it, seconds (relayed WebSockets are not affected).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// After SIGTERM or SIGINT, how long in-flight requests may take to finish, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Log format.
    #[arg(long, value_enum, env = "SQRX_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Do not create the default base layer 000-base at start when the store has none.
    #[arg(long)]
    pub no_bootstrap: bool,
    /// A TOML file with session templates (`[[template]]` tables) and session limits
    /// (`[sessions]`); see docs/sessions.md.
    #[arg(long, env = "SQRX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The host (and port) session URLs name, as clients reach this server
    /// [default: the Host header of the `POST /v1/try` request].
    #[arg(long, env = "SQRX_PUBLIC_HOST", value_name = "HOST")]
    pub public_host: Option<String>,
    /// The port `/proxy/{id}/...` reaches in sandboxes created without a `default_port` (a
    /// first path segment of digits is always a port: `/proxy/{id}/{port}/...`)
    /// [default: none; such requests get 400].
    #[arg(long, env = "SQRX_PROXY_DEFAULT_PORT", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_default_port: Option<u16>,
    /// A host name the server answers to besides the loopback names and its listen address
    /// (`name`, `name:port`, or `*.domain` for every subdomain); repeatable. A request whose
    /// `Host` is not allowed, or a WebSocket upgrade whose `Origin` is not, gets 403
    /// [env: SQRX_ALLOWED_HOSTS, comma-separated; added to `allowed_hosts` of the config file].
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "SQRX_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Listen on a non-loopback address without an auth token anyway. Anyone who can reach
    /// the address can then run code as the server; only for networks you trust completely.
    #[arg(long, env = "SQRX_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// How sandboxes are isolated: `user-namespace` (the default: root in a sandbox is an
    /// unprivileged host range) or `host-root` (only for kernels without idmapped mounts;
    /// logged as a warning) [env: SQRX_ISOLATION].
    #[arg(long, value_name = "MODE")]
    pub isolation: Option<String>,
    /// Where JavaScript runs: `process` (confined worker processes) or `in-process`.
    #[arg(long, value_enum, env = "SQRX_JS_ISOLATION", default_value_t = JsIsolation::Process)]
    pub js_isolation: JsIsolation,
    /// Sandbox networking: the policies sandboxes get when a create names none, and how the
    /// runtime connects them.
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Network options of `sqrx serve` (each also `network.*` in the config file; a flag or
/// variable wins over the file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NetworkArgs {
    /// The network policy of a sandbox created on `/v1` without `network`: `none`, `all` or a
    /// comma-separated allow list [default: none; env: SQRX_NET_DEFAULT].
    #[arg(long = "net-default", value_name = "POLICY")]
    pub default: Option<String>,
    /// The network policy of a sandbox created on `/cgi-bin` without `allow_net` (or with
    /// `[]`) [default: all, as sq-sandbox; env: SQRX_NET_CGI_DEFAULT].
    #[arg(long = "net-cgi-default", value_name = "POLICY")]
    pub cgi_default: Option<String>,
    /// The IPv4 pool sandbox addresses come from, one /30 each [default: 100.64.0.0/10;
    /// env: SQRX_NET_POOL].
    #[arg(long = "net-pool", value_name = "CIDR")]
    pub pool: Option<String>,
    /// The interface sandboxes' traffic leaves through [default: the default route's; env:
    /// SQRX_NET_UPLINK].
    #[arg(long = "net-uplink", value_name = "IFACE")]
    pub uplink: Option<String>,
    /// A network namespace (e.g. /run/netns/sandboxes) to hold the host side of sandbox
    /// links and the nftables rules, instead of the server's own [env: SQRX_NET_NETNS].
    #[arg(long = "net-netns", value_name = "PATH")]
    pub netns: Option<PathBuf>,
    /// The DNS server that sandboxes' allowed queries are forwarded to [default: the first
    /// nameserver of /etc/resolv.conf; env: SQRX_NET_DNS_UPSTREAM].
    #[arg(long = "dns-upstream", value_name = "IP[:PORT]")]
    pub dns_upstream: Option<String>,
    /// Read HTTPS to the hosts secrets are bound to, so placeholders can be replaced there
    /// (`false`: plain HTTP only) [default: true; env: SQRX_PROXY_HTTPS or sq-sandbox's
    /// SQUASH_PROXY_HTTPS].
    #[arg(long = "proxy-https", value_name = "BOOL")]
    pub proxy_https: Option<bool>,
    /// A PEM file of CAs the egress proxy trusts for the servers it sends secrets to, besides
    /// the host's roots; repeatable [env: SQRX_EGRESS_CA, files separated by ':'].
    #[arg(long = "egress-ca", value_name = "FILE")]
    pub egress_ca: Vec<PathBuf>,
}

impl Default for ServeArgs {
    /// The same defaults as the command line.
    fn default() -> Self {
        ServeArgs {
            listen: None,
            auth_token: None,
            database_url: None,
            max_sandboxes: None,
            upper_limit_mb: None,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_upload_mb: 4096,
            request_timeout: 60,
            exec_timeout: 300,
            idle_timeout: 60,
            shutdown_grace: 30,
            log_format: LogFormat::Text,
            no_bootstrap: false,
            config: None,
            public_host: None,
            proxy_default_port: None,
            allowed_hosts: Vec::new(),
            insecure_no_auth: false,
            isolation: None,
            js_isolation: JsIsolation::Process,
            network: NetworkArgs::default(),
        }
    }
}

/// Defaults and maxima for what HTTP clients ask for (`[limits]` in the config file). A
/// request over a maximum is refused with 400 or 413 naming the limit, never clamped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU limit, in cores, of a sandbox created over HTTP whose request sets none.
    pub default_cpu: f64,
    /// Memory limit, MiB, of a sandbox created over HTTP whose request sets none.
    pub default_memory_mb: u64,
    /// Task limit of a sandbox created over HTTP whose request sets none.
    pub default_pids_max: u64,
    /// Largest writable layer a request may ask for, MiB.
    pub max_upper_mb: u64,
    /// Largest heap a JavaScript request may ask for, MiB.
    pub max_js_memory_mb: u64,
    /// Longest time limit a JavaScript request may ask for, milliseconds.
    pub max_js_timeout_ms: u64,
    /// Largest `output_cap` an exec may ask for, bytes.
    pub max_output_cap: u64,
    /// Largest file `GET .../files/{path}` returns, bytes (larger: 413; use the archive
    /// route to download more).
    pub max_file_read_bytes: u64,
    /// Largest WebSocket message a client may send (exec, terminal and session
    /// WebSockets), bytes.
    pub max_ws_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_cpu: 2.0,
            default_memory_mb: 1024,
            default_pids_max: 1024,
            max_upper_mb: 16 * 1024,
            max_js_memory_mb: 512,
            max_js_timeout_ms: 60_000,
            max_output_cap: 16 << 20,
            max_file_read_bytes: 64 << 20,
            max_ws_message_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// Check the values make sense together.
    pub fn check(&self) -> Result<(), String> {
        if !(self.default_cpu.is_finite() && self.default_cpu > 0.0) {
            return Err(format!(
                "limits.default_cpu {} must be a positive number of cores",
                self.default_cpu
            ));
        }
        for (name, value) in [
            ("default_memory_mb", self.default_memory_mb),
            ("default_pids_max", self.default_pids_max),
            ("max_upper_mb", self.max_upper_mb),
            ("max_js_memory_mb", self.max_js_memory_mb),
            ("max_js_timeout_ms", self.max_js_timeout_ms),
            ("max_output_cap", self.max_output_cap),
            ("max_file_read_bytes", self.max_file_read_bytes),
            ("max_ws_message_bytes", self.max_ws_message_bytes as u64),
        ] {
            if value == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if self.max_upper_mb > 1 << 20 {
            return Err(format!(
                "limits.max_upper_mb {} is over 1048576",
                self.max_upper_mb
            ));
        }
        Ok(())
    }
}

/// Limits of the session manager (`[sessions]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Longest a session may live, seconds.
    pub max_ttl: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 100,
            max_ttl: 3600,
        }
    }
}

/// The config file (`--config sqrx.toml`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Session limits.
    #[serde(default)]
    pub sessions: SessionLimits,
    /// Session templates, in addition to the built-in `default` (a template of that name
    /// replaces it).
    #[serde(default, rename = "template")]
    pub templates: Vec<SessionTemplate>,
    /// Hosts the server answers to besides the loopback names and its listen address (as
    /// `--allowed-host`; both lists apply).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Defaults and maxima for HTTP clients.
    #[serde(default)]
    pub limits: Limits,
    /// Sandbox networking.
    #[serde(default)]
    pub network: NetworkFile,
    /// The layer store's bucket (`SQRX_S3_*` / `SQUASH_S3_*` override it).
    #[serde(default)]
    pub s3: Option<S3File>,
}

/// `[s3]` in the config file: the layer store's bucket (see docs/s3.md).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    /// The bucket.
    pub bucket: String,
    /// A key prefix ending in `/`.
    pub prefix: Option<String>,
    /// The region (default us-east-1).
    pub region: Option<String>,
    /// The service's URL when it is not AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (default: on with an endpoint).
    pub path_style: Option<bool>,
    /// Multipart part size in MiB (default 16, at least 5).
    pub part_mb: Option<u64>,
    /// Parts sent at once (default 4).
    pub concurrency: Option<usize>,
    /// Push new layers and snapshots in the background (default true).
    pub auto_push: Option<bool>,
    /// Ephemeral sandboxes: snapshotted into the bucket when destroyed, restored from it when
    /// created again (default false; `SQRX_EPHEMERAL`/`SQUASH_EPHEMERAL` override it).
    pub ephemeral: Option<bool>,
    /// Keep the local layer store under this many MiB (least recently used layers that no
    /// sandbox uses and the bucket holds are removed).
    pub cache_max_mb: Option<u64>,
}

/// The bucket of the environment (`SQRX_S3_*`, else `SQUASH_S3_*`), else of the config file.
pub fn remote_config(
    file: Option<&S3File>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<sqrx_core::remote::RemoteConfig>, ConfigError> {
    let invalid = |e: sqrx_core::remote::RemoteError| ConfigError {
        name: "s3",
        reason: e.to_string(),
    };
    if let Some(from_env) = sqrx_core::remote::RemoteConfig::from_env(env).map_err(invalid)? {
        return Ok(Some(from_env));
    }
    let Some(f) = file else {
        return Ok(None);
    };
    let mut c = sqrx_core::remote::RemoteConfig::new(f.bucket.clone());
    c.prefix = f.prefix.clone().unwrap_or_default();
    if let Some(r) = &f.region {
        c.region = r.clone();
    }
    c.endpoint = f.endpoint.clone();
    c.path_style = f.path_style.unwrap_or(c.endpoint.is_some());
    if let Some(mb) = f.part_mb {
        c.part_size = mb.saturating_mul(1 << 20);
    }
    if let Some(n) = f.concurrency {
        c.concurrency = n;
    }
    c.auto_push = f.auto_push.unwrap_or(true);
    c.cache_max_bytes = f.cache_max_mb.map(|mb| mb.saturating_mul(1 << 20));
    // The environment's switch wins over the file's, as for the bucket itself.
    let env_ephemeral =
        sqrx_core::remote::RemoteConfig::ephemeral_from_env(env).map_err(invalid)?;
    c.ephemeral = env_ephemeral.or(f.ephemeral).unwrap_or(false);
    c.validate().map_err(invalid)?;
    Ok(Some(c))
}

/// `[network]` in the config file: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// As `--net-default` (a policy: `"none"`, `"all"` or `{allow = [...], deny = [...]}`).
    pub default: Option<NetworkPolicy>,
    /// As `--net-cgi-default`.
    pub cgi_default: Option<NetworkPolicy>,
    /// As `--net-pool`.
    pub pool: Option<String>,
    /// As `--net-uplink`.
    pub uplink: Option<String>,
    /// As `--net-netns`.
    pub netns: Option<PathBuf>,
    /// As `--dns-upstream`.
    pub dns_upstream: Option<String>,
    /// As `--proxy-https`.
    pub proxy_https: Option<bool>,
    /// As `--egress-ca`.
    #[serde(default)]
    pub egress_ca: Vec<PathBuf>,
}

/// The server's network settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// The policy of a `/v1` create that names none.
    pub default: NetworkPolicy,
    /// The policy of a `/cgi-bin` create whose `allow_net` is absent or empty.
    pub cgi_default: NetworkPolicy,
    /// How the runtime connects sandboxes (`RuntimeConfig.network`).
    pub runtime: NetworkConfig,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            default: NetworkPolicy::None,
            cgi_default: NetworkPolicy::All,
            runtime: NetworkConfig::default(),
        }
    }
}

impl NetworkSettings {
    /// Flags (`args`) over environment variables over the config file (`file`) over the
    /// defaults.
    pub fn resolve(
        args: &NetworkArgs,
        file: &NetworkFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let policy = |flag: &Option<String>,
                      name: &'static str,
                      var: &'static str,
                      from_file: &Option<NetworkPolicy>,
                      default: NetworkPolicy|
         -> Result<NetworkPolicy, ConfigError> {
            let given = match flag.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => Some((name, v.to_string())),
                _ => first_env(env, &[var]),
            };
            match given {
                Some((name, v)) => {
                    v.trim()
                        .parse()
                        .map_err(|e: sqrx_core::network::PolicyError| ConfigError {
                            name,
                            reason: e.to_string(),
                        })
                }
                None => Ok(from_file.clone().unwrap_or(default)),
            }
        };
        let text = |flag: &Option<String>, var: &'static str, from_file: &Option<String>| match flag
            .as_deref()
            .map(str::trim)
        {
            Some(v) if !v.is_empty() => Some(v.to_string()),
            _ => first_env(env, &[var])
                .map(|(_, v)| v.trim().to_string())
                .or_else(|| from_file.clone()),
        };
        let defaults = NetworkConfig::default();
        let dns_upstream = match text(
            &args.dns_upstream,
            "SQRX_NET_DNS_UPSTREAM",
            &file.dns_upstream,
        ) {
            Some(v) => Some(parse_upstream(&v).ok_or_else(|| ConfigError {
                name: "--dns-upstream",
                reason: format!("{v:?} is not an IPv4 address with an optional :PORT"),
            })?),
            None => None,
        };
        let intercept_https = match args.proxy_https {
            Some(b) => b,
            None => match first_env(env, &["SQRX_PROXY_HTTPS", "SQUASH_PROXY_HTTPS"]) {
                Some((name, v)) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => {
                        return Err(ConfigError {
                            name,
                            reason: format!("{v:?} is not 1 or 0 (true or false)"),
                        });
                    }
                },
                None => file.proxy_https.unwrap_or(defaults.intercept_https),
            },
        };
        let upstream_ca = if !args.egress_ca.is_empty() {
            args.egress_ca.clone()
        } else if let Some((_, v)) = first_env(env, &["SQRX_EGRESS_CA"]) {
            v.split(':')
                .filter(|p| !p.trim().is_empty())
                .map(|p| PathBuf::from(p.trim()))
                .collect()
        } else {
            file.egress_ca.clone()
        };
        for f in &upstream_ca {
            if !f.is_file() {
                return Err(ConfigError {
                    name: "--egress-ca",
                    reason: format!("{} is not a file", f.display()),
                });
            }
        }
        Ok(NetworkSettings {
            default: policy(
                &args.default,
                "--net-default",
                "SQRX_NET_DEFAULT",
                &file.default,
                NetworkPolicy::None,
            )?,
            cgi_default: policy(
                &args.cgi_default,
                "--net-cgi-default",
                "SQRX_NET_CGI_DEFAULT",
                &file.cgi_default,
                NetworkPolicy::All,
            )?,
            runtime: NetworkConfig {
                pool: text(&args.pool, "SQRX_NET_POOL", &file.pool).unwrap_or(defaults.pool),
                uplink: text(&args.uplink, "SQRX_NET_UPLINK", &file.uplink),
                netns: match &args.netns {
                    Some(p) if !p.as_os_str().is_empty() => Some(p.clone()),
                    _ => first_env(env, &["SQRX_NET_NETNS"])
                        .map(|(_, v)| PathBuf::from(v.trim()))
                        .or_else(|| file.netns.clone()),
                },
                dns_upstream,
                intercept_https,
                upstream_ca,
            },
        })
    }
}

/// `IP` (port 53) or `IP:PORT`.
fn parse_upstream(v: &str) -> Option<std::net::SocketAddr> {
    v.parse::<std::net::SocketAddr>().ok().or_else(|| {
        v.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|ip| std::net::SocketAddr::from((ip, 53)))
    })
}

/// The runtime's network settings for the CLI's own runtime (`sqrx sandbox ...`): the
/// `SQRX_NET_POOL`, `SQRX_NET_UPLINK` and `SQRX_NET_NETNS` variables a server on the same
/// data directory would read, so both put sandbox links in the same place.
pub fn runtime_network_from_env(env: &dyn Fn(&str) -> Option<String>) -> NetworkConfig {
    NetworkSettings::resolve(&NetworkArgs::default(), &NetworkFile::default(), env)
        .map(|s| s.runtime)
        // Only the policies can fail to parse, and they are not read from these variables.
        .unwrap_or_default()
}

impl ConfigFile {
    /// Parse and check a config file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.sessions.max_sessions == 0 {
            return Err("sessions.max_sessions must be at least 1".into());
        }
        if file.sessions.max_ttl == 0 {
            return Err("sessions.max_ttl must be at least 1 second".into());
        }
        file.limits.check()?;
        let mut names = std::collections::BTreeSet::new();
        for t in &file.templates {
            let which = format!("template {:?}", t.name);
            if t.name.trim().is_empty() {
                return Err("a template has an empty name".into());
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("{which} is defined twice"));
            }
            if t.port == 0 {
                return Err(format!("{which} needs a port (1-65535)"));
            }
            if t.ttl == 0 || t.ttl > file.sessions.max_ttl {
                return Err(format!(
                    "{which}: ttl {} is outside 1-{} (sessions.max_ttl)",
                    t.ttl, file.sessions.max_ttl
                ));
            }
            if t.start_timeout == 0 {
                return Err(format!("{which}: start_timeout must be at least 1 second"));
            }
            if t.layers.is_empty() {
                return Err(format!("{which} has no layers"));
            }
        }
        Ok(file)
    }

    /// Read and check the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            name: "--config",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(&text).map_err(|reason| ConfigError {
            name: "--config",
            reason: format!("{}: {reason}", path.display()),
        })
    }
}

/// Default largest JSON body: 1 MiB.
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;

/// The server's settings, resolved from [`ServeArgs`] and the environment.
#[derive(Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// The bearer token every protected route requires; `None` = no authentication.
    pub auth_token: Option<String>,
    /// The tenant database; `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    /// Most sandboxes alive at once.
    pub max_sandboxes: usize,
    /// Upper layer size for sandboxes whose spec sets none, MiB.
    pub upper_mb: u64,
    /// Largest JSON request body, bytes.
    pub max_json_bytes: usize,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Time limit of ordinary requests.
    pub request_timeout: Duration,
    /// Timeout of execs that ask for none.
    pub exec_timeout: Duration,
    /// How long a client connection may idle between requests or take to send a head.
    pub idle_timeout: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Create 000-base at start when missing.
    pub bootstrap: bool,
    /// The host session URLs name; `None` = the request's `Host` header.
    pub public_host: Option<String>,
    /// The port `/proxy/{id}/...` reaches in sandboxes without their own `default_port`.
    pub proxy_default_port: Option<u16>,
    /// The layer store's bucket, if any.
    pub remote: Option<sqrx_core::remote::RemoteConfig>,
    /// Session limits.
    pub sessions: SessionLimits,
    /// Session templates besides the built-in one.
    pub templates: Vec<SessionTemplate>,
    /// The hosts the server answers to besides the loopback names.
    pub allowed_hosts: AllowedHosts,
    /// Serve on a non-loopback address without a token (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Defaults and maxima for HTTP clients.
    pub limits: Limits,
    /// How sandboxes are isolated (`--isolation`, `SQRX_ISOLATION`).
    pub isolation: sqrx_core::Isolation,
    /// Where JavaScript runs.
    pub js_isolation: JsIsolation,
    /// Sandbox networking: default policies and the runtime's network settings.
    pub network: NetworkSettings,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("auth", &self.auth_token.is_some())
            // The scheme only: a URL may hold a password.
            .field(
                "database",
                &self
                    .database_url
                    .as_deref()
                    .and_then(|u| u.split(':').next()),
            )
            .field("max_sandboxes", &self.max_sandboxes)
            .field("upper_mb", &self.upper_mb)
            .field("max_json_bytes", &self.max_json_bytes)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("exec_timeout", &self.exec_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("log_format", &self.log_format)
            .field("bootstrap", &self.bootstrap)
            .field("public_host", &self.public_host)
            .field("proxy_default_port", &self.proxy_default_port)
            .field("remote", &self.remote)
            .field("sessions", &self.sessions)
            .field(
                "templates",
                &self.templates.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("limits", &self.limits)
            .field("js_isolation", &self.js_isolation)
            .field("network", &self.network)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            auth_token: None,
            database_url: None,
            max_sandboxes: 100,
            upper_mb: 512,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_upload_bytes: 4096 << 20,
            request_timeout: Duration::from_secs(60),
            exec_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            log_format: LogFormat::Text,
            bootstrap: true,
            public_host: None,
            proxy_default_port: None,
            remote: None,
            sessions: SessionLimits::default(),
            templates: Vec::new(),
            allowed_hosts: AllowedHosts::default(),
            insecure_no_auth: false,
            limits: Limits::default(),
            isolation: sqrx_core::Isolation::default(),
            js_isolation: JsIsolation::Process,
            network: NetworkSettings::default(),
        }
    }
}

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}: {reason}")]
pub struct ConfigError {
    /// The option or variable.
    pub name: &'static str,
    /// Why.
    pub reason: String,
}

/// The first of `names` set to a non-empty value.
fn first_env(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
}

fn parse_env<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match first_env(env, names) {
        None => Ok(None),
        Some((name, v)) => v.trim().parse().map(Some).map_err(|e| ConfigError {
            name,
            reason: format!("{v:?}: {e}"),
        }),
    }
}

impl ServerConfig {
    /// Resolve `args`, reading environment variables through `env` (`std::env::var` in the
    /// binaries; a map in tests). Command-line options win over `SQRX_*`, which win over the
    /// `SQUASH_*` aliases.
    pub fn resolve(
        args: &ServeArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let listen = match &args.listen {
            Some(l) if !l.trim().is_empty() => l.trim().to_string(),
            _ => match parse_env::<u16>(env, &["SQUASH_PORT"])? {
                Some(port) => format!("127.0.0.1:{port}"),
                None => DEFAULT_LISTEN.to_string(),
            },
        };
        let auth_token = match &args.auth_token {
            Some(t) if !t.is_empty() => Some(t.clone()),
            _ => first_env(env, &["SQRX_AUTH_TOKEN", "SQUASH_AUTH_TOKEN"]).map(|(_, v)| v),
        };
        let database_url = match &args.database_url {
            Some(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
            _ => first_env(env, &["SQRX_DATABASE_URL"]).map(|(_, v)| v),
        };
        let max_sandboxes = match args.max_sandboxes {
            Some(n) => n,
            None => parse_env(env, &["SQRX_MAX_SANDBOXES", "SQUASH_MAX_SANDBOXES"])?.unwrap_or(100),
        };
        if max_sandboxes == 0 {
            return Err(ConfigError {
                name: "max sandboxes",
                reason: "must be at least 1".into(),
            });
        }
        let upper_mb = match args.upper_limit_mb {
            Some(n) => n,
            None => {
                parse_env(env, &["SQRX_UPPER_LIMIT_MB", "SQUASH_UPPER_LIMIT_MB"])?.unwrap_or(512)
            }
        };
        if upper_mb == 0 || upper_mb > 1 << 20 {
            return Err(ConfigError {
                name: "upper limit",
                reason: format!("{upper_mb} MiB is outside 1-1048576"),
            });
        }
        if args.max_json_bytes == 0 {
            return Err(ConfigError {
                name: "--max-json-bytes",
                reason: "must be at least 1".into(),
            });
        }
        for (name, secs) in [
            ("--request-timeout", args.request_timeout),
            ("--exec-timeout", args.exec_timeout),
            ("--idle-timeout", args.idle_timeout),
        ] {
            if secs == 0 {
                return Err(ConfigError {
                    name,
                    reason: "must be at least 1 second".into(),
                });
            }
        }
        let file = match &args.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let public_host = match args.public_host.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(h) if h.contains('/') || h.chars().any(char::is_whitespace) => {
                return Err(ConfigError {
                    name: "--public-host",
                    reason: format!("{h:?} must be a host[:port], without scheme or path"),
                });
            }
            Some(h) => Some(h.to_string()),
        };
        if upper_mb > file.limits.max_upper_mb {
            return Err(ConfigError {
                name: "upper limit",
                reason: format!(
                    "{upper_mb} MiB is over limits.max_upper_mb ({} MiB)",
                    file.limits.max_upper_mb
                ),
            });
        }
        let mut entries = args.allowed_hosts.clone();
        entries.extend(file.allowed_hosts.iter().cloned());
        // The name session URLs give clients is one the server answers to (any port: a
        // browser leaves the default one out of `Host`).
        if let Some((name, _)) = public_host.as_deref().and_then(crate::hosts::split_host) {
            entries.push(if name.contains(':') {
                format!("[{name}]")
            } else {
                name
            });
        }
        entries.retain(|e| !e.trim().is_empty());
        let allowed_hosts = AllowedHosts::new(&listen, &entries).map_err(|e| ConfigError {
            name: "--allowed-host",
            reason: e.to_string(),
        })?;
        let network = NetworkSettings::resolve(&args.network, &file.network, env)?;
        Ok(ServerConfig {
            listen,
            auth_token,
            database_url,
            max_sandboxes,
            upper_mb,
            max_json_bytes: args.max_json_bytes,
            max_upload_bytes: args.max_upload_mb.saturating_mul(1 << 20),
            request_timeout: Duration::from_secs(args.request_timeout),
            exec_timeout: Duration::from_secs(args.exec_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            log_format: args.log_format,
            bootstrap: !args.no_bootstrap,
            public_host,
            proxy_default_port: args.proxy_default_port,
            remote: remote_config(file.s3.as_ref(), env)?,
            sessions: file.sessions,
            templates: file.templates,
            allowed_hosts,
            insecure_no_auth: args.insecure_no_auth,
            limits: file.limits,
            isolation: match &args.isolation {
                Some(v) => v
                    .parse()
                    .map_err(|e: sqrx_core::SandboxError| ConfigError {
                        name: "--isolation",
                        reason: e.to_string(),
                    })?,
                None => parse_env(env, &["SQRX_ISOLATION"])?.unwrap_or_default(),
            },
            js_isolation: args.js_isolation,
            network,
        })
    }
}

/// The data directory: `explicit` (`--data-dir` / `SQRX_DATA`), else `SQUASH_DATA`, else the
/// default (`/var/lib/sqrx` for root, `$XDG_DATA_HOME/sqrx` otherwise).
pub fn data_dir(explicit: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    explicit
        .or_else(|| first_env(env, &["SQUASH_DATA"]).map(|(_, v)| PathBuf::from(v)))
        .unwrap_or_else(sqrx_core::paths::default_data_dir)
}

/// Environment lookup for the binaries.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let c = ServerConfig::resolve(&ServeArgs::default(), &env_of(&[])).expect("config");
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.auth_token, None);
        assert_eq!(c.max_sandboxes, 100);
        assert_eq!(c.upper_mb, 512);
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        let zero = ServeArgs {
            idle_timeout: 0,
            ..ServeArgs::default()
        };
        let e = ServerConfig::resolve(&zero, &env_of(&[])).expect_err("zero idle timeout");
        assert_eq!(e.name, "--idle-timeout");
    }

    #[test]
    fn isolation_from_flag_or_env() {
        use sqrx_core::Isolation;
        let c = ServerConfig::resolve(&ServeArgs::default(), &env_of(&[])).expect("config");
        assert_eq!(c.isolation, Isolation::UserNamespace);
        let env = env_of(&[("SQRX_ISOLATION", "host-root")]);
        let c = ServerConfig::resolve(&ServeArgs::default(), &env).expect("config");
        assert_eq!(c.isolation, Isolation::HostRoot);
        let args = ServeArgs {
            isolation: Some("user-namespace".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            ServerConfig::resolve(&args, &env)
                .expect("flag wins")
                .isolation,
            Isolation::UserNamespace
        );
        let bad = ServeArgs {
            isolation: Some("chroot".into()),
            ..ServeArgs::default()
        };
        let e = ServerConfig::resolve(&bad, &env_of(&[])).expect_err("unknown mode");
        assert!(e.to_string().contains("host-root"), "{e}");
    }

    #[test]
    fn squash_aliases() {
        let env = env_of(&[
            ("SQUASH_PORT", "9090"),
            ("SQUASH_AUTH_TOKEN", "s3cret"),
            ("SQUASH_MAX_SANDBOXES", "7"),
            ("SQUASH_UPPER_LIMIT_MB", "64"),
            ("SQUASH_DATA", "/srv/squash"),
        ]);
        let c = ServerConfig::resolve(&ServeArgs::default(), &env).expect("config");
        assert_eq!(c.listen, "127.0.0.1:9090");
        assert_eq!(c.auth_token.as_deref(), Some("s3cret"));
        assert_eq!(c.max_sandboxes, 7);
        assert_eq!(c.upper_mb, 64);
        assert_eq!(data_dir(None, &env), PathBuf::from("/srv/squash"));
        assert_eq!(
            data_dir(Some("/x".into()), &env),
            PathBuf::from("/x"),
            "--data-dir wins"
        );
    }

    #[test]
    fn sqrx_names_win_and_bad_values_fail() {
        let env = env_of(&[
            ("SQRX_AUTH_TOKEN", "mine"),
            ("SQUASH_AUTH_TOKEN", "theirs"),
            ("SQRX_MAX_SANDBOXES", "3"),
            ("SQUASH_MAX_SANDBOXES", "9"),
        ]);
        let args = ServeArgs::default();
        let c = ServerConfig::resolve(&args, &env).expect("config");
        assert_eq!(c.auth_token.as_deref(), Some("mine"));
        assert_eq!(c.max_sandboxes, 3);
        let err = ServerConfig::resolve(&args, &env_of(&[("SQUASH_MAX_SANDBOXES", "lots")]))
            .expect_err("not a number");
        assert_eq!(err.name, "SQUASH_MAX_SANDBOXES");
        assert!(ServerConfig::resolve(&args, &env_of(&[("SQUASH_PORT", "99999")])).is_err());
    }

    #[test]
    fn config_file() {
        let file = ConfigFile::parse(
            r#"
            [sessions]
            max_sessions = 5
            max_ttl = 600

            [[template]]
            name = "notebook"
            layers = ["000-base", "100-python3"]
            command = "python3 -m http.server 8888"
            port = 8888
            ttl = 300
            memory_mb = 512
            env = { A = "b" }
            "#,
        )
        .expect("parse");
        assert_eq!(file.sessions.max_sessions, 5);
        let t = &file.templates[0];
        assert_eq!(t.name, "notebook");
        assert_eq!(t.port, 8888);
        assert_eq!(t.start_timeout, 20, "default");
        assert_eq!(t.env.get("A").map(String::as_str), Some("b"));
        assert_eq!(ConfigFile::parse("").expect("empty"), ConfigFile::default());
        for (bad, needle) in [
            ("[sessions]\nmax_sesions = 1", "unknown field"),
            ("[[template]]\nname = \"a\"", "port"),
            ("[[template]]\nname = \"a\"\nport = 0", "needs a port"),
            (
                "[[template]]\nname = \"a\"\nport = 1\nmemory = 512",
                "unknown field `memory`",
            ),
            ("[[template]]\nname = \"a\"\nport = 1\nttl = 99999", "ttl"),
            (
                "[[template]]\nname = \"a\"\nport = 1\n[[template]]\nname = \"a\"\nport = 2",
                "twice",
            ),
        ] {
            let e = ConfigFile::parse(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn public_host() {
        let args = ServeArgs {
            public_host: Some("sandbox.example.com".into()),
            ..ServeArgs::default()
        };
        let c = ServerConfig::resolve(&args, &env_of(&[])).expect("config");
        assert_eq!(c.public_host.as_deref(), Some("sandbox.example.com"));
        assert!(c.allowed_hosts.allows("sandbox.example.com:443", None));
        assert!(!c.allowed_hosts.allows("other.example.com", None));
        let args = ServeArgs {
            public_host: Some("https://x/".into()),
            ..ServeArgs::default()
        };
        assert!(ServerConfig::resolve(&args, &env_of(&[])).is_err());
    }

    #[test]
    fn network_defaults_flags_env_and_file() {
        let c = ServerConfig::resolve(&ServeArgs::default(), &env_of(&[])).expect("config");
        assert_eq!(c.network.default, NetworkPolicy::None);
        assert_eq!(c.network.cgi_default, NetworkPolicy::All, "as sq-sandbox");
        assert_eq!(c.network.runtime, NetworkConfig::default());

        let file = ConfigFile::parse(
            r#"
            [network]
            default = { allow = ["10.0.0.0/8:443"] }
            cgi_default = "none"
            pool = "10.77.0.0/16"
            uplink = "eth9"
            netns = "/run/netns/file"
            "#,
        )
        .expect("parse");
        let env = env_of(&[
            ("SQRX_NET_UPLINK", "eth1"),
            ("SQRX_NET_CGI_DEFAULT", "10.1.0.0/16, 10.2.0.1:80"),
        ]);
        let args = NetworkArgs {
            netns: Some("/run/netns/flag".into()),
            ..NetworkArgs::default()
        };
        let n = NetworkSettings::resolve(&args, &file.network, &env).expect("resolve");
        assert_eq!(
            n.default,
            NetworkPolicy::allow(&["10.0.0.0/8:443"]).expect("policy"),
            "from the file"
        );
        assert_eq!(
            n.cgi_default,
            NetworkPolicy::allow(&["10.1.0.0/16", "10.2.0.1:80"]).expect("policy"),
            "the variable wins over the file"
        );
        assert_eq!(n.runtime.pool, "10.77.0.0/16");
        assert_eq!(n.runtime.uplink.as_deref(), Some("eth1"));
        assert_eq!(
            n.runtime.netns.as_deref(),
            Some(Path::new("/run/netns/flag")),
            "the flag wins"
        );
        assert_eq!(
            runtime_network_from_env(&env_of(&[("SQRX_NET_NETNS", "/run/netns/x")])).netns,
            Some(PathBuf::from("/run/netns/x"))
        );
        assert_eq!(n.runtime.dns_upstream, None);
        let dns = |v: &str| {
            NetworkSettings::resolve(
                &NetworkArgs {
                    dns_upstream: Some(v.into()),
                    ..NetworkArgs::default()
                },
                &NetworkFile::default(),
                &env_of(&[]),
            )
        };
        assert_eq!(
            dns("10.3.0.53").expect("ip").runtime.dns_upstream,
            Some("10.3.0.53:53".parse().expect("addr"))
        );
        assert_eq!(
            dns("10.3.0.53:5353").expect("ip:port").runtime.dns_upstream,
            Some("10.3.0.53:5353".parse().expect("addr"))
        );
        let e = dns("dns.example").expect_err("a name");
        assert_eq!(e.name, "--dns-upstream");

        let bad = ServeArgs {
            network: NetworkArgs {
                default: Some("everything".into()),
                ..NetworkArgs::default()
            },
            ..ServeArgs::default()
        };
        let e = ServerConfig::resolve(&bad, &env_of(&[])).expect_err("bad policy");
        assert_eq!(e.name, "--net-default");
        assert!(e.to_string().contains("everything"), "{e}");
        let e = ServerConfig::resolve(
            &ServeArgs::default(),
            &env_of(&[("SQRX_NET_CGI_DEFAULT", "10.0.0.1/8")]),
        )
        .expect_err("bad rule");
        assert_eq!(e.name, "SQRX_NET_CGI_DEFAULT");
        assert!(e.to_string().contains("prefix"), "{e}");
        let e = ConfigFile::parse("[network]\ndefault = \"some\"").expect_err("bad file");
        assert!(e.contains("some"), "{e}");
        let e = ConfigFile::parse("[network]\npol = \"x\"").expect_err("unknown key");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn https_interception_follows_sq_sandbox_s_variable_and_egress_cas_must_exist() {
        let resolve = |args: &NetworkArgs, file: &str, env: &[(&str, &str)]| {
            let file = ConfigFile::parse(file).expect("parse");
            NetworkSettings::resolve(args, &file.network, &env_of(env))
        };
        let none = NetworkArgs::default();
        assert!(
            resolve(&none, "", &[])
                .expect("default")
                .runtime
                .intercept_https
        );
        assert!(
            !resolve(&none, "", &[("SQUASH_PROXY_HTTPS", "0")])
                .expect("off")
                .runtime
                .intercept_https
        );
        assert!(
            resolve(
                &none,
                "[network]\nproxy_https = false",
                &[("SQUASH_PROXY_HTTPS", "1")]
            )
            .expect("the variable wins")
            .runtime
            .intercept_https
        );
        assert!(
            !resolve(&none, "[network]\nproxy_https = false", &[])
                .expect("file")
                .runtime
                .intercept_https
        );
        let e = resolve(&none, "", &[("SQUASH_PROXY_HTTPS", "maybe")]).expect_err("unclear");
        assert_eq!(e.name, "SQUASH_PROXY_HTTPS");
        let ca = tempfile::NamedTempFile::new().expect("file");
        let args = NetworkArgs {
            egress_ca: vec![ca.path().into()],
            ..NetworkArgs::default()
        };
        assert_eq!(
            resolve(&args, "", &[]).expect("ca").runtime.upstream_ca,
            vec![ca.path().to_path_buf()]
        );
        let e = resolve(&none, "", &[("SQRX_EGRESS_CA", "/nonexistent/ca.pem")])
            .expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
