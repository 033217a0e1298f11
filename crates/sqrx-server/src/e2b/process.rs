//! envd's `process.Process` service over Connect (JSON), and envd's `GET /health`: commands
//! that outlive the request that started them (a sandbox's tracked processes), their output
//! streamed while they run, input, signals and terminals.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sqrx_core::{StartOptions, Watched};
use tokio::sync::mpsc;

use super::connect::{self, Code, RpcError};
use crate::state::AppState;

/// How often a quiet stream says it is alive (envd's keepalive).
const KEEPALIVE: Duration = Duration::from_secs(50);

/// The answer to a sandbox-side request for a sandbox that is not there (or paused): what
/// E2B's proxy answers, so the SDKs report the sandbox as not running.
pub fn gone(id: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        axum::Json(json!({
            "sandboxId": id,
            "message": format!("The sandbox {id} was not found"),
            "code": 502,
        })),
    )
        .into_response()
}

/// The running sandbox a sandbox-side request is for, checked against its access token.
pub async fn sandbox_for(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<sqrx_core::Sandbox, Response> {
    let Some(id) = super::sandbox_id(headers) else {
        return Err(RpcError::new(
            Code::InvalidArgument,
            "no sandbox named (E2b-Sandbox-Id header or {port}-{id}.{domain} host)",
        )
        .into_response());
    };
    let lookup = id.clone();
    let Ok(sb) = state.blocking(move |rt| rt.get(&lookup)).await else {
        return Err(gone(&id));
    };
    let info = sb.info();
    if info.status != "running" {
        return Err(gone(&id));
    }
    let expected = super::access_token(state, sb.id(), info.created);
    let given = headers
        .get("x-access-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(given, expected.as_bytes())) {
        return Err(RpcError::new(
            Code::Unauthenticated,
            "a missing or wrong X-Access-Token for this sandbox",
        )
        .into_response());
    }
    Ok(sb)
}

/// `GET /health`: 204 while the named sandbox runs, 502 when it does not (envd's health, as
/// the SDKs' `is_running` reads it); without a sandbox named, the server's own health.
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(id) = super::sandbox_id(&headers) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let lookup = id.clone();
    match state.blocking(move |rt| rt.get(&lookup)).await {
        Ok(sb) if sb.info().status == "running" => StatusCode::NO_CONTENT.into_response(),
        _ => gone(&id),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessConfig {
    #[serde(default)]
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PtySizeJson {
    #[serde(default)]
    cols: u16,
    #[serde(default)]
    rows: u16,
}

#[derive(Debug, Default, Deserialize)]
struct Pty {
    #[serde(default)]
    size: Option<PtySizeJson>,
}

#[derive(Debug, Deserialize)]
struct StartRequest {
    process: ProcessConfig,
    #[serde(default)]
    pty: Option<Pty>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    stdin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct Selector {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Selected {
    #[serde(default)]
    process: Selector,
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    signal: Option<Value>,
    #[serde(default)]
    pty: Option<Pty>,
}

#[derive(Debug, Default, Deserialize)]
struct Input {
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    pty: Option<String>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Result<Vec<u8>, RpcError> {
    let t = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
        .map_err(|_| RpcError::invalid("input is not base64"))
}

/// The tracked process a selector names.
fn select(
    rt: &sqrx_core::Runtime,
    sandbox: &str,
    sel: &Selector,
) -> Result<std::sync::Arc<sqrx_core::TrackedProcess>, RpcError> {
    let found = match (sel.pid, &sel.tag) {
        (Some(pid), _) => rt.process(sandbox, i32::try_from(pid).unwrap_or(-1)),
        (None, Some(tag)) => rt
            .processes(sandbox)
            .into_iter()
            .find(|p| p.info.tag.as_deref() == Some(tag.as_str())),
        (None, None) => return Err(RpcError::invalid("no process selected (pid or tag)")),
    };
    found.ok_or_else(|| {
        RpcError::new(
            Code::NotFound,
            match (sel.pid, &sel.tag) {
                (Some(pid), _) => format!("process with pid {pid} not found"),
                (_, Some(tag)) => format!("process with tag {tag} not found"),
                _ => "process not found".into(),
            },
        )
    })
}

/// Stream a tracked process's events as envd does: `start`, data, `end`.
fn stream_process(
    pid: i32,
    mut watch: sqrx_core::ProcessWatch,
    deadline: Option<Duration>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Value, RpcError>>(64);
    tokio::spawn(async move {
        if tx
            .send(Ok(json!({"event": {"start": {"pid": pid}}})))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let next = match tokio::time::timeout(KEEPALIVE, watch.next()).await {
                Ok(n) => n,
                Err(_) => {
                    if tx
                        .send(Ok(json!({"event": {"keepalive": {}}})))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            let msg = match next {
                Some(Watched::Event(sqrx_core::ProcessEvent::Stdout(b))) => {
                    json!({"event": {"data": {"stdout": b64(&b)}}})
                }
                Some(Watched::Event(sqrx_core::ProcessEvent::Stderr(b))) => {
                    json!({"event": {"data": {"stderr": b64(&b)}}})
                }
                Some(Watched::Event(sqrx_core::ProcessEvent::Pty(b))) => {
                    json!({"event": {"data": {"pty": b64(&b)}}})
                }
                Some(Watched::End(end)) => {
                    if end.timed_out {
                        let _ = tx
                            .send(Err(RpcError::new(
                                Code::DeadlineExceeded,
                                format!(
                                    "the command was killed at its deadline ({} ms)",
                                    deadline.map(|d| d.as_millis()).unwrap_or(0)
                                ),
                            )))
                            .await;
                        return;
                    }
                    let code = end
                        .exit_code
                        .unwrap_or_else(|| end.signal.map(|s| -s).unwrap_or(-1));
                    let status = match (end.exit_code, end.signal) {
                        (Some(c), _) => format!("exit status {c}"),
                        (None, Some(9)) => "signal: killed".into(),
                        (None, Some(s)) => format!("signal: {s}"),
                        (None, None) => "unknown".into(),
                    };
                    let mut e = json!({"exitCode": code, "exited": end.exit_code.is_some(), "status": status});
                    if let Some(err) = end.error {
                        e["error"] = json!(err);
                    }
                    let _ = tx.send(Ok(json!({"event": {"end": e}}))).await;
                    return;
                }
                None => return,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    });
    connect::stream(rx)
}

/// The most a unary or server-streaming request body may hold.
const REQUEST_LIMIT: usize = 16 << 20;

/// `StreamInput`: a client stream of `{"start": {"process": ...}}`, then `{"data": {"input":
/// ...}}` and `{"keepalive": {}}` messages, each written to the process as it arrives; the
/// answer (one empty message, then the end) once the client ends its stream.
async fn stream_input(
    rt: &sqrx_core::Runtime,
    id: &str,
    body: axum::body::Body,
) -> Result<(), RpcError> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut process: Option<std::sync::Arc<sqrx_core::TrackedProcess>> = None;
    loop {
        // Every complete envelope in the buffer.
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > REQUEST_LIMIT {
                return Err(RpcError::invalid("a message over 16 MiB"));
            }
            if buf.len() < 5 + len {
                break;
            }
            let msg: Value = serde_json::from_slice(&buf[5..5 + len])
                .map_err(|e| RpcError::invalid(format!("bad message: {e}")))?;
            buf.drain(..5 + len);
            if let Some(start) = msg.get("start") {
                let sel: Selector =
                    serde_json::from_value(start.get("process").cloned().unwrap_or(Value::Null))
                        .unwrap_or_default();
                process = Some(select(rt, id, &sel)?);
            } else if let Some(data) = msg.get("data") {
                let Some(p) = &process else {
                    return Err(RpcError::invalid("data before start"));
                };
                let input: Input =
                    serde_json::from_value(data.get("input").cloned().unwrap_or(Value::Null))
                        .unwrap_or_default();
                if let Some(d) = input.stdin.or(input.pty) {
                    p.write(unb64(&d)?).await?;
                }
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                return Err(RpcError::invalid(format!("the request stream broke: {e}")));
            }
            None => break,
        }
    }
    if !buf.is_empty() {
        return Err(RpcError::invalid(
            "a truncated message at the end of the stream",
        ));
    }
    Ok(())
}

/// `POST /process.Process/{method}`.
pub async fn rpc(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let sb = match sandbox_for(&state, &headers).await {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    if method == "StreamInput" {
        let rt = state.runtime().clone();
        let (tx, rx) = mpsc::channel(2);
        let result = stream_input(&rt, sb.id(), body).await;
        match result {
            Ok(()) => {
                let _ = tx.send(Ok(json!({}))).await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
        drop(tx);
        return connect::stream(rx);
    }
    let body: Bytes = match axum::body::to_bytes(body, REQUEST_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return RpcError::invalid(format!("cannot read the request: {e}")).into_response();
        }
    };
    let rt = state.runtime().clone();
    let id = sb.id().to_string();
    match method.as_str() {
        "Start" => {
            let req: StartRequest = match connect::decode_stream_request(&headers, &body) {
                Ok(r) => r,
                Err(e) => return connect::stream_error(e),
            };
            let mut argv = vec![req.process.cmd.clone()];
            argv.extend(req.process.args.iter().cloned());
            let mut exec = sqrx_core::ExecRequest::new(sqrx_core::Command::Argv(argv));
            exec.env = req.process.envs;
            exec.workdir = req.process.cwd.filter(|c| !c.is_empty());
            exec.user = Some(super::request_user(&headers, None, &sb));
            let deadline = connect::deadline(&headers);
            exec.timeout = deadline;
            exec.output_cap = Some(u64::MAX);
            let pty = req
                .pty
                .and_then(|p| p.size)
                .map(|s| (s.cols.max(1), s.rows.max(1)));
            let options = StartOptions {
                tag: req.tag,
                // envd: absent means a stdin pipe (older clients); a terminal has one anyway.
                stdin: pty.is_none() && req.stdin.unwrap_or(true),
                pty,
            };
            match sb.start_tracked(exec, options).await {
                Ok((p, watch)) => stream_process(p.info.pid, watch, deadline),
                Err(e) => connect::stream_error(e.into()),
            }
        }
        "Connect" => {
            let req: Selected = match connect::decode_stream_request(&headers, &body) {
                Ok(r) => r,
                Err(e) => return connect::stream_error(e),
            };
            match select(&rt, &id, &req.process) {
                Ok(p) => stream_process(p.info.pid, p.watch(), None),
                Err(e) => connect::stream_error(e),
            }
        }
        "List" => connect::unary(Ok(json!({
            "processes": rt.processes(&id).iter().map(|p| {
                let mut v = json!({"pid": p.info.pid, "config": {
                    "cmd": p.info.cmd, "args": p.info.args, "envs": p.info.env,
                }});
                if let Some(cwd) = &p.info.cwd { v["config"]["cwd"] = json!(cwd); }
                if let Some(tag) = &p.info.tag { v["tag"] = json!(tag); }
                v
            }).collect::<Vec<_>>(),
        }))),
        "SendInput" | "SendSignal" | "CloseStdin" | "Update" => {
            let req: Selected = match connect::decode_unary(&headers, &body) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            let p = match select(&rt, &id, &req.process) {
                Ok(p) => p,
                Err(e) => return e.into_response(),
            };
            let done: Result<(), RpcError> = match method.as_str() {
                "SendInput" => match req.input.unwrap_or_default() {
                    Input { stdin: Some(d), .. } | Input { pty: Some(d), .. } => match unb64(&d) {
                        Ok(bytes) => p.write(bytes).await.map_err(RpcError::from),
                        Err(e) => Err(e),
                    },
                    _ => Err(RpcError::invalid("no input")),
                },
                "SendSignal" => {
                    let sig = match req.signal.as_ref() {
                        Some(Value::String(s)) if s == "SIGNAL_SIGTERM" => Ok(15),
                        Some(Value::String(s)) if s == "SIGNAL_SIGKILL" => Ok(9),
                        Some(Value::Number(n)) if n.as_i64() == Some(15) => Ok(15),
                        Some(Value::Number(n)) if n.as_i64() == Some(9) => Ok(9),
                        other => Err(RpcError::invalid(format!("unknown signal {other:?}"))),
                    };
                    match sig {
                        Ok(s) => p.signal(s).await.map_err(RpcError::from),
                        Err(e) => Err(e),
                    }
                }
                "CloseStdin" => p.close_stdin().await.map_err(RpcError::from),
                _ => match req.pty.and_then(|p| p.size) {
                    Some(s) => p.resize(s.cols, s.rows).await.map_err(RpcError::from),
                    None => Ok(()),
                },
            };
            connect::unary(done.map(|()| json!({})))
        }
        other => RpcError::new(
            Code::Unimplemented,
            format!("process.Process/{other} does not exist"),
        )
        .into_response(),
    }
}
