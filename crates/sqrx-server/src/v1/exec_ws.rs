//! `GET /v1/sandboxes/{id}/exec/ws`: an exec streamed over a WebSocket.
//!
//! Frames (documented in `docs/api.md`):
//! - client → server: first a text frame holding [`WsExecRequest`] as JSON; then binary frames
//!   (stdin bytes) or text frames `{"type":"stdin","data":"..."}` and `{"type":"eof"}`. A close
//!   frame (or a dropped connection) kills the exec's process tree.
//! - server → client: `{"type":"started","pid":N}`; binary frames whose first byte names the
//!   stream (1 = stdout, 2 = stderr) followed by the bytes; finally `{"type":"exit",...}` and a
//!   normal close. A failure is `{"type":"error","error":"..."}` followed by a close.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sqrx_core::{ExecEvent, Sandbox};

use super::model::{CommandBody, output_cap, seconds};
use super::pty::{is_too_big, too_big};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::metrics::ExecOutcome;
use crate::state::AppState;

/// Stream tag of a stdout frame.
pub const STDOUT: u8 = 1;
/// Stream tag of a stderr frame.
pub const STDERR: u8 = 2;

/// What [`first_request`] says of a request over the message size limit.
const TOO_BIG: &str = "too big";

/// How long a client has to send its request after the upgrade.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The first message of an exec WebSocket.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WsExecRequest {
    /// What to run.
    pub command: CommandBody,
    /// Variables added to the sandbox's clean environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute; default: the user's home, `/` for root).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run as this user of the sandbox's `/etc/passwd` (a name or a uid; default its root).
    #[serde(default)]
    pub user: Option<String>,
    /// Timeout in seconds (default: the server's exec timeout).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Bytes kept per stream for the history (the stream itself is never cut).
    #[serde(default)]
    pub output_cap: Option<u64>,
    /// Give the process a stdin fed by the client's frames (default true); `false` = `/dev/null`.
    #[serde(default = "yes")]
    pub stdin: bool,
}

fn yes() -> bool {
    true
}

/// A text frame from the client after the request.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Stdin { data: String },
    Eof,
}

/// A text frame from the server.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The process started.
    Started {
        /// Its pid inside the sandbox.
        pid: i32,
    },
    /// The process ended.
    Exit {
        /// Its number in the sandbox's history.
        seq: u64,
        /// Exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that killed it.
        signal: Option<i32>,
        /// Killed by its timeout.
        timed_out: bool,
        /// Killed by the OOM killer.
        oom_killed: bool,
        /// The history's copy of the output was cut at the cap.
        truncated: bool,
        /// Wall time, ms.
        duration_ms: u64,
    },
    /// The exec could not run or the connection failed; a close follows.
    Error {
        /// What went wrong.
        error: String,
    },
}

/// Upgrade to a WebSocket exec session (see the module docs for the frame format).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/exec/ws", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 101, description = "Switching to the WebSocket exec protocol (docs/api.md)"),
              (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn exec_ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    // Unknown ids are answered over HTTP, before the upgrade.
    let sandbox = state.sandbox(&id).await?;
    let limit = state.config().limits.max_ws_message_bytes;
    Ok(ws
        .max_message_size(limit)
        // A browser offering `sqrx` (and its key as `sqrx.bearer.…`, see `auth`) gets `sqrx`
        // back; the key entry is never echoed.
        .protocols([crate::auth::WS_PROTOCOL])
        .on_upgrade(move |socket| session(socket, sandbox, state)))
}

