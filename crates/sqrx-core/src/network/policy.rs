//! What a sandbox may reach: `none`, `all`, or lists of rules (`HOST`, `*.DOMAIN`,
//! `CIDR`, each with an optional `:PORT`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sandbox's network policy. Serialized as `"none"`, `"all"` or
/// `{"allow": [...], "deny": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Loopback only: no interface but `lo` (the default).
    #[default]
    None,
    /// Every destination but the ones refused to every sandbox (the host, other sandboxes,
    /// link-local and metadata addresses).
    All,
    /// Only what `allow` names and `deny` does not (deny wins); ICMP refused.
    List {
        /// Destinations that may be reached.
        allow: Vec<NetRule>,
        /// Destinations refused even when `allow` names them.
        deny: Vec<NetRule>,
    },
}

/// Where a rule points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One host name (`pypi.org`).
    Host(String),
    /// Every name under a domain, not the domain itself (`*.pythonhosted.org`).
    Domain(String),
    /// An IPv4 network (`10.1.0.0/16`; a bare address is a /32).
    Cidr {
        /// The network address (host bits zero).
        addr: Ipv4Addr,
        /// The prefix length, 0-32.
        prefix: u8,
    },
}

/// One rule of a list: a destination and, optionally, one port (TCP and UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// The destination.
    pub to: Destination,
    /// The port; `None` = every port.
    pub port: Option<u16>,
}

/// A rule or policy that does not parse; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network rule {rule:?}: {reason}")]
pub struct PolicyError {
    /// The text given.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for NetRule {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let bad = |reason: &str| PolicyError {
            rule: text.to_string(),
            reason: reason.to_string(),
        };
        // IPv6 first: its colons are not a port separator.
        if text.starts_with('[') || text.matches(':').count() > 1 {
            return Err(bad(
                "IPv6 destinations are not supported (IPv6 is off inside)",
            ));
        }
        let (dest, port) = match text.rsplit_once(':') {
            Some((d, p)) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
                if port == 0 {
                    return Err(bad("the port must be a number from 1 to 65535"));
                }
                (d, Some(port))
            }
            None => (text, None),
        };
        let to = if let Some((addr, prefix)) = dest.split_once('/') {
            let addr: Ipv4Addr = addr
                .parse()
                .map_err(|_| bad("a CIDR must be an IPv4 network such as 10.1.0.0/16"))?;
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| bad("a prefix length must be 0-32"))?;
            let mask = mask(prefix);
            if u32::from(addr) & !mask != 0 {
                return Err(bad("the address has bits set beyond the prefix length"));
            }
            Destination::Cidr { addr, prefix }
        } else if let Ok(addr) = dest.parse::<Ipv4Addr>() {
            Destination::Cidr { addr, prefix: 32 }
        } else if let Some(domain) = dest.strip_prefix("*.") {
            let domain = domain.to_ascii_lowercase();
            if !valid_name(&domain) {
                return Err(bad("not a domain name"));
            }
            Destination::Domain(domain)
        } else {
            let host = dest.trim_end_matches('.').to_ascii_lowercase();
            if !valid_name(&host) {
                return Err(bad("not a host name, *.domain, address or CIDR"));
            }
            Destination::Host(host)
        };
        Ok(NetRule { to, port })
    }
}

