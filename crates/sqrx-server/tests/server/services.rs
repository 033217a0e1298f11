//! Services inside sandboxes for the session, proxy and terminal tests: a Python layer made
//! from the host's interpreter, and small stdlib-only Python servers started in sandboxes.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// The WebSocket echo server (stdlib only).
pub const WS_ECHO_PY: &str = include_str!("py/ws_echo.py");
/// The HTTP server that describes each request it gets.
pub const HTTP_ECHO_PY: &str = include_str!("py/http_echo.py");

/// The Python layer's name.
pub const PY_LAYER: &str = "100-py";

/// A WebSocket client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Make the layer `100-py` in `data` from the host's Python 3.11 with the sqrx CLI (before the
/// server starts).
pub fn python_layer(data: &DataDir) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqrx"))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "layer",
            "from-host",
            PY_LAYER,
            "/usr/bin/python3",
            "/usr/lib/python3.11",
        ])
        .env_remove("SQRX_DATA")
        .output()
        .expect("run sqrx layer from-host");
    assert!(
        out.status.success(),
        "sqrx layer from-host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config file for `--config`; removed on drop.
pub struct ConfigFile {
    file: tempfile::NamedTempFile,
}

impl ConfigFile {
    pub fn new(text: &str) -> Self {
        let file = tempfile::Builder::new()
            .prefix("sqrx-test-config-")
            .suffix(".toml")
            .tempfile()
            .expect("config file");
        std::fs::write(file.path(), text).expect("write config");
        ConfigFile { file }
    }

    pub fn path(&self) -> &str {
        self.file.path().to_str().expect("utf-8 path")
    }
}

/// A `[[template]]` table running `script` (Python source, passed in the environment) on
/// `port`.
pub fn python_template(name: &str, script: &str, port: u16, ttl: u64) -> String {
    assert!(
        !script.contains("'''"),
        "the script must fit a TOML literal"
    );
    format!(
        "[[template]]\nname = \"{name}\"\nlayers = [\"000-base\", \"{PY_LAYER}\"]\n\
         command = 'exec python3 -c \"$SERVICE_PY\"'\nport = {port}\nttl = {ttl}\n\
         [template.env]\nPORT = \"{port}\"\nSERVICE_PY = '''\n{script}'''\n"
    )
}

/// Create sandbox `id` with the Python layer.
pub async fn python_sandbox(c: &reqwest::Client, s: &Server, id: &str) {
    let got = post(
        c,
        s.url("/v1/sandboxes"),
        json!({"id": id, "layers": ["000-base", PY_LAYER]}),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.1);
}

/// Start `script` in the background in sandbox `id` on `port`, and wait until the port
/// accepts connections (through the proxy).
pub async fn start_python(c: &reqwest::Client, s: &Server, id: &str, script: &str, port: u16) {
    let got = post(
        c,
        s.url(&format!("/v1/sandboxes/{id}/exec")),
        json!({
            "command": format!("python3 -c \"$SERVICE_PY\" >/tmp/service-{port}.log 2>&1 &"),
            "env": {"SERVICE_PY": script, "PORT": port.to_string()},
        }),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    wait_for_port(c, s, id, port).await;
}

/// Wait until something accepts connections on `port` in sandbox `id`.
pub async fn wait_for_port(c: &reqwest::Client, s: &Server, id: &str, port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = c
            .get(s.url(&format!("/proxy/{id}/{port}/")))
            .send()
            .await
            .expect("request");
        if resp.status() != 502 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port} in {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connect a WebSocket to `path` on the server.
pub async fn ws_connect(s: &Server, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", s.addr))
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    ws
}

/// The server's resident memory, KiB.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Mounts under the data directory (there should be none once its sandboxes are gone).
pub fn mounts_under(data: &DataDir) -> Vec<String> {
    let dir = data.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}
