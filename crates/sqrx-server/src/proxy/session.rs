//! `GET /{session_id}/ws`: a session's public endpoint, relayed frame by frame to the
//! WebSocket service inside its sandbox.
//!
//! The server opens a TCP connection into the sandbox (through its init), performs the
//! WebSocket client handshake there (forwarding the client's query and subprotocols), and only
//! then accepts the client's upgrade, so a service that is not there is an HTTP error (502),
//! not a socket that closes at once. Text, binary, ping, pong and close frames then pass both
//! ways. When the session ends (at `valid_till`, or stopped with its token) the client gets a
//! close frame (1000) with the reason `session expired` or `session stopped`.
//!
//! The session id (128 random bits) is the capability for this route: it is exempt from the
//! bearer token (browsers cannot set `Authorization` on a WebSocket), like squarex's public
//! endpoint.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self, CloseFrame, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use sqrx_core::SandboxError;
use sqrx_core::session::SessionStatus;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self as ts, client::IntoClientRequest};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::metrics::WsKind;
use crate::state::AppState;
use crate::v1::pty::{is_too_big, too_big};

/// How long connecting to the service and its handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type ServiceSocket = WebSocketStream<tokio::net::TcpStream>;

/// The close reason a client gets when its session ends with `status`.
pub fn end_reason(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Expired => "session expired",
        SessionStatus::Stopped => "session stopped",
        SessionStatus::Starting | SessionStatus::Running => "session ended",
    }
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, message)
}

/// Connect to the session's service and do the WebSocket handshake with it.
async fn connect_service(
    state: &AppState,
    sandbox_id: &str,
    port: u16,
    query: Option<&str>,
    protocols: Option<&axum::http::HeaderValue>,
) -> Result<(ServiceSocket, Option<axum::http::HeaderValue>), ApiError> {
    let sandbox = state.sandbox(sandbox_id).await?;
    let tcp = sandbox.connect(port).await.map_err(|e| match e {
        SandboxError::PortClosed { .. } => bad_gateway(format!(
            "the session's service is not accepting connections on port {port}"
        )),
        other => ApiError::from(other),
    })?;
    let _ = tcp.set_nodelay(true);
    let url = match query {
        Some(q) => format!("ws://127.0.0.1:{port}/?{q}"),
        None => format!("ws://127.0.0.1:{port}/"),
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    let (socket, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| bad_gateway(format!("the session's service refused the WebSocket: {e}")))?;
    let chosen = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .cloned();
    Ok((socket, chosen))
}

/// Upgrade to the session's service (see the module docs).
#[utoipa::path(get, path = "/{session_id}/ws", tag = "sessions",
    params(("session_id" = String, Path, description = "Session id (from POST /v1/try)")),
    description = "WebSocket relayed to the session's service; no bearer token needed (the \
        session id is the capability). Closed with reason \"session expired\" or \"session \
        stopped\" when the session ends.",
    responses((status = 101, description = "Switching to the service's WebSocket"),
              (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
              (status = 404, description = "No such session, or it has ended", body = ErrorBody),
              (status = 502, description = "The service did not accept the connection", body = ErrorBody),
              (status = 504, description = "The service did not complete the handshake in time", body = ErrorBody)))]
pub async fn session_ws(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let session = state.sessions().status(&session_id)?;
    if session.status.is_over() {
        return Err(ApiError::not_found(format!(
            "the session has ended ({})",
            end_reason(session.status)
        )));
    }
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let watch = state.sessions().watch(&session_id)?;
    let protocols = headers.get(header::SEC_WEBSOCKET_PROTOCOL);
    let connecting = connect_service(
        &state,
        &session.sandbox_id,
        session.port,
        uri.query(),
        protocols,
    );
    let (service, chosen) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the session's service did not complete the WebSocket handshake in time",
            ));
        }
    };
    let mut ws = ws.max_message_size(state.config().limits.max_ws_message_bytes);
    if let Some(p) = chosen {
        ws.set_selected_protocol(p);
    }
    let max_message = state.config().limits.max_ws_message_bytes;
    Ok(ws.on_upgrade(move |client| async move {
        let _open = state.metrics().websocket_opened(WsKind::Session);
        relay(client, service, watch, max_message).await;
    }))
}

