//! Sandbox networking over HTTP: the `network` of `/v1` creates and views, live changes with
//! `PUT /v1/sandboxes/{id}/network`, and `/cgi-bin`'s `allow_net`, against a server whose
//! sandbox links live in a test bed of network namespaces ([`crate::netbed`]).

use serde_json::{Value, json};
use sqrx_testkit::privileged;

use crate::harness::*;
use crate::netbed::{NetBed, fetch_cmd};

async fn put(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    send(c.put(url).json(&body)).await
}

/// Whether the sandbox `id` gets an answer from the bed's server at `addr`:8080.
async fn reaches(c: &reqwest::Client, s: &Server, id: &str, addr: &str) -> bool {
    let r = exec(c, s, id, &fetch_cmd(addr, 8080)).await;
    // Printed, so a failure shows what the sandbox saw.
    eprintln!("{id} -> {addr}: {}", r["stdout"]);
    r["exit_code"] == 0 && r["stdout"].as_str().is_some_and(|o| o.contains("hello"))
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_network_policies_and_live_changes() {
    if !privileged("server v1_network_policies_and_live_changes") {
        return;
    }
    // Drop order: server, data (its sandboxes destroyed), then the bed.
    let bed = NetBed::new();
    let data = DataDir::with_network(bed.config());
    let args = bed.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_with(&data, Binary::Server, &args, &[]);
    let c = client();

    // No `network`: the server's default, none; no link.
    let quiet = create(&c, &s, "quiet").await;
    assert_eq!(quiet["network"], "none");
    assert_eq!(quiet["address"], Value::Null);
    assert_eq!(quiet["gateway"], Value::Null);
    assert!(!reaches(&c, &s, "quiet", "10.1.0.1").await);

    // "all": a link, reported with its addresses.
    let open = post(
        &c,
        s.url("/v1/sandboxes"),
        json!({"id": "open", "network": "all"}),
    )
    .await;
    assert_eq!(open.0, 201, "{}", open.1);
    assert_eq!(open.1["network"], "all");
    let address = open.1["address"].as_str().expect("an address").to_string();
    assert!(open.1["gateway"].as_str().is_some(), "{}", open.1);
    assert!(reaches(&c, &s, "open", "10.1.0.1").await);
    assert!(reaches(&c, &s, "open", "10.2.0.1").await);
    let listed = get(&c, s.url("/v1/sandboxes")).await;
    let networks: Vec<&Value> = listed
        .1
        .as_array()
        .expect("list")
        .iter()
        .map(|v| &v["network"])
        .collect();
    assert_eq!(networks, [&json!("all"), &json!("none")]);

    // A live change to a list: reported, and in effect for the next connection.
    let changed = put(
        &c,
        s.url("/v1/sandboxes/open/network"),
        json!({"allow": ["10.2.0.0/16"]}),
    )
    .await;
    assert_eq!(changed.0, 200, "{}", changed.1);
    assert_eq!(
        changed.1["network"],
        json!({"allow": ["10.2.0.0/16"], "deny": []})
    );
    assert_eq!(changed.1["address"], address.as_str(), "the same link");
    assert!(!reaches(&c, &s, "open", "10.1.0.1").await);
    assert!(reaches(&c, &s, "open", "10.2.0.1").await);
    assert_eq!(
        get(&c, s.url("/v1/sandboxes/open")).await.1["network"],
        json!({"allow": ["10.2.0.0/16"], "deny": []})
    );
    // Back to none: the link stays, every packet dropped.
    let none = put(&c, s.url("/v1/sandboxes/open/network"), json!("none")).await;
    assert_eq!(none.0, 200, "{}", none.1);
    assert_eq!(none.1["network"], "none");
    assert!(!reaches(&c, &s, "open", "10.2.0.1").await);

    // A sandbox created without a network gets a link when it is given one.
    let late = put(&c, s.url("/v1/sandboxes/quiet/network"), json!("all")).await;
    assert_eq!(late.0, 200, "{}", late.1);
    assert!(late.1["address"].as_str().is_some(), "{}", late.1);
    assert!(reaches(&c, &s, "quiet", "10.1.0.1").await);

    // Bad policies: 400 with the rule and the reason, nothing changed or created.
    assert_error(
        &put(
            &c,
            s.url("/v1/sandboxes/quiet/network"),
            json!({"allow": ["10.0.0.1/8"]}),
        )
        .await,
        400,
        "bits set beyond the prefix length",
    );
    assert_error(
        &put(&c, s.url("/v1/sandboxes/quiet/network"), json!("some")).await,
        400,
        "unknown network policy",
    );
    assert_error(
        &put(
            &c,
            s.url("/v1/sandboxes/quiet/network"),
            json!({"allow": ["10.1.0.1:99999"]}),
        )
        .await,
        400,
        "port",
    );
    assert_eq!(
        get(&c, s.url("/v1/sandboxes/quiet")).await.1["network"],
        "all"
    );
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes"),
            json!({"id": "bad", "network": {"allow": ["not a host"]}}),
        )
        .await,
        400,
        "not a host name",
    );
    assert_error(
        &post(
            &c,
            s.url("/v1/sandboxes"),
            json!({"id": "bad", "network": {"allow": [], "permit": []}}),
        )
        .await,
        400,
        "network",
    );
    assert_error(
        &put(&c, s.url("/v1/sandboxes/ghost/network"), json!("none")).await,
        404,
        "ghost",
    );
    assert_error(
        &send(c.put(s.url("/v1/sandboxes/quiet/network")).body("\"none\"")).await,
        415,
        "application/json",
    );
    assert_eq!(
        get(&c, s.url("/v1/sandboxes"))
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_defaults_and_cgi_allow_net() {
    if !privileged("server operator_defaults_and_cgi_allow_net") {
        return;
    }
    let bed = NetBed::new();
    let data = DataDir::with_network(bed.config());
    let mut args = bed.args();
    // /v1 creates without `network` get the operator's list.
    args.extend(["--net-default".into(), "10.2.0.0/16".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_with(&data, Binary::Server, &args, &[]);
    let c = client();
    let api = |p: &str| s.url(&format!("/cgi-bin/api{p}"));

    let v1 = create(&c, &s, "v1").await;
    assert_eq!(v1["network"], json!({"allow": ["10.2.0.0/16"], "deny": []}));
    assert!(reaches(&c, &s, "v1", "10.2.0.1").await);
    assert!(!reaches(&c, &s, "v1", "10.1.0.1").await);

    // sq-sandbox's meaning: absent or [] = every destination.
    for (id, body) in [
        ("absent", json!({"id": "absent"})),
        ("empty", json!({"id": "empty", "allow_net": []})),
    ] {
        let got = post(&c, api("/sandboxes"), body).await;
        assert_eq!(got.0, 201, "{}", got.1);
        assert_eq!(got.1["network"], "all", "{id}");
        assert!(reaches(&c, &s, id, "10.1.0.1").await, "{id}");
    }
    assert_eq!(
        get(&c, api("/sandboxes/empty")).await.1["allow_net"],
        json!([])
    );
    // A list = only those destinations.
    let listed = post(
        &c,
        api("/sandboxes"),
        json!({"id": "listed", "allow_net": ["10.1.0.1:8080"]}),
    )
    .await;
    assert_eq!(listed.0, 201, "{}", listed.1);
    assert_eq!(listed.1["allow_net"], json!(["10.1.0.1:8080"]));
    assert_eq!(
        listed.1["network"],
        json!({"allow": ["10.1.0.1:8080"], "deny": []})
    );
    assert!(reaches(&c, &s, "listed", "10.1.0.1").await);
    assert!(!reaches(&c, &s, "listed", "10.2.0.1").await);
    // The native view of a cgi sandbox reports the same.
    assert_eq!(
        get(&c, s.url("/v1/sandboxes/listed")).await.1["network"],
        json!({"allow": ["10.1.0.1:8080"], "deny": []})
    );
    assert_error(
        &post(
            &c,
            api("/sandboxes"),
            json!({"id": "bad", "allow_net": ["10.1.0.1/8"]}),
        )
        .await,
        400,
        "allow_net: invalid network rule",
    );
    assert_eq!(
        get(&c, api("/sandboxes")).await.1.as_array().map(Vec::len),
        Some(4)
    );
}
