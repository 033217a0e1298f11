//! Black-box tests of `sqrx js eval|run`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sqrx(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqrx"))
        .args(args)
        .env_remove("SQRX_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqrx");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait sqrx")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn js_eval_prints_the_execution() {
    let out = sqrx(
        &[
            "js",
            "eval",
            "console.log('hi'); input.x * 2",
            "--input",
            r#"{"x":21}"#,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "success");
    assert_eq!(v["result"], 42);
    assert_eq!(v["error"], false);
    assert_eq!(v["log"][0]["data"], serde_json::json!(["hi"]));
    assert!(v["executionTime"].is_number());
}

#[test]
fn js_run_reads_a_file_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.js");
    std::fs::write(&file, "await Promise.resolve(7)").expect("write");
    let out = sqrx(&["js", "run", file.to_str().expect("utf-8")], None);
    assert!(out.status.success());
    assert_eq!(json(&out)["result"], 7);

    let out = sqrx(&["js", "run", "-"], Some("[1, 2].map(x => x * 3)"));
    assert!(out.status.success());
    assert_eq!(json(&out)["result"], serde_json::json!([3, 6]));
}

#[test]
fn js_failures_exit_1_with_the_execution_and_one_error_line() {
    for (args, status) in [
        (vec!["js", "eval", "throw new TypeError('bad')"], "error"),
        (
            vec!["js", "eval", "while(true){}", "--timeout-ms", "200"],
            "timeout",
        ),
        (
            vec![
                "js",
                "eval",
                "let a=[]; for(;;) a.push('x'.repeat(1e6))",
                "--memory-mb",
                "16",
            ],
            "out_of_memory",
        ),
    ] {
        let out = sqrx(&args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(json(&out)["status"], status, "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(status),
            "{stderr}"
        );
    }
}

#[test]
fn js_bad_arguments_are_one_error_line() {
    for args in [
        vec!["js", "eval", "1", "--input", "{not json"],
        vec!["js", "run", "/nonexistent/script.js"],
        vec!["js", "eval", "1", "--memory-mb", "0"],
        vec!["js", "eval", "1", "--timeout-ms", "0"],
    ] {
        let out = sqrx(&args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}