async fn send_frame(socket: &mut WebSocket, frame: &ServerFrame) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn fail(socket: &mut WebSocket, code: u16, error: String) {
    let reason = if code == close_code::POLICY {
        "protocol error"
    } else {
        "exec failed"
    };
    let _ = send_frame(socket, &ServerFrame::Error { error }).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn tagged(tag: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(tag);
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

async fn first_request(socket: &mut WebSocket) -> Option<Result<WsExecRequest, String>> {
    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, socket.recv()).await {
        Err(_) => Some(Err(format!(
            "no request within {} s",
            FIRST_MESSAGE_TIMEOUT.as_secs()
        ))),
        Ok(Some(Err(e))) if is_too_big(&e) => Some(Err(TOO_BIG.into())),
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => None,
        Ok(Some(Ok(Message::Text(text)))) => Some(
            serde_json::from_str::<WsExecRequest>(text.as_str())
                .map_err(|e| format!("invalid request: {e}")),
        ),
        Ok(Some(Ok(_))) => Some(Err(
            "the first message must be the request, as JSON in a text frame".into(),
        )),
    }
}

async fn session(mut socket: WebSocket, sandbox: Sandbox, state: AppState) {
    let max_message = state.config().limits.max_ws_message_bytes;
    let req = match first_request(&mut socket).await {
        None => return,
        Some(Err(e)) if e == TOO_BIG => {
            let _ = socket.send(too_big(max_message)).await;
            return;
        }
        Some(Err(e)) => return fail(&mut socket, close_code::POLICY, e).await,
        Some(Ok(r)) => r,
    };
    let want_stdin = req.stdin;
    let timeout = match req.timeout.map(|t| seconds("timeout", t)).transpose() {
        Ok(t) => t.unwrap_or(state.config().exec_timeout),
        Err(e) => return fail(&mut socket, close_code::POLICY, e.message).await,
    };
    let mut exec = sqrx_core::ExecRequest::new(sqrx_core::Command::from(req.command));
    exec.env = req.env;
    exec.workdir = req.workdir;
    exec.user = req.user;
    exec.timeout = Some(timeout);
    exec.output_cap = match output_cap(req.output_cap, &state.config().limits) {
        Ok(cap) => cap,
        Err(e) => return fail(&mut socket, close_code::POLICY, e.message).await,
    };

    let started = Instant::now();
    let opened = if want_stdin {
        sandbox
            .exec_interactive(exec)
            .await
            .map(|(stream, stdin)| (stream, Some(stdin)))
    } else {
        sandbox.exec_stream(exec).await.map(|s| (s, None))
    };
    let (mut stream, mut stdin) = match opened {
        Ok(o) => o,
        Err(e) => {
            state
                .metrics()
                .exec(ExecOutcome::Error, started.elapsed().as_secs_f64());
            let e = ApiError::from(e);
            return fail(&mut socket, close_code::ERROR, e.message).await;
        }
    };
    if !send_frame(&mut socket, &ServerFrame::Started { pid: stream.pid }).await {
        return;
    }
    // Stdin bytes not yet accepted by the exec. While some are pending the socket is not read,
    // so a client that floods stdin is slowed by TCP rather than buffered without bound.
    let mut pending: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(ExecEvent::Stdout(d))) => {
                    if socket.send(tagged(STDOUT, &d)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(ExecEvent::Stderr(d))) => {
                    if socket.send(tagged(STDERR, &d)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(ExecEvent::Exit(r))) => {
                    state.metrics().exec(ExecOutcome::of(&r), started.elapsed().as_secs_f64());
                    let exit = ServerFrame::Exit {
                        seq: r.seq,
                        exit_code: r.exit_code,
                        signal: r.signal,
                        timed_out: r.timed_out,
                        oom_killed: r.oom_killed,
                        truncated: r.truncated,
                        duration_ms: r.duration_ms,
                    };
                    if send_frame(&mut socket, &exit).await {
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: close_code::NORMAL,
                                reason: "exited".into(),
                            })))
                            .await;
                    }
                    return;
                }
                Some(Err(e)) => {
                    state.metrics().exec(ExecOutcome::Error, started.elapsed().as_secs_f64());
                    let e = ApiError::from(e);
                    return fail(&mut socket, close_code::ERROR, e.message).await;
                }
                None => {
                    return fail(&mut socket, close_code::ERROR, "the exec ended without an exit status".into()).await;
                }
            },
            written = async {
                match (stdin.as_mut(), pending.clone()) {
                    (Some(s), Some(data)) => s.write(data).await.is_ok(),
                    _ => false,
                }
            }, if pending.is_some() => {
                pending = None;
                if !written {
                    // The process closed its stdin or ended; its exit comes through the stream.
                    stdin = None;
                }
            },
            message = socket.recv(), if pending.is_none() => match message {
                Some(Ok(Message::Binary(b))) => {
                    if stdin.is_some() && !b.is_empty() {
                        pending = Some(b.to_vec());
                    }
                }
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientFrame>(t.as_str()) {
                    Ok(ClientFrame::Stdin { data }) => {
                        if stdin.is_some() && !data.is_empty() {
                            pending = Some(data.into_bytes());
                        }
                    }
                    Ok(ClientFrame::Eof) => {
                        if let Some(s) = stdin.as_mut() {
                            s.close();
                        }
                        stdin = None;
                    }
                    Err(e) => {
                        return fail(&mut socket, close_code::POLICY, format!("invalid frame: {e}")).await;
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) if is_too_big(&e) => {
                    let _ = socket.send(too_big(max_message)).await;
                    return;
                }
                // The client left: dropping the stream kills the exec's process tree.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
        }
    }
}
