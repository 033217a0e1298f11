//! Network policies between Python values and the core's `NetworkPolicy`: `"none"`, `"all"`,
//! a dict `{"allow": [...], "deny": [...]}`, or a list of rules (an allow list).

use pyo3::prelude::*;
use pyo3::types::PyString;
use sqrx_core::network::NetworkPolicy;

use crate::error::InvalidArgument;

const SHAPE: &str = "network: expected \"none\", \"all\", a list of rules or a dict \
                     {\"allow\": [...], \"deny\": [...]}";

/// The policy a Python value names; `InvalidArgument` with the rule and why when it is not one.
pub(crate) fn policy(value: &Bound<'_, PyAny>) -> PyResult<NetworkPolicy> {
    let py = value.py();
    if value.is_instance_of::<PyString>() {
        let word: String = value.extract()?;
        return match word.as_str() {
            "none" => Ok(NetworkPolicy::None),
            "all" => Ok(NetworkPolicy::All),
            _ => Err(InvalidArgument::new_err(format!("{SHAPE}, got {word:?}"))),
        };
    }
    // Through JSON, so the dict form is read (and refused) exactly as the core reads it.
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))
        .and_then(|t| t.extract())
        .map_err(|_| InvalidArgument::new_err(format!("{SHAPE}, got {}", type_name(value))))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| InvalidArgument::new_err(format!("network: {e}")))?;
    let json = match json {
        // A bare list is an allow list.
        serde_json::Value::Array(rules) => serde_json::json!({ "allow": rules }),
        v @ serde_json::Value::Object(_) => v,
        _ => {
            return Err(InvalidArgument::new_err(format!(
                "{SHAPE}, got {}",
                type_name(value)
            )));
        }
    };
    serde_json::from_value(json).map_err(|e| InvalidArgument::new_err(format!("network: {e}")))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A policy as Python sees it: `"none"`, `"all"`, or `{"allow": [...], "deny": [...]}`.
pub(crate) fn to_py(py: Python<'_>, policy: &NetworkPolicy) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(policy)
        .map_err(|e| crate::error::Internal::new_err(format!("cannot encode a policy: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}
