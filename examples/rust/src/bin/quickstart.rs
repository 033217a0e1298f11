//! sqrx quick start: a sandbox, a command, a script file, streamed output, a timeout, an
//! error, and JavaScript in QuickJS. The same story as `examples/python/quickstart.py` and
//! `examples/typescript/quickstart.ts`.
//!
//! `sudo cargo run -p sqrx-examples --bin quickstart` (sandboxes need root; the data dir is the
//! CLI's default: `$SQRX_DATA`, else `/var/lib/sqrx`).

use std::time::Duration;

use sqrx_core::js::{JsExecutor, JsLimits, JsRequest};
use sqrx_core::{
    Command, ErrorKind, ExecEvent, ExecRequest, Runtime, RuntimeConfig, SandboxSpec, paths,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program doubles as the sandbox init and sqrx's other helpers (the runc re-exec
    // pattern); no sqrx-init needed.
    sqrx_core::roles::run_role_if_any();
    let tokio = tokio::runtime::Runtime::new()?;

    // The runtime owns the data dir: layers, sandboxes. The base layer is built on first use.
    let rt = Runtime::open(RuntimeConfig::new(paths::default_data_dir()))?;

    // A sandbox on the base layer with 256 MiB of memory.
    let mut spec = SandboxSpec::new("quickstart");
    spec.layers = vec!["000-base".into()];
    spec.memory_mb = Some(256);
    let sb = rt.create(spec)?;
    let story = tokio.block_on(async {
        let r = sb
            .exec(ExecRequest::new("echo hello from $(hostname)"))
            .await?;
        println!(
            "exit {}: {}",
            r.exit_code.unwrap_or(-1),
            r.stdout_text().trim()
        );

        // Files go in from the host; an argv runs without a shell.
        sb.write_file("/data/greet.sh", b"#!/bin/sh\necho \"hi, $1\"\n", 0o755)?;
        let argv = Command::Argv(vec!["/data/greet.sh".into(), "world".into()]);
        println!(
            "{}",
            sb.exec(ExecRequest::new(argv)).await?.stdout_text().trim()
        );
        let names: Vec<String> = sb.list("/data")?.into_iter().map(|f| f.name).collect();
        println!("files in /data: {names:?}");

        // Output as it is written.
        let mut stream = sb
            .exec_stream(ExecRequest::new(
                "for i in 1 2 3; do echo tick $i; sleep 0.1; done",
            ))
            .await?;
        while let Some(event) = stream.next().await {
            match event? {
                ExecEvent::Stdout(d) => println!("stdout: {}", String::from_utf8_lossy(&d).trim()),
                ExecEvent::Stderr(d) => println!("stderr: {}", String::from_utf8_lossy(&d).trim()),
                ExecEvent::Exit(r) => println!("stream ended, exit {:?}", r.exit_code),
            }
        }

        // A timeout kills the command's whole process tree.
        let mut req = ExecRequest::new("sleep 30");
        req.timeout = Some(Duration::from_secs(1));
        println!("timed out: {}", sb.exec(req).await?.timed_out);
        Ok::<(), sqrx_core::SandboxError>(())
    });
    // Destroy whatever happened above, then report it.
    sb.destroy()?;
    story?;

    // Errors carry a stable kind.
    match rt.get("quickstart") {
        Err(e) if e.kind() == ErrorKind::NotFound => println!("{}: {e}", e.kind()),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }

    // JavaScript runs in-process with QuickJS, no sandbox needed.
    let js = JsExecutor::new(JsLimits::default())?;
    let res = js.run_blocking(
        JsRequest::new("input.xs.map(x => x * 2)").with_input(serde_json::json!({"xs": [1, 2, 3]})),
    );
    println!("js {}: {}", res.status.as_str(), res.result);
    Ok(())
}
