//! Black-box tests of `sqrx sandbox ...`: every invocation is a new process that re-attaches to
//! sandboxes from the data dir.

use std::process::{Command, Output};

use sqrx_testkit::privileged;

struct Cli {
    data: tempfile::TempDir,
    /// Variables every invocation gets (the network settings of a test namespace).
    env: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Self {
        Self::with_env(Vec::new())
    }

    fn with_env(env: Vec<(String, String)>) -> Self {
        let cli = Cli {
            data: tempfile::Builder::new()
                .prefix("sqrx-test-cli-")
                .tempdir()
                .expect("tempdir"),
            env,
        };
        let out = cli.run(&["layer", "bootstrap"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqrx"))
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .env_remove("SQRX_INIT")
            .env_remove("SQRX_NET_POOL")
            .env_remove("SQRX_NET_UPLINK")
            .env_remove("SQRX_NET_NETNS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sqrx");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(data) = stdin {
            pipe.write_all(data).expect("write stdin");
        }
        drop(pipe);
        child.wait_with_output().expect("wait")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "sqrx {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let ls = self.run(&["sandbox", "ls", "--json"], None);
        if let Ok(list) = serde_json::from_slice::<serde_json::Value>(&ls.stdout) {
            for s in list.as_array().into_iter().flatten() {
                if let Some(id) = s["id"].as_str() {
                    let _ = self.run(&["sandbox", "rm", id], None);
                }
            }
        }
    }
}

#[test]
fn create_exec_ls_info_logs_rm() {
    if !privileged("create_exec_ls_info_logs_rm") {
        return;
    }
    let cli = Cli::new();
    assert_eq!(
        cli.ok(&[
            "sandbox",
            "create",
            "c1",
            "--memory-mb",
            "128",
            "--pids",
            "64",
            "--cpu",
            "1"
        ]),
        "c1\n"
    );
    assert_eq!(
        cli.ok(&["sandbox", "exec", "c1", "--", "echo", "hi", "there"]),
        "hi there\n"
    );
    let out = cli.run(
        &[
            "sandbox",
            "exec",
            "c1",
            "--",
            "echo out; echo err >&2; exit 5",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = cli.run(
        &[
            "sandbox",
            "exec",
            "c1",
            "--timeout",
            "0.5",
            "--",
            "sleep 30",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(124));
    let out = cli.run(
        &["sandbox", "exec", "c1", "-i", "--", "wc -c"],
        Some(b"12345"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    assert_eq!(
        cli.ok(&[
            "sandbox",
            "exec",
            "c1",
            "--env",
            "A=1",
            "--workdir",
            "/tmp",
            "--",
            "echo $A $PWD"
        ]),
        "1 /tmp\n"
    );

    let ls: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "ls", "--json"])).expect("json");
    assert_eq!(ls[0]["id"], "c1");
    assert_eq!(ls[0]["status"], "running");
    let info: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "info", "c1", "--json"])).expect("json");
    assert_eq!(info["memory_mb"], 128);
    assert_eq!(info["layers"][0], "000-base");
    let logs: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "logs", "c1", "--json"])).expect("json");
    assert_eq!(logs.as_array().map(Vec::len), Some(5));
    assert_eq!(logs[1]["exit_code"], 5);
    assert_eq!(logs[2]["timed_out"], true);
    assert!(cli.ok(&["sandbox", "logs", "c1"]).contains("timeout"));
    // files: put, get, ls
    let out = cli.run(
        &["sandbox", "put", "c1", "-", "/work/in.txt", "--mode", "600"],
        Some(b"payload"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cli.ok(&["sandbox", "get", "c1", "/work/in.txt", "-"]),
        "payload"
    );
    let files: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "ls", "c1", "/work", "--json"])).expect("json");
    assert_eq!(files[0]["name"], "in.txt");
    assert_eq!(files[0]["mode"], 0o600);
    assert_eq!(
        cli.ok(&["sandbox", "exec", "c1", "--", "cat /work/in.txt"]),
        "payload"
    );
    let bad = cli.run(&["sandbox", "get", "c1", "/nope", "-"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: "));

    assert_eq!(cli.ok(&["sandbox", "rm", "c1"]), "removed c1\n");
    assert_eq!(cli.ok(&["sandbox", "ls", "--json"]).trim(), "[]");
}

#[test]
fn sandbox_errors_are_one_line() {
    if !privileged("sandbox_errors_are_one_line") {
        return;
    }
    let cli = Cli::new();
    let fails = |args: &[&str]| {
        let out = cli.run(args, None);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        err
    };
    assert!(fails(&["sandbox", "create", "bad id"]).contains("invalid sandbox id"));
    assert!(
        fails(&["sandbox", "create", "x", "--layers", "000-base,404-nope"]).contains("404-nope")
    );
    assert!(fails(&["sandbox", "exec", "ghost", "--", "true"]).contains("not found"));
    cli.ok(&["sandbox", "create", "dup"]);
    assert!(fails(&["sandbox", "create", "dup"]).contains("already exists"));
    assert!(
        fails(&["sandbox", "exec", "dup", "--", "no-such-cmd-xyz", "arg"])
            .contains("command not found")
    );
    assert!(
        fails(&["sandbox", "exec", "dup", "--env", "novalue", "--", "true"]).contains("KEY=VALUE")
    );
}

#[test]
fn snapshot_restore_activate_clone_and_tar_through_the_cli() {
    if !privileged("snapshot_restore_activate_clone_and_tar_through_the_cli") {
        return;
    }
    let cli = Cli::new();
    cli.ok(&["sandbox", "create", "st"]);
    cli.ok(&["sandbox", "exec", "st", "--", "echo one > /f"]);
    assert_eq!(
        cli.ok(&["sandbox", "snapshot", "st", "s1"])
            .split(' ')
            .next(),
        Some("s1")
    );
    cli.ok(&["sandbox", "exec", "st", "--", "echo two > /f"]);
    let snap: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "snapshot", "st", "s2", "--json"]))
            .expect("json");
    assert_eq!(snap["label"], "s2");
    assert!(snap["size"].as_u64().is_some_and(|s| s > 0));
    let dup = cli.run(&["sandbox", "snapshot", "st", "s2"], None);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("s2") && err.lines().count() == 1, "{err}");

    cli.ok(&["sandbox", "restore", "st", "s1"]);
    assert_eq!(cli.ok(&["sandbox", "exec", "st", "--", "cat /f"]), "one\n");
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "snapshots", "st", "--json"])).expect("json");
    let labels: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert_eq!(labels, ["s1", "s2"]);
    let info: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "info", "st", "--json"])).expect("json");
    assert_eq!(info["active_snapshot"], "s1");

    // A layer built from a directory, activated.
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("opt")).expect("mkdir");
    std::fs::write(src.path().join("opt/tool"), "tool\n").expect("write");
    cli.ok(&[
        "layer",
        "build",
        &src.path().display().to_string(),
        "300-tool",
    ]);
    cli.ok(&["sandbox", "activate", "st", "300-tool"]);
    assert_eq!(
        cli.ok(&["sandbox", "exec", "st", "--", "cat /opt/tool /f"]),
        "tool\none\n"
    );

    // Clone, then a directory copied in with put and out with download.
    cli.ok(&["sandbox", "clone", "st", "st2"]);
    assert_eq!(cli.ok(&["sandbox", "exec", "st2", "--", "cat /f"]), "one\n");
    let local = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(local.path().join("sub")).expect("mkdir");
    std::fs::write(local.path().join("sub/x.txt"), "x\n").expect("write");
    cli.ok(&[
        "sandbox",
        "put",
        "st2",
        &local.path().display().to_string(),
        "/up",
    ]);
    assert_eq!(
        cli.ok(&["sandbox", "exec", "st2", "--", "cat /up/sub/x.txt"]),
        "x\n"
    );
    let tar = cli.run(&["sandbox", "download", "st2", "/up"], None);
    assert!(tar.status.success());
    let names: Vec<String> = tar::Archive::new(tar.stdout.as_slice())
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["sub", "sub/x.txt"]);
    let up = cli.run(&["sandbox", "upload", "st", "/from-tar"], Some(&tar.stdout));
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        cli.ok(&["sandbox", "exec", "st", "--", "cat /from-tar/sub/x.txt"]),
        "x\n"
    );

    let bad = cli.run(&["sandbox", "restore", "st", "nope"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no snapshot labelled nope"));
}

#[test]
fn a_crash_mid_snapshot_leaves_no_snapshot() {
    if !privileged("a_crash_mid_snapshot_leaves_no_snapshot") {
        return;
    }
    let cli = Cli::new();
    cli.ok(&["sandbox", "create", "crash", "--upper-mb", "700"]);
    cli.ok(&[
        "sandbox",
        "exec",
        "crash",
        "--",
        "head -c 400M /dev/urandom > /big",
    ]);
    let mut snap = Command::new(env!("CARGO_BIN_EXE_sqrx"))
        .arg("--data-dir")
        .arg(cli.data.path())
        .args(["sandbox", "snapshot", "crash", "half"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn snapshot");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        snap.try_wait().expect("try_wait").is_none(),
        "packing 400 MB took < 300 ms"
    );
    snap.kill().expect("kill -9");
    let _ = snap.wait();
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "snapshots", "crash", "--json"])).expect("json");
    assert_eq!(
        list,
        serde_json::json!([]),
        "a half-written snapshot is visible"
    );
    // The next runtime (that listing) recovered: the interrupted image is gone and the sandbox
    // is thawed (a paused one refuses execs); the label is free.
    let tmp = cli.data.path().join("sandboxes/crash/snapshots/.tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "the interrupted image is left"
    );
    let info: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "info", "crash", "--json"])).expect("json");
    assert_eq!(info["status"], "running", "{info}");
    cli.ok(&["sandbox", "exec", "crash", "--", "rm /big"]);
    cli.ok(&["sandbox", "snapshot", "crash", "half"]);
    assert_eq!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "a temporary is left after a snapshot"
    );
    cli.ok(&["sandbox", "restore", "crash", "half"]);
    assert!(
        cli.ok(&["sandbox", "exec", "crash", "--", "ls /big 2>&1 || true"])
            .contains("No such file")
    );
}

