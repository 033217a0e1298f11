//! `GET /v1/sandboxes/{id}/pty`: a terminal over a WebSocket. A shell (`bash -l` when the
//! sandbox has bash, else `/bin/sh`) runs on a pseudo-terminal inside the sandbox.
//!
//! Frames (documented in `docs/api.md`):
//! - client → server: binary frames are keystrokes; text frames are JSON,
//!   `{"type":"resize","cols":C,"rows":R}` or `{"type":"input","data":"..."}`.
//! - server → client: binary frames with the terminal's output. When the shell exits the
//!   server closes with code 1000 and the reason `exited with code N` (or `killed by signal
//!   N`). Closing the socket kills the shell's process group.
//!
//! The initial size is `?cols=&rows=` (default 80x24).
//!
//! A browser authenticates with the subprotocols `["sqrx", "sqrx.bearer.<base64url key>"]`
//! (see [`crate::auth`]); the server selects `sqrx`.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use serde::Deserialize;
use sqrx_core::sandbox::PtyInput;
use sqrx_core::{ExecEvent, ExecRequest, Sandbox};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::metrics::WsKind;
use crate::state::AppState;

/// The shell: a login bash where there is one, else the POSIX shell.
const SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec /bin/sh; fi";

/// The terminal's initial size.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    /// Columns (default 80).
    #[serde(default = "default_cols")]
    pub cols: u16,
    /// Rows (default 24).
    #[serde(default = "default_rows")]
    pub rows: u16,
}

fn default_cols() -> u16 {
    80
}

fn default_rows() -> u16 {
    24
}

/// A text frame from the client.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PtyFrame {
    /// Change the terminal's size (the shell gets `SIGWINCH`).
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Keystrokes as text (the same as a binary frame).
    Input {
        /// The bytes, as UTF-8.
        data: String,
    },
}

/// Upgrade to a terminal session (see the module docs for the frames).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/pty", tag = "v1",
    params(("id" = String, Path, description = "Sandbox id"), PtySize),
    responses((status = 101, description = "Switching to the terminal protocol (docs/api.md)"),
              (status = 400, description = "Not a WebSocket upgrade, or a bad size", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The sandbox is paused", body = ErrorBody)))]
pub async fn pty(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(size): Query<PtySize>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if size.cols == 0 || size.rows == 0 {
        return Err(ApiError::bad_request(format!(
            "{}x{} is not a terminal size",
            size.cols, size.rows
        )));
    }
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let sandbox = state.sandbox(&id).await?;
    // Started before the upgrade, so a sandbox that cannot run it answers over HTTP.
    let (events, input, _pid) = sandbox
        .exec_pty(ExecRequest::new(SHELL), size.cols, size.rows)
        .await?;
    let limit = state.config().limits.max_ws_message_bytes;
    Ok(ws
        .max_message_size(limit)
        // A browser offering `sqrx` (and its key as `sqrx.bearer.…`, see `auth`) gets `sqrx`
        // back; the key entry is never echoed.
        .protocols([crate::auth::WS_PROTOCOL])
        .on_upgrade(move |socket| async move {
            let _open = state.metrics().websocket_opened(WsKind::Pty);
            terminal(socket, sandbox, events, input, limit).await;
        }))
}

/// Did a WebSocket read fail because the client sent a message over the server's maximum
/// (`limits.max_ws_message_bytes`)?
pub fn is_too_big(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|inner| matches!(inner, Error::Capacity(_)))
}

/// The close frame (1009, message too big) for a client that sent a message over `max` bytes.
pub fn too_big(max: usize) -> Message {
    close_frame(
        close_code::SIZE,
        format!("message over the server's maximum of {max} bytes (limits.max_ws_message_bytes)"),
    )
}

/// A close frame; the reason is cut to the 123 bytes a close frame can carry.
pub fn close_frame(code: u16, mut reason: String) -> Message {
    if reason.len() > 123 {
        let mut end = 120;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn terminal(
    mut socket: WebSocket,
    _sandbox: Sandbox,
    mut events: tokio::sync::mpsc::Receiver<Result<ExecEvent, sqrx_core::SandboxError>>,
    input: PtyInput,
    max_message: usize,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Ok(ExecEvent::Stdout(d) | ExecEvent::Stderr(d))) => {
                    if socket.send(Message::Binary(d.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(ExecEvent::Exit(r))) => {
                    let reason = match (r.exit_code, r.signal) {
                        (Some(code), _) => format!("exited with code {code}"),
                        (None, Some(sig)) => format!("killed by signal {sig}"),
                        (None, None) => "exited".to_string(),
                    };
                    let _ = socket.send(close_frame(close_code::NORMAL, reason)).await;
                    return;
                }
                Some(Err(e)) => {
                    let e = ApiError::from(e);
                    let _ = socket.send(close_frame(close_code::ERROR, e.message)).await;
                    return;
                }
                None => {
                    let _ = socket.send(close_frame(close_code::NORMAL, "exited".into())).await;
                    return;
                }
            },
            message = socket.recv() => {
                let typed = match message {
                    Some(Ok(Message::Binary(b))) => input.write(b.to_vec()).await,
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<PtyFrame>(t.as_str()) {
                        Ok(PtyFrame::Resize { cols, rows }) if cols == 0 || rows == 0 => {
                            let _ = socket
                                .send(close_frame(close_code::POLICY, format!("{cols}x{rows} is not a terminal size")))
                                .await;
                            return;
                        }
                        Ok(PtyFrame::Resize { cols, rows }) => input.resize(cols, rows).await,
                        Ok(PtyFrame::Input { data }) => input.write(data.into_bytes()).await,
                        Err(e) => {
                            let _ = socket
                                .send(close_frame(close_code::POLICY, format!("invalid frame: {e}")))
                                .await;
                            return;
                        }
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Err(e)) if is_too_big(&e) => {
                        let _ = socket.send(too_big(max_message)).await;
                        return;
                    }
                    // The client left: dropping the events kills the shell's process group.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                };
                // A closed input means the shell is exiting: its exit arrives as an event.
                let _ = typed;
            }
        }
    }
}
