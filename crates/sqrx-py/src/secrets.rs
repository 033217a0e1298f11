//! Secrets between Python values and the core: `{"NAME": {"value": …, "allowed_hosts": […],
//! "placeholder": …, "allow_http": …, "allow_query": …, "allow_body": …}}` in, dicts without
//! values out.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::InvalidArgument;

/// The secrets a Python dict names; `InvalidArgument` naming the secret (never its value).
pub(crate) fn from_py(value: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, sqrx_core::Secret>> {
    let py = value.py();
    let shape = "secrets: expected a dict {NAME: {\"value\": str, \"allowed_hosts\": [str, ...]}}";
    if !value.is_instance_of::<PyDict>() {
        return Err(InvalidArgument::new_err(shape));
    }
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))
        .and_then(|t| t.extract())
        .map_err(|_| InvalidArgument::new_err(shape))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        value: String,
        allowed_hosts: Vec<String>,
        #[serde(default)]
        placeholder: Option<String>,
        #[serde(default)]
        allow_http: bool,
        #[serde(default)]
        allow_query: bool,
        #[serde(default)]
        allow_body: bool,
    }
    // serde's messages name fields and positions, never the values read.
    let given: BTreeMap<String, Given> = serde_json::from_str(&text)
        .map_err(|e| InvalidArgument::new_err(format!("{shape}: {e}")))?;
    Ok(given
        .into_iter()
        .map(|(name, g)| {
            (
                name,
                sqrx_core::Secret {
                    placeholder: g.placeholder,
                    value: g.value,
                    allowed_hosts: g.allowed_hosts,
                    allow_http: g.allow_http,
                    allow_query: g.allow_query,
                    allow_body: g.allow_body,
                },
            )
        })
        .collect())
}

/// Secrets as Python dicts (no values).
pub(crate) fn to_py(py: Python<'_>, secrets: &[sqrx_core::SecretInfo]) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(secrets)
        .map_err(|e| crate::error::Internal::new_err(format!("cannot encode secrets: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}