/// A network namespace for the host side of sandbox links, with an uplink (a veth pair whose
/// other end goes nowhere), deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        let name = format!("sqrxcli-{}", std::process::id());
        let ns = Netns { name };
        for args in [
            vec!["netns", "add", &ns.name],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
            vec![
                "-n", &ns.name, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
            ],
            vec!["-n", &ns.name, "link", "set", "up0", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn network_flags_live_changes_and_info() {
    if !privileged("network_flags_live_changes_and_info") {
        return;
    }
    // Declared first, dropped last: the sandboxes go before their links' namespace.
    let ns = Netns::new();
    let cli = Cli::with_env(vec![
        ("SQRX_NET_NETNS".into(), format!("/run/netns/{}", ns.name)),
        ("SQRX_NET_UPLINK".into(), "up0".into()),
    ]);
    let info = |id: &str| -> serde_json::Value {
        serde_json::from_str(&cli.ok(&["sandbox", "info", id, "--json"])).expect("JSON")
    };
    cli.ok(&["sandbox", "create", "quiet"]);
    assert_eq!(info("quiet")["network"], "none");
    assert_eq!(info("quiet")["address"], serde_json::Value::Null);
    let created: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "sandbox",
        "create",
        "listed",
        "--allow",
        "10.1.0.0/16",
        "--allow",
        "10.2.0.1:443",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(
        created["network"],
        serde_json::json!({"allow": ["10.1.0.0/16", "10.2.0.1:443"], "deny": []})
    );
    let address = created["address"].as_str().expect("an address").to_string();
    assert!(
        cli.ok(&["sandbox", "exec", "listed", "--", "ls /sys/class/net"])
            .split_whitespace()
            .any(|l| l == "eth0")
    );
    assert_eq!(
        cli.ok(&["sandbox", "network", "listed", "all"]),
        "listed: network all\n"
    );
    assert_eq!(info("listed")["network"], "all");
    assert_eq!(info("listed")["address"], address.as_str());
    let text = cli.ok(&["sandbox", "info", "listed"]);
    assert!(text.contains("network:  all"), "{text}");
    assert!(text.contains(&format!("address:  {address}")), "{text}");
    let ls = cli.ok(&["sandbox", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("quiet ") && l.ends_with(" none")),
        "{ls}"
    );

    // Errors: one line each, nothing created or changed.
    for (args, needle) in [
        (
            vec![
                "sandbox",
                "create",
                "x",
                "--net",
                "all",
                "--allow",
                "10.0.0.0/8",
            ],
            "cannot be used with",
        ),
        (
            vec!["sandbox", "create", "x", "--net", "some"],
            "invalid value",
        ),
        (
            vec!["sandbox", "create", "x", "--allow", "10.0.0.1/8"],
            "--allow: invalid network rule",
        ),
        (
            vec!["sandbox", "network", "listed", "10.0.0.1:0"],
            "the port must be a number",
        ),
    ] {
        let out = cli.run(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    assert_eq!(info("listed")["network"], "all");
    let ls: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sandbox", "ls", "--json"])).expect("JSON");
    assert_eq!(ls.as_array().map(Vec::len), Some(2));
}
