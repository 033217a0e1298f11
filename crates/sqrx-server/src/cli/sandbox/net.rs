//! `sqrx sandbox network` and the network flags of `create`: policies from the command line
//! and on one line of output.

use sqrx_core::Runtime;
use sqrx_core::network::NetworkPolicy;

use super::info::info_json;
use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// `--net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetChoice {
    /// Loopback only.
    None,
    /// Every destination but the ones refused to every sandbox.
    All,
}

/// The policy `--net` and `--allow` ask for (clap refuses both together).
pub(super) fn create_policy(
    net: Option<NetChoice>,
    allow: &[String],
) -> Result<NetworkPolicy, CliError> {
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

/// Change the network policy of the running sandbox `id` to `policy` (`none`, `all` or an
/// allow list).
pub fn set(rt: &Runtime, id: &str, policy: &str, json: bool) -> Result<(), CliError> {
    let policy: NetworkPolicy = policy
        .trim()
        .parse()
        .map_err(|e: sqrx_core::network::PolicyError| CliError(e.to_string()))?;
    let mut sandbox = rt.get(id)?;
    sandbox.set_network(policy)?;
    if json {
        print_json(&info_json(&sandbox)?)?;
    } else {
        println!("{id}: network {}", policy_text(sandbox.network_policy()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::create::CreateArgs;
    use super::super::{SandboxCmd, parse};
    use super::*;

    fn policy_of(args: &[&str]) -> Result<NetworkPolicy, String> {
        match parse(args)? {
            SandboxCmd::Create(CreateArgs { net, allow, .. }) => {
                create_policy(net, &allow).map_err(|e| e.0)
            }
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