/// The netmask of a prefix length.
pub(crate) fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            Destination::Host(h) => write!(f, "{h}")?,
            Destination::Domain(d) => write!(f, "*.{d}")?,
            Destination::Cidr { addr, prefix: 32 } => write!(f, "{addr}")?,
            Destination::Cidr { addr, prefix } => write!(f, "{addr}/{prefix}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Serialize for NetRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl NetworkPolicy {
    /// A list policy from rule texts.
    pub fn allow<S: AsRef<str>>(rules: &[S]) -> Result<Self, PolicyError> {
        Ok(NetworkPolicy::List {
            allow: rules
                .iter()
                .map(|r| r.as_ref().parse())
                .collect::<Result<_, _>>()?,
            deny: Vec::new(),
        })
    }

    /// Whether the sandbox gets an interface besides `lo`.
    pub fn has_network(&self) -> bool {
        !matches!(self, NetworkPolicy::None)
    }

    /// Rules naming hosts or domains (enforced through the sandbox's DNS resolver).
    pub fn names(&self) -> impl Iterator<Item = &NetRule> {
        let rules: &[NetRule] = match self {
            NetworkPolicy::List { allow, .. } => allow,
            _ => &[],
        };
        rules
            .iter()
            .filter(|r| !matches!(r.to, Destination::Cidr { .. }))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListForm {
    #[serde(default)]
    allow: Vec<NetRule>,
    #[serde(default)]
    deny: Vec<NetRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListText {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Rules are read as text first, so a bad one is reported with its reason.
#[derive(Deserialize)]
#[serde(untagged)]
enum Form {
    Word(String),
    List(ListText),
}

impl Serialize for NetworkPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NetworkPolicy::None => s.serialize_str("none"),
            NetworkPolicy::All => s.serialize_str("all"),
            NetworkPolicy::List { allow, deny } => ListForm {
                allow: allow.clone(),
                deny: deny.clone(),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for NetworkPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a network policy is \"none\", \"all\" or {\"allow\": [...], \"deny\": [...]} \
                 (rules: HOST, *.DOMAIN or CIDR, each with an optional :PORT)",
            )
        })? {
            Form::Word(w) if w == "none" => Ok(NetworkPolicy::None),
            Form::Word(w) if w == "all" => Ok(NetworkPolicy::All),
            Form::Word(w) => Err(serde::de::Error::custom(format!(
                "unknown network policy {w:?}: \"none\", \"all\" or {{\"allow\": [...]}}"
            ))),
            Form::List(l) => {
                let parse = |rules: Vec<String>| {
                    rules
                        .iter()
                        .map(|r| r.parse::<NetRule>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(serde::de::Error::custom)
                };
                Ok(NetworkPolicy::List {
                    allow: parse(l.allow)?,
                    deny: parse(l.deny)?,
                })
            }
        }
    }
}

impl FromStr for NetworkPolicy {
    type Err = PolicyError;

    /// `none`, `all`, or a comma-separated allow list.
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "none" => Ok(NetworkPolicy::None),
            "all" => Ok(NetworkPolicy::All),
            list => NetworkPolicy::allow(&list.split(',').map(str::trim).collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "pypi.org",
            "*.pythonhosted.org",
            "10.1.0.0/16",
            "api.example.com:443",
            "10.1.2.3",
            "10.1.2.3:8080",
            "0.0.0.0/0:53",
        ] {
            let rule: NetRule = text.parse().expect(text);
            assert_eq!(rule.to_string(), text);
        }
        let r: NetRule = "PyPI.org.".parse().expect("trailing dot");
        assert_eq!(r.to, Destination::Host("pypi.org".into()));
    }

    #[test]
    fn bad_rules_say_why() {
        for (text, why) in [
            ("10.1.0.1/16", "beyond the prefix"),
            ("10.1.0.0/33", "0-32"),
            ("pypi.org:0", "port"),
            ("pypi.org:http", "port"),
            ("localhost", "not a host name"),
            ("*.com", "not a domain"),
            ("bad..name.org", "not a host name"),
            ("[::1]:80", "IPv6"),
            ("[::1]", "IPv6"),
            ("2001:db8::/32", "IPv6"),
            ("", "not a host name"),
        ] {
            let e = text.parse::<NetRule>().expect_err(text);
            assert!(e.reason.contains(why), "{text}: {}", e.reason);
        }
    }

    #[test]
    fn policies_round_trip_through_json() {
        for (json, policy) in [
            (r#""none""#, NetworkPolicy::None),
            (r#""all""#, NetworkPolicy::All),
            (
                r#"{"allow":["pypi.org","10.0.0.0/8:443"],"deny":["10.9.0.0/16"]}"#,
                NetworkPolicy::List {
                    allow: vec![
                        "pypi.org".parse().expect("r"),
                        "10.0.0.0/8:443".parse().expect("r"),
                    ],
                    deny: vec!["10.9.0.0/16".parse().expect("r")],
                },
            ),
        ] {
            let parsed: NetworkPolicy = serde_json::from_str(json).expect(json);
            assert_eq!(parsed, policy);
            assert_eq!(serde_json::to_string(&policy).expect("json"), json);
        }
        for bad in [
            r#""some""#,
            r#"{"allow":["10.0.0.1/8"]}"#,
            r#"{"alow":[]}"#,
            "3",
        ] {
            assert!(serde_json::from_str::<NetworkPolicy>(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<NetworkPolicy>(r#"{"allow":["10.0.0.1/8"]}"#)
            .expect_err("bad rule");
        assert!(e.to_string().contains("beyond the prefix"), "{e}");
    }
}
