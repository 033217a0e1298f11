//! What a session runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of the built-in template.
pub const DEFAULT_TEMPLATE: &str = "default";

fn default_ttl() -> u64 {
    600
}

fn default_start_timeout() -> u64 {
    20
}

/// A kind of session: which layers, which service on which port, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionTemplate {
    /// The template's name.
    pub name: String,
    /// Layers of the sandbox, base first.
    #[serde(default = "default_layers")]
    pub layers: Vec<String>,
    /// The service: a shell command started in the background when the session opens.
    /// `None` for the built-in info service (see [`crate::roles::Role::InfoService`]).
    #[serde(default)]
    pub command: Option<String>,
    /// The TCP port the service listens on inside the sandbox.
    pub port: u16,
    /// Time to live in seconds (default 600).
    #[serde(default = "default_ttl")]
    pub ttl: u64,
    /// How long the service may take to accept its first connection, in seconds (default 20).
    #[serde(default = "default_start_timeout")]
    pub start_timeout: u64,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// CPU limit in cores.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Task limit.
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Environment of the service.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_layers() -> Vec<String> {
    vec![crate::layer::BASE_LAYER.to_string()]
}

impl SessionTemplate {
    /// The built-in template: a service that streams the sandbox's hostname, layers, limits
    /// and uptime once a second to every WebSocket client on port 8080.
    pub fn builtin() -> Self {
        SessionTemplate {
            name: DEFAULT_TEMPLATE.to_string(),
            layers: default_layers(),
            command: None,
            port: 8080,
            ttl: default_ttl(),
            start_timeout: default_start_timeout(),
            memory_mb: Some(256),
            cpu: None,
            pids_max: Some(256),
            env: BTreeMap::new(),
        }
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }
}