fn to_service(m: ws::Message) -> Option<ts::Message> {
    Some(match m {
        ws::Message::Text(t) => {
            ts::Message::Text(ts::Utf8Bytes::try_from(bytes::Bytes::from(t)).ok()?)
        }
        ws::Message::Binary(b) => ts::Message::Binary(b),
        ws::Message::Ping(b) => ts::Message::Ping(b),
        ws::Message::Pong(b) => ts::Message::Pong(b),
        ws::Message::Close(c) => ts::Message::Close(c.map(|c| ts::protocol::CloseFrame {
            code: c.code.into(),
            reason: ts::Utf8Bytes::try_from(bytes::Bytes::from(c.reason)).unwrap_or_default(),
        })),
    })
}

fn to_client(m: ts::Message) -> Option<ws::Message> {
    Some(match m {
        ts::Message::Text(t) => {
            ws::Message::Text(ws::Utf8Bytes::try_from(bytes::Bytes::from(t)).ok()?)
        }
        ts::Message::Binary(b) => ws::Message::Binary(b),
        ts::Message::Ping(b) => ws::Message::Ping(b),
        ts::Message::Pong(b) => ws::Message::Pong(b),
        ts::Message::Close(c) => ws::Message::Close(c.map(|c| CloseFrame {
            code: c.code.into(),
            reason: ws::Utf8Bytes::try_from(bytes::Bytes::from(c.reason)).unwrap_or_default(),
        })),
        // Raw frames are never produced when reading.
        ts::Message::Frame(_) => return None,
    })
}

/// How a relay ended.
enum End {
    /// The client closed or went away.
    Client,
    /// The client sent a message over the server's maximum.
    TooBig,
    /// The service closed or went away.
    Service,
    /// The session ended.
    Session(SessionStatus),
}

/// Relay frames between the client and the service until one leaves or the session ends.
async fn relay(
    client: WebSocket,
    service: ServiceSocket,
    mut status: watch::Receiver<SessionStatus>,
    max_message: usize,
) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut service_tx, mut service_rx) = service.split();
    let end = {
        let upstream = async {
            loop {
                let m = match client_rx.next().await {
                    Some(Ok(m)) => m,
                    Some(Err(e)) if is_too_big(&e) => return End::TooBig,
                    _ => break,
                };
                let closing = matches!(m, ws::Message::Close(_));
                if let Some(m) = to_service(m)
                    && service_tx.send(m).await.is_err()
                {
                    break;
                }
                if closing {
                    break;
                }
            }
            End::Client
        };
        let downstream = async {
            while let Some(Ok(m)) = service_rx.next().await {
                let closing = matches!(m, ts::Message::Close(_));
                if let Some(m) = to_client(m)
                    && client_tx.send(m).await.is_err()
                {
                    return End::Client;
                }
                if closing {
                    break;
                }
            }
            End::Service
        };
        let ended = async {
            match status.wait_for(|s| s.is_over()).await {
                Ok(s) => End::Session(*s),
                // The manager is gone: the server is stopping.
                Err(_) => End::Session(SessionStatus::Stopped),
            }
        };
        tokio::select! {
            e = upstream => e,
            e = downstream => e,
            e = ended => e,
        }
    };
    // The service going away usually means the session ended and its sandbox is being
    // destroyed: tell the client why.
    let end = match end {
        End::Service if status.borrow().is_over() => End::Session(*status.borrow()),
        other => other,
    };
    match end {
        End::Client => {
            let _ = service_tx.close().await;
        }
        End::TooBig => {
            let _ = client_tx.send(too_big(max_message)).await;
            let _ = service_tx.close().await;
        }
        End::Service => {
            let _ = client_tx.close().await;
        }
        End::Session(s) => {
            let _ = client_tx
                .send(ws::Message::Close(Some(CloseFrame {
                    code: ws::close_code::NORMAL,
                    reason: end_reason(s).into(),
                })))
                .await;
            let _ = service_tx
                .send(ts::Message::Close(Some(ts::protocol::CloseFrame {
                    code: ts::protocol::frame::coding::CloseCode::Away,
                    reason: end_reason(s).into(),
                })))
                .await;
        }
    }
}
