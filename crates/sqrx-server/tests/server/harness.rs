//! Starting the server binary and cleaning up after it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A data directory under /tmp/sqrx-test-*; dropping it destroys every sandbox in it (through
/// the library, so it works even when the server died), then removes it.
pub struct DataDir {
    dir: tempfile::TempDir,
    /// The network settings the server was given (so sandbox links are removed where they are).
    network: sqrx_core::network::NetworkConfig,
}

impl DataDir {
    pub fn new() -> Self {
        Self::with_network(sqrx_core::network::NetworkConfig::default())
    }

    /// A data directory whose server runs with `network` (`--net-*`).
    pub fn with_network(network: sqrx_core::network::NetworkConfig) -> Self {
        DataDir {
            dir: tempfile::Builder::new()
                .prefix("sqrx-test-server-")
                .tempdir()
                .expect("tempdir"),
            network,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let mut config = sqrx_core::RuntimeConfig::new(self.dir.path());
        config.network = self.network.clone();
        if let Ok(rt) = sqrx_core::Runtime::open(config) {
            for sandbox in rt.list() {
                let id = sandbox.id().to_string();
                if let Err(e) = sandbox.destroy() {
                    eprintln!("cleanup: cannot destroy {id}: {e}");
                }
            }
        }
    }
}

/// Which binary to start.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `sqrx-server`.
    Server,
    /// `sqrx serve`.
    Serve,
}

/// A running server; killed (SIGKILL) on drop if still running.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Its stderr (the log).
    pub log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// Environment variables a developer's shell might set that would change the server.
const SCRUB: [&str; 27] = [
    "SQRX_DATABASE_URL",
    "SQRX_NET_DEFAULT",
    "SQRX_NET_CGI_DEFAULT",
    "SQRX_NET_POOL",
    "SQRX_NET_UPLINK",
    "SQRX_NET_NETNS",
    "SQRX_CONFIG",
    "SQRX_ALLOWED_HOSTS",
    "SQRX_INSECURE_NO_AUTH",
    "SQRX_PUBLIC_HOST",
    "SQRX_LISTEN",
    "SQRX_AUTH_TOKEN",
    "SQRX_MAX_SANDBOXES",
    "SQRX_UPPER_LIMIT_MB",
    "SQRX_MAX_UPLOAD_MB",
    "SQRX_LOG_FORMAT",
    "SQRX_DATA",
    "SQUASH_DATA",
    "SQUASH_PORT",
    "SQUASH_AUTH_TOKEN",
    "SQUASH_MAX_SANDBOXES",
    "SQUASH_UPPER_LIMIT_MB",
    "SQRX_S3_BUCKET",
    "SQUASH_S3_BUCKET",
    "SQRX_PROXY_DEFAULT_PORT",
    // Never an instance role: the S3 tests give their keys or none.
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
];

impl Server {
    /// `sqrx-server` on `data` with defaults.
    pub fn start(data: &DataDir) -> Self {
        Self::start_with(data, Binary::Server, &[], &[])
    }

    pub fn start_with(data: &DataDir, binary: Binary, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log_dir = tempfile::Builder::new()
            .prefix("sqrx-test-serverlog-")
            .tempdir()
            .expect("log dir");
        let log = log_dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = match binary {
            Binary::Server => Command::new(env!("CARGO_BIN_EXE_sqrx-server")),
            Binary::Serve => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_sqrx"));
                c.arg("serve");
                c
            }
        };
        for k in SCRUB {
            cmd.env_remove(k);
        }
        cmd.env_remove("SQRX_INIT")
            .env("SQRX_LOG", "info")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd.arg("--data-dir").arg(data.path());
        if !args.contains(&"--listen")
            && !env
                .iter()
                .any(|(k, _)| *k == "SQRX_LISTEN" || *k == "SQUASH_PORT")
        {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args).envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = line
            .strip_prefix("sqrx: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            base: format!("http://{addr}"),
            addr,
            log,
            _log_dir: log_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// Wait up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// An HTTP client that never uses a proxy (tests only talk to 127.0.0.1).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Send `req`; return the status and the body parsed as JSON (`Null` when empty). Every
/// non-empty body the server sends must be JSON, so this doubles as that check.
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.expect("body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        ct.starts_with("application/json"),
        "status {status}: content type {ct:?}, body {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// Assert an error response: `status` and `{"error": "..."}` holding `needle`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let msg = got.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {}", got.1));
    assert!(
        msg.contains(needle),
        "error {msg:?} does not mention {needle:?}"
    );
    assert_eq!(
        got.1.as_object().map(|o| o.len()),
        Some(1),
        "only `error` in {}",
        got.1
    );
}

/// POST JSON.
pub async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    send(c.post(url).json(&body)).await
}

/// GET.
pub async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    send(c.get(url)).await
}

/// DELETE.
pub async fn delete(c: &reqwest::Client, url: String) -> (u16, Value) {
    send(c.delete(url)).await
}

/// Create a sandbox over /v1 and check it worked.
pub async fn create(c: &reqwest::Client, s: &Server, id: &str) -> Value {
    let got = post(c, s.url("/v1/sandboxes"), serde_json::json!({"id": id})).await;
    assert_eq!(got.0, 201, "{}", got.1);
    got.1
}

/// Run a shell command over /v1.
pub async fn exec(c: &reqwest::Client, s: &Server, id: &str, cmd: &str) -> Value {
    let got = post(
        c,
        s.url(&format!("/v1/sandboxes/{id}/exec")),
        serde_json::json!({"command": cmd}),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

/// Send a raw HTTP/1.1 request: `head` (request line and headers, without the blank line),
/// then `body` for as long as the server reads it, and parse the response. For requests the
/// server refuses before reading their whole body, where an ordinary client may see the
/// connection close under its upload.
pub async fn raw(addr: &str, head: &str, body: Vec<u8>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = sock.into_split();
    let head = format!("{head}\r\nConnection: close\r\n\r\n");
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(16 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut response)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is all a JSON error takes.
        body.split("\r\n").nth(1).unwrap_or("").to_string()
    } else {
        body.to_string()
    };
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    };
    (status, v)
}

/// `data` in HTTP/1.1 chunked encoding, cut in `size`-byte chunks.
pub fn chunked(data: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The server's /metrics text.
pub async fn metrics_text(c: &reqwest::Client, s: &Server) -> String {
    c.get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the metric line starting with `line_prefix` in a /metrics text (0 when
/// absent).
pub fn metric_in(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A metric's value from the server's /metrics (0 when absent).
pub async fn metric(c: &reqwest::Client, s: &Server, line_prefix: &str) -> f64 {
    metric_in(&metrics_text(c, s).await, line_prefix)
}
