//! The JSON bodies of `/v1` and `/cgi-bin` (and the WebSocket frames that carry JSON): any
//! bytes, and any JSON value shaped like a body, decode or are refused, never a panic; what
//! decodes goes through the same checks the handlers run.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sqrx_server::cgi::model::{
    CgiCreate, CgiExecBody, CgiLabel, CgiModuleBody, allow_net_policy, count, list, number, object,
    text,
};
use sqrx_server::config::Limits;
use sqrx_server::js_api::ExecuteBody;
use sqrx_server::v1::exec_ws::WsExecRequest;
use sqrx_server::v1::model::{CommandBody, CreateSandbox, ExecBody, output_cap, seconds};
use sqrx_server::v1::pty::PtyFrame;
use sqrx_server::v1::sessions::{ExtendRequest, TryRequest};
use sqrx_server::v1::snapshots::{ActivateBody, CloneBody, RestoreBody, SnapshotBody};
use sqrx_testkit::fuzz;

/// The fields of each body type, so generated objects often decode and reach the checks.
const BODIES: [&[&str]; 9] = [
    &[
        "id",
        "layers",
        "owner",
        "task",
        "cpu",
        "memory_mb",
        "pids_max",
        "upper_mb",
        "max_lifetime",
        "env",
        "hostname",
        "allow_net",
        "network",
    ],
    &[
        "command",
        "env",
        "workdir",
        "stdin",
        "timeout",
        "output_cap",
    ],
    &["template", "ttl"],
    &["seconds"],
    &["label", "layer", "id"],
    &["type", "cols", "rows", "data"],
    &[
        "id",
        "owner",
        "layers",
        "task",
        "cpu",
        "memory_mb",
        "max_lifetime_s",
        "allow_net",
    ],
    &["cmd", "workdir", "timeout", "module", "label"],
    &["code", "file", "timeout"],
];

/// Every body's field names, and one that none has.
fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = BODIES.iter().flat_map(|b| b.iter().copied()).collect();
    keys.push("unknown");
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// An object with some of one body type's fields, each any JSON value.
fn body_object() -> impl Strategy<Value = Value> {
    prop::sample::select(&BODIES[..]).prop_flat_map(|keys| {
        prop::collection::vec((prop::sample::select(keys), json()), 0..keys.len() + 1).prop_map(
            |kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            },
        )
    })
}

/// Any JSON value, its object keys mostly the bodies' field names.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("1.5".to_string()),
            Just("1e400".to_string()),
            Just("-0".to_string()),
            Just("18446744073709551616".to_string()),
            Just("a, b,,c".to_string()),
            Just("resize".to_string()),
            Just("input".to_string()),
            ".{0,16}",
        ]
        .prop_map(Value::String),
    ];
    let key = prop_oneof![
        9 => prop::sample::select(all_keys()).prop_map(str::to_string),
        1 => ".{0,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Decode `bytes` as every body type and run what checks each has.
fn every_body(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(b) = serde_json::from_slice::<CreateSandbox>(bytes)
        && let Ok(spec) = b.into_spec(512, &limits, &sqrx_core::network::NetworkPolicy::None)
    {
        let _ = spec.validate();
    }
    if let Ok(b) = serde_json::from_slice::<ExecBody>(bytes) {
        let _ = b.into_request(std::time::Duration::from_secs(300), &limits);
    }
    if let Ok(b) = serde_json::from_slice::<WsExecRequest>(bytes) {
        let _ = b.timeout.map(|t| seconds("timeout", t));
        let _ = output_cap(b.output_cap, &limits);
        let _ = sqrx_core::Command::from(b.command);
    }
    let _ = serde_json::from_slice::<CommandBody>(bytes);
    if let Ok(b) = serde_json::from_slice::<TryRequest>(bytes) {
        let _ = b.ttl.map(|t| seconds("ttl", t));
    }
    if let Ok(b) = serde_json::from_slice::<ExtendRequest>(bytes) {
        let _ = seconds("seconds", b.seconds);
    }
    let _ = serde_json::from_slice::<SnapshotBody>(bytes);
    let _ = serde_json::from_slice::<RestoreBody>(bytes);
    let _ = serde_json::from_slice::<ActivateBody>(bytes);
    let _ = serde_json::from_slice::<CloneBody>(bytes);
    let _ = serde_json::from_slice::<PtyFrame>(bytes);
    let _ = serde_json::from_slice::<ExecuteBody>(bytes);
    let _ = serde_json::from_slice::<CgiCreate>(bytes);
    let _ = serde_json::from_slice::<sqrx_core::network::NetworkPolicy>(bytes);
    let _ = serde_json::from_slice::<CgiExecBody>(bytes);
    let _ = serde_json::from_slice::<CgiLabel>(bytes);
    let _ = serde_json::from_slice::<CgiModuleBody>(bytes);
    // The cgi-bin handlers read an object field by field, leniently.
    if let Ok(fields) = object(Some("application/json"), bytes) {
        for key in all_keys() {
            let _ = text(&fields, key);
            if let Ok(Some(n)) = number(&fields, key) {
                assert!(n.is_finite(), "{key}: {n}");
                let _ = seconds(key, n);
            }
            let _ = count(&fields, key);
            let _ = list(&fields, key);
        }
        let _ = allow_net_policy(&fields, &sqrx_core::network::NetworkPolicy::All);
    }
}

proptest! {
    #![proptest_config(fuzz::config(10_000))]

    /// Arbitrary bytes.
    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz::limit_memory();
        fuzz::watch("bodies random bytes", || every_body(&bytes));
    }

    /// JSON values shaped like bodies.
    #[test]
    fn json_values(value in prop_oneof![json(), body_object()]) {
        fuzz::limit_memory();
        let bytes = serde_json::to_vec(&value).expect("encode");
        fuzz::watch("bodies json", || every_body(&bytes));
    }
}
