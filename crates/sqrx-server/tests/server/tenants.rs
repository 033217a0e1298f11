//! Many users on one server: keys, ownership on every surface, quotas under concurrency, rate
//! limits, the audit log and restarts, each against SQLite (in the data directory) and, when
//! `SQRX_TEST_POSTGRES_URL` names a PostgreSQL server (scripts/test.sh starts a throwaway
//! cluster; required under `SQRX_REQUIRE_PRIVILEGED=1`), against PostgreSQL too.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use sqrx_testkit::privileged;

use crate::harness::*;

const OPERATOR: &str = "operator-token-for-tenant-tests";

/// A database for one server: the data directory's SQLite file, or a fresh PostgreSQL
/// database dropped afterwards.
struct Db {
    url: Option<String>,
    admin: Option<String>,
    name: String,
}

impl Db {
    fn label(&self) -> &'static str {
        if self.url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    fn args(&self) -> Vec<String> {
        match &self.url {
            Some(u) => vec!["--database-url".into(), u.clone()],
            None => Vec::new(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some(admin) = self.admin.clone() else {
            return;
        };
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio");
            rt.block_on(async {
                if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

static DBS: AtomicU32 = AtomicU32::new(0);

/// The backends to run against.
async fn backends() -> Vec<Db> {
    let mut out = vec![Db {
        url: None,
        admin: None,
        name: String::new(),
    }];
    match std::env::var("SQRX_TEST_POSTGRES_URL").map(|u| u.trim().to_string()) {
        Ok(admin) if !admin.is_empty() => {
            let name = format!(
                "sqrx_t_{}_{}",
                std::process::id(),
                DBS.fetch_add(1, Ordering::Relaxed)
            );
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to SQRX_TEST_POSTGRES_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .expect("create database");
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            out.push(Db {
                url: Some(format!("{base}/{name}")),
                admin: Some(admin.clone()),
                name,
            });
        }
        _ => {
            assert!(
                std::env::var("SQRX_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "the tenant tests need SQRX_TEST_POSTGRES_URL under SQRX_REQUIRE_PRIVILEGED=1 \
                 (scripts/test.sh starts a PostgreSQL cluster)"
            );
            eprintln!("tenant tests: no SQRX_TEST_POSTGRES_URL, SQLite only");
        }
    }
    out
}

fn start(data: &DataDir, db: &Db, token: bool) -> Server {
    let mut args: Vec<String> = db.args();
    if token {
        args.extend(["--auth-token".into(), OPERATOR.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(data, Binary::Serve, &args, &[])
}

/// A request as `key`.
async fn call(
    method: &str,
    s: &Server,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let c = client();
    let m: reqwest::Method = method.parse().expect("method");
    let mut req = c.request(m, s.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

async fn new_user(s: &Server, name: &str, quota: Value) -> (String, String) {
    let (st, user) = call(
        "POST",
        s,
        "/api/admin/users",
        OPERATOR,
        Some(json!({"name": name, "quota": quota})),
    )
    .await;
    assert_eq!(st, 201, "{user}");
    let id = user["id"].as_str().expect("id").to_string();
    let (st, key) = call(
        "POST",
        s,
        &format!("/api/admin/users/{id}/apikeys"),
        OPERATOR,
        Some(json!({"name": "test"})),
    )
    .await;
    assert_eq!(st, 201, "{key}");
    let key = key["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("sqrx_"), "{key}");
    (id, key)
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| {
            s["id"]
                .as_str()
                .or(s["sandboxID"].as_str())
                .map(String::from)
        })
        .collect();
    v.sort();
    v
}

async fn audit(s: &Server, query: &str) -> Vec<Value> {
    // Audit rows are written in the background; give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (st, page) = call(
        "GET",
        s,
        &format!("/api/admin/audit?{query}"),
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(st, 200, "{page}");
    page["records"].as_array().expect("records").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_and_touch_only_their_own_sandboxes() {
    if !privileged("server users_see_and_touch_only_their_own_sandboxes") {
        return;
    }
    for db in backends().await {
        let data = DataDir::new();
        let s = start(&data, &db, true);
        let label = db.label();
        let (alice, ak) = new_user(&s, "alice", json!({})).await;
        let (_bob, bk) = new_user(&s, "bob", json!({})).await;
        let made = call(
            "POST",
            &s,
            "/api/sandboxes",
            &ak,
            Some(json!({"id": "ta1"})),
        )
        .await;
        assert_eq!(made.0, 201, "{label}: {}", made.1);
        assert_eq!(made.1["owner"], alice.as_str());
        // Another user's `owner` is no way in: the sandbox is the caller's.
        let made = call(
            "POST",
            &s,
            "/v1/sandboxes",
            &bk,
            Some(json!({"id": "tb1", "owner": alice})),
        )
        .await;
        assert_eq!(made.0, 201, "{label}: {}", made.1);
        assert_ne!(made.1["owner"], alice.as_str());

        // Lists show only one's own, on every surface; the operator sees both.
        for path in ["/api/sandboxes", "/v1/sandboxes"] {
            let (st, list) = call("GET", &s, path, &ak, None).await;
            assert_eq!(
                (st, ids(&list)),
                (200, vec!["ta1".to_string()]),
                "{label} {path}"
            );
        }
        let (_, cgi) = call("GET", &s, "/cgi-bin/api/sandboxes", &ak, None).await;
        assert_eq!(ids(&cgi), vec!["ta1".to_string()], "{label}");
        let (_, all) = call("GET", &s, "/v1/sandboxes", OPERATOR, None).await;
        assert_eq!(ids(&all), vec!["ta1".to_string(), "tb1".to_string()]);

        // Bob's sandbox does not exist for Alice: the same 404 as a missing one, on every
        // route that names a sandbox.
        for (method, path, body) in [
            ("GET", "/v1/sandboxes/{}", None),
            ("GET", "/api/sandboxes/{}", None),
            (
                "POST",
                "/v1/sandboxes/{}/exec",
                Some(json!({"command": "id"})),
            ),
            ("GET", "/v1/sandboxes/{}/logs", None),
            ("GET", "/v1/sandboxes/{}/files?path=/", None),
            (
                "POST",
                "/v1/sandboxes/{}/snapshot",
                Some(json!({"label": "x"})),
            ),
            (
                "POST",
                "/v1/sandboxes/{}/clone",
                Some(json!({"id": "stolen"})),
            ),
            ("POST", "/api/sandboxes/{}/pause", None),
            ("GET", "/cgi-bin/api/sandboxes/{}", None),
            ("GET", "/proxy/{}/80/", None),
            // Shapes a handler would refuse before looking (no upgrade, a bad body) too.
            ("GET", "/v1/sandboxes/{}/pty", None),
            ("GET", "/v1/sandboxes/{}/exec/ws", None),
            (
                "POST",
                "/v1/sandboxes/{}/exec",
                Some(json!({"nonsense": true})),
            ),
            ("DELETE", "/v1/sandboxes/{}", None),
        ] {
            let theirs = call(method, &s, &path.replace("{}", "tb1"), &ak, body.clone()).await;
            let missing = call(method, &s, &path.replace("{}", "zz9"), &ak, body).await;
            assert_eq!(theirs.0, 404, "{label} {method} {path}: {}", theirs.1);
            assert_eq!(theirs.0, missing.0, "{label} {method} {path}");
            assert_eq!(
                theirs.1.to_string().replace("tb1", "ID"),
                missing.1.to_string().replace("zz9", "ID"),
                "{label} {method} {path}: the answers tell them apart"
            );
        }
        // E2B's control plane with the key as X-API-KEY (in its e2b_ form).
        let e2b_key = ak.replacen("sqrx_", "e2b_", 1);
        let c = client();
        let (st, body) = send(c.get(s.url("/sandboxes/tb1")).header("x-api-key", &e2b_key)).await;
        assert_eq!(
            (st, body["code"].clone()),
            (404, json!(404)),
            "{label}: {body}"
        );
        let (st, list) = send(c.get(s.url("/v2/sandboxes")).header("x-api-key", &e2b_key)).await;
        assert_eq!((st, ids(&list)), (200, vec!["ta1".to_string()]), "{label}");
        // Still there for its owner.
        let (st, _) = call("GET", &s, "/v1/sandboxes/tb1", &bk, None).await;
        assert_eq!(st, 200);

        // Admin routes are the admins'.
        for path in [
            "/api/admin/users",
            "/api/admin/audit",
            "/metrics",
            "/v1/remote/layers",
        ] {
            let (st, body) = call("GET", &s, path, &ak, None).await;
            assert_eq!(st, 403, "{label} {path}: {body}");
        }
        for path in ["/v1/layers/000-base/push", "/v1/layers/sync"] {
            let (st, body) = call("POST", &s, path, &ak, None).await;
            assert_eq!(st, 403, "{label} {path}: {body}");
        }
        // Layers a user uploads are its own: invisible and unusable to others, like missing
        // ones; shared layers stay the operator's.
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, "alice.txt", &b"mine\n"[..])
            .expect("tar");
        let tar = tar.into_inner().expect("tar");
        let up = send(
            client()
                .put(s.url("/v1/layers/100-alice"))
                .bearer_auth(&ak)
                .header("content-type", "application/x-tar")
                .body(tar.clone()),
        )
        .await;
        assert_eq!(up.0, 201, "{label}: {}", up.1);
        let (_, alice_layers) = call("GET", &s, "/v1/layers", &ak, None).await;
        let (_, bob_layers) = call("GET", &s, "/v1/layers", &bk, None).await;
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("layers")
                .iter()
                .filter_map(|l| l["name"].as_str().map(String::from))
                .collect()
        };
        assert!(
            names(&alice_layers).contains(&"100-alice".to_string()),
            "{label}"
        );
        assert!(
            !names(&bob_layers).contains(&"100-alice".to_string()),
            "{label}"
        );
        let hidden = call("GET", &s, "/v1/layers/100-alice", &bk, None).await;
        let missing = call("GET", &s, "/v1/layers/100-nobody", &bk, None).await;
        assert_eq!(hidden.0, 404);
        assert_eq!(
            hidden.1.to_string().replace("100-alice", "L"),
            missing.1.to_string().replace("100-nobody", "L")
        );
        let use_it = json!({"id": "tb2", "layers": ["000-base", "100-alice"]});
        let (st, body) = call("POST", &s, "/v1/sandboxes", &bk, Some(use_it)).await;
        assert_eq!(st, 404, "{label}: {body}");
        assert_eq!(
            call("DELETE", &s, "/v1/layers/100-alice", &bk, None)
                .await
                .0,
            404
        );
        let (st, body) = call(
            "POST",
            &s,
            "/api/sandboxes",
            &ak,
            Some(json!({"id": "ta2", "layers": ["000-base", "100-alice"]})),
        )
        .await;
        assert_eq!(st, 201, "{label}: {body}");
        let (_, out) = call(
            "POST",
            &s,
            "/v1/sandboxes/ta2/exec",
            &ak,
            Some(json!({"command": "cat /alice.txt"})),
        )
        .await;
        assert_eq!(out["stdout"], "mine\n");
        assert_eq!(
            call("DELETE", &s, "/v1/sandboxes/ta2", &ak, None).await.0,
            204
        );
        let shared = send(
            client()
                .put(s.url("/v1/layers/000-base?force=true"))
                .bearer_auth(&ak)
                .header("content-type", "application/x-tar")
                .body(tar),
        )
        .await;
        assert_eq!(shared.0, 403, "{label}: {}", shared.1);
        assert_eq!(
            call("DELETE", &s, "/v1/layers/100-alice", &ak, None)
                .await
                .0,
            204
        );

        // /api/me and one's own keys; another user's key id is not found.
        let (st, me) = call("GET", &s, "/api/me", &ak, None).await;
        assert_eq!((st, me["name"].clone()), (200, json!("alice")), "{me}");
        assert_eq!(me["usage"]["sandboxes"], 1);
        let (_, bob_keys) = call("GET", &s, "/api/me/apikeys", &bk, None).await;
        let bob_key_id = bob_keys[0]["id"].as_str().expect("id").to_string();
        assert!(bob_keys[0].get("hash").is_none() && bob_keys[0].get("key").is_none());
        let (st, _) = call(
            "DELETE",
            &s,
            &format!("/api/me/apikeys/{bob_key_id}"),
            &ak,
            None,
        )
        .await;
        assert_eq!(st, 404, "{label}");

        // Revocation takes effect at once; a second key keeps working.
        let (st, second) = call(
            "POST",
            &s,
            "/api/me/apikeys",
            &ak,
            Some(json!({"name": "two"})),
        )
        .await;
        assert_eq!(st, 201, "{second}");
        let ak2 = second["key"].as_str().expect("key").to_string();
        let first_id = &ak["sqrx_".len().."sqrx_".len() + 16];
        let (st, revoked) = call(
            "DELETE",
            &s,
            &format!("/api/me/apikeys/{first_id}"),
            &ak2,
            None,
        )
        .await;
        assert_eq!(st, 200, "{revoked}");
        assert!(revoked["revoked"].is_string());
        let (st, body) = call("GET", &s, "/api/me", &ak, None).await;
        assert_eq!(st, 401, "{label}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("revoked"),
            "{body}"
        );
        assert_eq!(call("GET", &s, "/api/me", &ak2, None).await.0, 200);

        // Expired keys and disabled users are refused; the user's sandboxes keep running.
        let (_, short) = call(
            "POST",
            &s,
            "/api/me/apikeys",
            &ak2,
            Some(json!({"expires_in": 1})),
        )
        .await;
        let short = short["key"].as_str().expect("key").to_string();
        assert_eq!(call("GET", &s, "/api/me", &short, None).await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (st, body) = call("GET", &s, "/api/me", &short, None).await;
        assert_eq!(st, 401);
        assert!(
            body["error"].as_str().unwrap_or("").contains("expired"),
            "{body}"
        );
        let (st, _) = call(
            "PUT",
            &s,
            &format!("/api/admin/users/{alice}"),
            OPERATOR,
            Some(json!({"disabled": true})),
        )
        .await;
        assert_eq!(st, 200);
        let (st, body) = call("GET", &s, "/api/sandboxes", &ak2, None).await;
        assert_eq!(st, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("disabled"),
            "{body}"
        );
        let (_, still) = call("GET", &s, "/v1/sandboxes/ta1", OPERATOR, None).await;
        assert_eq!(still["status"], "running", "{label}");

        // Garbage and unknown keys.
        for key in [
            "nope",
            "sqrx_0000000000000000ffff",
            &format!("sqrx_{}", "a".repeat(80)),
        ] {
            assert_eq!(call("GET", &s, "/v1/sandboxes", key, None).await.0, 401);
        }

        // The audit log has the creates, the refusals and the failed keys.
        let rows = audit(&s, &format!("user={alice}&limit=1000")).await;
        let has = |action: &str, result: &str, status: u16| {
            rows.iter()
                .any(|r| r["action"] == action && r["result"] == result && r["status"] == status)
        };
        assert!(has("POST /api/sandboxes", "ok", 201), "{label}: {rows:?}");
        assert!(has("DELETE /v1/sandboxes/{id}", "denied", 404), "{label}");
        assert!(has("GET /api/admin/users", "denied", 403), "{label}");
        assert!(
            has("GET /api/me", "denied", 401),
            "{label}: revoked/expired/disabled"
        );
        assert!(rows.iter().all(|r| r["user"] == alice.as_str()));
        let failed = audit(&s, "action=GET%20/v1/sandboxes&limit=1000").await;
        assert!(
            failed
                .iter()
                .any(|r| r["result"] == "denied" && r["user"].is_null()),
            "{label}: unknown keys are audited: {failed:?}"
        );
        // Paging: one at a time, newest first, until the end.
        let (_, p1) = call(
            "GET",
            &s,
            &format!("/api/admin/audit?user={alice}&limit=1"),
            OPERATOR,
            None,
        )
        .await;
        let next = p1["next"].as_str().expect("next").to_string();
        let (_, p2) = call(
            "GET",
            &s,
            &format!("/api/admin/audit?user={alice}&limit=1&before={next}"),
            OPERATOR,
            None,
        )
        .await;
        assert!(p2["records"][0]["id"].as_str() < p1["records"][0]["id"].as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_hold_under_concurrent_creates_and_rate_limits_answer_429() {
    if !privileged("server quotas_hold_under_concurrent_creates_and_rate_limits_answer_429") {
        return;
    }
    for db in backends().await {
        let data = DataDir::new();
        let s = start(&data, &db, true);
        let label = db.label();
        let (_, key) = new_user(
            &s,
            "carol",
            json!({"max_sandboxes": 3, "max_lifetime": 600}),
        )
        .await;
        let creates = (0..50).map(|i| {
            let (s, key) = (&s, key.clone());
            async move {
                call(
                    "POST",
                    s,
                    "/api/sandboxes",
                    &key,
                    Some(json!({"id": format!("q{i}"), "memory_mb": 64})),
                )
                .await
            }
        });
        let results = futures_util::future::join_all(creates).await;
        let made = results.iter().filter(|r| r.0 == 201).count();
        assert_eq!(made, 3, "{label}: {results:?}");
        let refused: Vec<_> = results.iter().filter(|r| r.0 != 201).collect();
        for r in &refused {
            assert_eq!(r.0, 429, "{label}: {}", r.1);
            assert_eq!(r.1["code"], "quota_exceeded");
            assert_eq!(
                (r.1["quota"].clone(), r.1["limit"].clone()),
                (json!("max_sandboxes"), json!(3.0))
            );
        }
        let (_, list) = call("GET", &s, "/api/sandboxes", &key, None).await;
        assert_eq!(list.as_array().map(Vec::len), Some(3));
        // The lifetime is bounded by the quota: none asked gets the maximum, more is refused.
        assert!(list[0]["max_lifetime"] == 600, "{label}: {list}");
        // Room again after a destroy.
        let first = list[0]["id"].as_str().expect("id").to_string();
        assert_eq!(
            call("DELETE", &s, &format!("/api/sandboxes/{first}"), &key, None)
                .await
                .0,
            204
        );
        let again = call(
            "POST",
            &s,
            "/v1/sandboxes",
            &key,
            Some(json!({"id": "qz", "max_lifetime": 601})),
        )
        .await;
        assert_eq!(
            (again.0, again.1["quota"].clone()),
            (429, json!("max_lifetime")),
            "{}",
            again.1
        );
        let again = call("POST", &s, "/v1/sandboxes", &key, Some(json!({"id": "qz"}))).await;
        assert_eq!(again.0, 201, "{label}: {}", again.1);

        // A key with a rate limit: the 6th request in a minute is a 429 with Retry-After.
        let (_, limited) = new_user(&s, "dave", json!({"rate_per_minute": 5})).await;
        for i in 0..5 {
            assert_eq!(
                call("GET", &s, "/api/me", &limited, None).await.0,
                200,
                "request {i}"
            );
        }
        let r = client()
            .get(s.url("/api/me"))
            .bearer_auth(&limited)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 429, "{label}");
        let retry: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=60).contains(&retry), "{retry}");
        // The operator is never rate limited.
        assert_eq!(
            call("GET", &s, "/api/admin/users", OPERATOR, None).await.0,
            200
        );
    }
}

/// A user's sessions are its own sandboxes, and its snapshots take room in its disk quota.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_snapshots_count_in_the_user_s_quota() {
    if !privileged("server sessions_and_snapshots_count_in_the_user_s_quota") {
        return;
    }
    for db in backends().await {
        let data = DataDir::new();
        let s = start(&data, &db, true);
        let label = db.label();
        let (erin, ek) =
            new_user(&s, "erin", json!({"max_sandboxes": 2, "max_disk_mb": 700})).await;
        let (_, fk) = new_user(&s, "frank", json!({})).await;

        // A session opened with a user's key is that user's sandbox (512 MiB of upper).
        let (st, opened) = call("POST", &s, "/v1/try", &ek, None).await;
        assert_eq!(st, 201, "{label}: {opened}");
        let session = format!(
            "session-{}",
            opened["session_id"].as_str().expect("session id")
        );
        let (_, mine) = call("GET", &s, "/v1/sandboxes", &ek, None).await;
        assert_eq!(ids(&mine), vec![session.clone()], "{label}");
        assert_eq!(mine[0]["owner"], erin.as_str());
        let (_, theirs) = call("GET", &s, "/v1/sandboxes", &fk, None).await;
        assert!(ids(&theirs).is_empty(), "{label}: {theirs}");
        let (st, _) = call("GET", &s, &format!("/v1/sandboxes/{session}"), &fk, None).await;
        assert_eq!(st, 404, "{label}: another user's session sandbox");

        // It counts: one more sandbox fits (max_sandboxes 2), the next does not.
        let made = call(
            "POST",
            &s,
            "/v1/sandboxes",
            &ek,
            Some(json!({"id": "e1", "upper_mb": 64})),
        )
        .await;
        assert_eq!(made.0, 201, "{label}: {}", made.1);
        let (st, refused) = call("POST", &s, "/v1/try", &ek, None).await;
        assert_eq!(
            (st, refused["quota"].clone()),
            (429, json!("max_sandboxes")),
            "{label}: {refused}"
        );
        let token = opened["termination_token"].as_str().expect("token");
        let (st, stopped) = call("POST", &s, &format!("/v1/stop/{token}"), &ek, None).await;
        assert_eq!(st, 200, "{label}: {stopped}");

        // A snapshot holds as much as its writable layer may (64 MiB) while it is taken, and
        // then counts at its size (about 40 MiB of random bytes).
        let wrote = call(
            "POST",
            &s,
            "/v1/sandboxes/e1/exec",
            &ek,
            Some(json!({"command": "head -c 40000000 /dev/urandom > /root/blob"})),
        )
        .await;
        assert_eq!(wrote.1["exit_code"], 0, "{label}: {}", wrote.1);
        let snap = call(
            "POST",
            &s,
            "/v1/sandboxes/e1/snapshot",
            &ek,
            Some(json!({"label": "s1"})),
        )
        .await;
        assert_eq!(snap.0, 201, "{label}: {}", snap.1);
        assert!(
            snap.1["size"].as_u64().unwrap_or(0) > 39_000_000,
            "{}",
            snap.1
        );
        // 64 + 40 in use: 600 more is past 700, 560 is not.
        let over = call(
            "POST",
            &s,
            "/v1/sandboxes",
            &ek,
            Some(json!({"id": "e2", "upper_mb": 600})),
        )
        .await;
        assert_eq!(
            (over.0, over.1["quota"].clone()),
            (429, json!("max_disk_mb")),
            "{label}: the snapshot's bytes are not counted: {}",
            over.1
        );
        let fits = call(
            "POST",
            &s,
            "/v1/sandboxes",
            &ek,
            Some(json!({"id": "e2", "upper_mb": 560})),
        )
        .await;
        assert_eq!(fits.0, 201, "{label}: {}", fits.1);
        // Now a second snapshot of e1 could take up to 64 MiB more: refused, on both APIs.
        for (path, body) in [
            ("/v1/sandboxes/e1/snapshot", json!({"label": "s2"})),
            ("/cgi-bin/api/sandboxes/e1/snapshot", json!({"label": "s2"})),
        ] {
            let (st, refused) = call("POST", &s, path, &ek, Some(body)).await;
            assert_eq!(
                (st, refused["quota"].clone()),
                (429, json!("max_disk_mb")),
                "{label} {path}: {refused}"
            );
        }
        let (_, snaps) = call("GET", &s, "/v1/sandboxes/e1/snapshots", &ek, None).await;
        assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{label}: {snaps}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_keys_and_the_audit_log_survive_restarts() {
    if !privileged("server bootstrap_keys_and_the_audit_log_survive_restarts") {
        return;
    }
    for db in backends().await {
        let data = DataDir::new();
        let label = db.label();
        let admin = |args: &[&str]| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sqrx"));
            cmd.arg("--data-dir")
                .arg(data.path())
                .arg("admin")
                .args(args);
            cmd.args(db.args());
            cmd.env_remove("SQRX_DATABASE_URL");
            cmd.output().expect("sqrx admin")
        };
        let out = admin(&["bootstrap"]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(root.starts_with("sqrx_"), "{root}");
        let again = admin(&["bootstrap"]);
        assert!(!again.status.success(), "a second bootstrap");
        let out = admin(&["user", "add", "erin", "--max-sandboxes", "1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = admin(&["key", "add", "erin", "--name", "cli"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let erin = String::from_utf8_lossy(&out.stdout).trim().to_string();

        // No operator token: the keys alone guard the server now.
        let mut s = start(&data, &db, false);
        let (st, _) = send(client().get(s.url("/v1/sandboxes"))).await;
        assert_eq!(st, 401, "{label}: a key exists, so one is needed");
        assert_eq!(
            call("GET", &s, "/api/admin/users", &root, None).await.0,
            200
        );
        let made = call(
            "POST",
            &s,
            "/api/sandboxes",
            &erin,
            Some(json!({"id": "keep"})),
        )
        .await;
        assert_eq!(made.0, 201, "{}", made.1);
        let before = audit_as(&s, &root).await;
        assert!(!before.is_empty());
        s.sigterm();
        assert!(s.wait_exit(std::time::Duration::from_secs(30)).is_some());
        drop(s);

        let s = start(&data, &db, false);
        let (st, list) = call("GET", &s, "/api/sandboxes", &erin, None).await;
        assert_eq!((st, ids(&list)), (200, vec!["keep".to_string()]), "{label}");
        // Its quota survived too.
        let over = call(
            "POST",
            &s,
            "/api/sandboxes",
            &erin,
            Some(json!({"id": "more"})),
        )
        .await;
        assert_eq!(over.0, 429, "{}", over.1);
        let after = audit_as(&s, &root).await;
        for r in &before {
            assert!(after.contains(r), "{label}: lost {r}");
        }
        // Revoked offline: refused within the cache's life.
        let erin_id = &erin["sqrx_".len().."sqrx_".len() + 16];
        assert!(admin(&["key", "revoke", erin_id]).status.success());
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(
            call("GET", &s, "/api/me", &erin, None).await.0,
            401,
            "{label}"
        );
    }
}

async fn audit_as(s: &Server, key: &str) -> Vec<Value> {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (st, page) = call("GET", s, "/api/admin/audit?limit=1000", key, None).await;
    assert_eq!(st, 200, "{page}");
    page["records"].as_array().expect("records").clone()
}
