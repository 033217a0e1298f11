//! Black-box tests of `sqrx sandbox ...`: every invocation is a new process that re-attaches to
//! sandboxes from the data dir.

use std::process::{Command, Output};

use sqrx_testkit::privileged;

struct Cli {
    data: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        let cli = Cli {
            data: tempfile::Builder::new()
                .prefix("sqrx-test-cli-")
                .tempdir()
                .expect("tempdir"),
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
