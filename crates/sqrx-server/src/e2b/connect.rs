//! The Connect protocol (connectrpc.com/docs/protocol) with the JSON codec, as E2B's SDKs speak
//! it to envd: unary calls are a JSON body in and out (`application/json`), errors an HTTP
//! status with `{"code": "<code>", "message": ...}`; server-streaming calls take one enveloped
//! message and answer `application/connect+json` envelopes (`[flags][length BE u32][json]`),
//! the last one (flags `0x02`) carrying `{}` or `{"error": {...}}` with HTTP 200.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqrx_core::ErrorKind;
use tokio::sync::mpsc;

/// The streaming content type (exactly this: the Python client refuses parameters).
pub const STREAM_CONTENT_TYPE: &str = "application/connect+json";

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The client cancelled.
    Canceled,
    /// Bad input.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// No such thing.
    NotFound,
    /// It exists.
    AlreadyExists,
    /// Not allowed.
    PermissionDenied,
    /// A limit was reached.
    ResourceExhausted,
    /// Not in a state for this.
    FailedPrecondition,
    /// Not implemented.
    Unimplemented,
    /// A fault of ours.
    Internal,
    /// The sandbox is not there (any more) or not reachable.
    Unavailable,
    /// No or bad credentials.
    Unauthenticated,
}

impl Code {
    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error with this code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// The code for a core error of `kind`.
    pub fn of(kind: ErrorKind) -> Code {
        match kind {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::LimitExceeded | ErrorKind::InsufficientStorage => Code::ResourceExhausted,
            ErrorKind::Conflict => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Internal => Code::Internal,
        }
    }
}

/// An RPC error: a code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code.
    pub code: Code,
    /// What went wrong.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// The body of the error (also the `error` of an end-stream message).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code.as_str(), "message": self.message})
    }
}

impl From<sqrx_core::SandboxError> for RpcError {
    fn from(e: sqrx_core::SandboxError) -> Self {
        let code = Code::of(e.kind());
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error in an envd call");
            return RpcError::new(code, "internal error");
        }
        RpcError::new(code, e.to_string())
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let mut r = (self.code.status(), self.json().to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// A unary answer: the message, or the error.
pub fn unary<T: Serialize>(result: Result<T, RpcError>) -> Response {
    match result.and_then(|v| {
        serde_json::to_string(&v).map_err(|e| RpcError::new(Code::Internal, e.to_string()))
    }) {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("")
}

/// The message of a unary request.
pub fn decode_unary<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, RpcError> {
    let ct = content_type(headers);
    if ct != "application/json" {
        return Err(RpcError::invalid(format!(
            "expected application/json, got {ct:?}"
        )));
    }
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| RpcError::invalid(format!("bad request: {e}")))
}

/// The messages of an enveloped (streaming) request body, in order.
pub fn decode_envelopes(body: &[u8]) -> Result<Vec<Bytes>, RpcError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(RpcError::invalid("a truncated envelope"));
        }
        let flags = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if flags & 0x01 != 0 {
            return Err(RpcError::invalid("compressed messages are not accepted"));
        }
        let Some(payload) = rest.get(5..5 + len) else {
            return Err(RpcError::invalid("a truncated envelope"));
        };
        out.push(Bytes::copy_from_slice(payload));
        rest = &rest[5 + len..];
    }
    Ok(out)
}

/// The single message of a server-streaming request.
pub fn decode_stream_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, RpcError> {
    let ct = content_type(headers);
    if ct != STREAM_CONTENT_TYPE {
        return Err(RpcError::invalid(format!(
            "expected {STREAM_CONTENT_TYPE}, got {ct:?}"
        )));
    }
    let messages = decode_envelopes(body)?;
    let first = messages
        .first()
        .ok_or_else(|| RpcError::invalid("no request message"))?;
    serde_json::from_slice(first).map_err(|e| RpcError::invalid(format!("bad request: {e}")))
}

/// One envelope.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flags);
    b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    b.put_slice(payload);
    b.freeze()
}

/// The end of a stream: `{}`, or the error.
pub fn end_stream(error: Option<&RpcError>) -> Bytes {
    let body = match error {
        Some(e) => serde_json::json!({"error": e.json()}),
        None => serde_json::json!({}),
    };
    envelope(0x02, body.to_string().as_bytes())
}

/// The deadline a request asks for (`Connect-Timeout-Ms`), if any.
pub fn deadline(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
}

/// A server-streaming answer: each message `rx` yields, flushed as it comes, then the
/// end-stream envelope with the error the channel ended with, if any.
pub fn stream(mut rx: mpsc::Receiver<Result<serde_json::Value, RpcError>>) -> Response {
    let body = async_stream_body(move |tx| async move {
        while let Some(item) = rx.recv().await {
            match item {
                Ok(msg) => {
                    if tx
                        .send(envelope(0, msg.to_string().as_bytes()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(end_stream(Some(&e))).await;
                    return;
                }
            }
        }
        let _ = tx.send(end_stream(None)).await;
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAM_CONTENT_TYPE),
    );
    r
}

/// A streaming call that fails before its first message: HTTP 200 and the end-stream error.
pub fn stream_error(e: RpcError) -> Response {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Err(e));
    stream(rx)
}

/// A body fed by `produce`, which sends chunks into the channel it is given.
fn async_stream_body<F, Fut>(produce: F) -> Body
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(produce(tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_end_streams_carry_errors() {
        let mut body = envelope(0, br#"{"a":1}"#).to_vec();
        body.extend_from_slice(&envelope(0, b"{}"));
        let msgs = decode_envelopes(&body).expect("decode");
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0][..], br#"{"a":1}"#);
        assert!(decode_envelopes(&body[..7]).is_err());
        let end = end_stream(Some(&RpcError::new(Code::NotFound, "no such process")));
        assert_eq!(end[0], 0x02);
        let v: serde_json::Value = serde_json::from_slice(&end[5..]).expect("json");
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(&end_stream(None)[5..], b"{}");
    }

    #[test]
    fn unary_requests_need_json_and_errors_have_connect_statuses() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let v: serde_json::Value = decode_unary(&h, b"").expect("empty is {}");
        assert_eq!(v, serde_json::json!({}));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(decode_unary::<serde_json::Value>(&h, b"{}").is_err());
        assert_eq!(Code::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(Code::Canceled.status().as_u16(), 499);
        assert_eq!(Code::of(ErrorKind::Timeout), Code::DeadlineExceeded);
    }
}
