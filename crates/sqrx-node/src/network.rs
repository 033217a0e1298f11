//! Network policies between JavaScript values and the core's `NetworkPolicy`: `"none"`,
//! `"all"`, an array of rules (an allow list) or `{ allow: [...], deny: [...] }`.

use sqrx_core::network::NetworkPolicy;

use crate::error::invalid;

const SHAPE: &str = "network: expected 'none', 'all', an array of rules or \
                     { allow: [...], deny: [...] }";

/// The policy a JavaScript value names; an `InvalidArgument` error with the rule and why when
/// it is not one.
pub(crate) fn policy(value: serde_json::Value) -> napi::Result<NetworkPolicy> {
    let json = match value {
        serde_json::Value::String(word) => {
            return match word.as_str() {
                "none" => Ok(NetworkPolicy::None),
                "all" => Ok(NetworkPolicy::All),
                _ => Err(invalid(format!("{SHAPE}, got {word:?}"))),
            };
        }
        // An array is an allow list.
        serde_json::Value::Array(rules) => serde_json::json!({ "allow": rules }),
        v @ serde_json::Value::Object(_) => v,
        other => return Err(invalid(format!("{SHAPE}, got {other}"))),
    };
    // The object form is read (and refused) exactly as the core reads it.
    serde_json::from_value(json).map_err(|e| invalid(format!("network: {e}")))
}

/// A policy as JavaScript sees it: `"none"`, `"all"` or `{ allow: [...], deny: [...] }`.
pub(crate) fn to_js(policy: &NetworkPolicy) -> serde_json::Value {
    // The core's form is JSON already; it cannot fail to encode.
    serde_json::to_value(policy).unwrap_or(serde_json::Value::Null)
}
