//! Secrets between JavaScript objects and the core: `{ value, allowedHosts, placeholder?,
//! allowHttp?, allowQuery?, allowBody? }` in, objects without values out.

use napi_derive::napi;

/// A secret to set. `value` is write-only: nothing returns it.
#[napi(object)]
pub struct SecretOptions {
    /// The real value.
    pub value: String,
    /// Hosts it may go to: `api.example.com`, or `*.example.com`.
    pub allowed_hosts: Vec<String>,
    /// What the sandbox sees as `$NAME` (default: kept, or a new `sqrx-secret-…`).
    pub placeholder: Option<String>,
    /// Also substitute in plain HTTP (default: HTTPS only).
    pub allow_http: Option<bool>,
    /// Also substitute in the URL (default: headers only).
    pub allow_query: Option<bool>,
    /// Also substitute in the body (default: headers only).
    pub allow_body: Option<bool>,
}

impl From<SecretOptions> for sqrx_core::Secret {
    fn from(o: SecretOptions) -> Self {
        sqrx_core::Secret {
            placeholder: o.placeholder,
            value: o.value,
            allowed_hosts: o.allowed_hosts,
            allow_http: o.allow_http.unwrap_or(false),
            allow_query: o.allow_query.unwrap_or(false),
            allow_body: o.allow_body.unwrap_or(false),
        }
    }
}

/// A secret as shown: everything but its value.
#[napi(object)]
pub struct SecretInfo {
    /// Its name (the environment variable inside).
    pub name: String,
    /// What the sandbox sees.
    pub placeholder: String,
    /// Where the value may go.
    pub allowed_hosts: Vec<String>,
    /// Substituted in plain HTTP too.
    pub allow_http: bool,
    /// Substituted in the URL too.
    pub allow_query: bool,
    /// Substituted in the body too.
    pub allow_body: bool,
    /// `'runtime'` (the data directory's `secrets.json`) or `'sandbox'` (its own).
    #[napi(ts_type = "'runtime' | 'sandbox'")]
    pub source: String,
}

impl From<sqrx_core::SecretInfo> for SecretInfo {
    fn from(s: sqrx_core::SecretInfo) -> Self {
        SecretInfo {
            name: s.name,
            placeholder: s.placeholder,
            allowed_hosts: s.allowed_hosts,
            allow_http: s.allow_http,
            allow_query: s.allow_query,
            allow_body: s.allow_body,
            source: s.source.to_string(),
        }
    }
}
