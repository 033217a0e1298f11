//! envd's `filesystem.Filesystem` service over Connect (JSON) and its `GET|POST /files`:
//! the sandbox's files through the core's files API (every path resolved inside the sandbox's
//! root). Relative paths are relative to the home directory (`/root`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::connect::{self, Code, RpcError};
use crate::state::AppState;

/// A path of a request made absolute: relative paths start at the acting user's `home`.
fn absolute(home: &str, path: &str) -> String {
    let home = home.trim_end_matches('/');
    if path.starts_with('/') {
        path.to_string()
    } else if path.is_empty() {
        if home.is_empty() {
            "/".into()
        } else {
            home.to_string()
        }
    } else {
        format!("{home}/{path}")
    }
}

/// Who a file call acts as: a handle on the sandbox whose writes the user owns, the user's
/// home (where relative paths start) and the sandbox's account files (for owner names).
struct Acting {
    sb: sqrx_core::Sandbox,
    home: String,
    accounts: sqrx_core::accounts::Accounts,
}

/// [`Acting`] for the user of `headers` (or `explicit`), read on the blocking pool.
async fn acting(
    sb: sqrx_core::Sandbox,
    headers: &HeaderMap,
    explicit: Option<&str>,
) -> Result<Acting, sqrx_core::SandboxError> {
    let user = super::request_user(headers, explicit, &sb);
    tokio::task::spawn_blocking(move || {
        let accounts = sb.accounts();
        let account =
            accounts
                .resolve(&user)
                .ok_or_else(|| sqrx_core::SandboxError::UserNotFound {
                    id: sb.id().to_string(),
                    user: user.clone(),
                })?;
        Ok(Acting {
            sb: sb.files_owned_by(&account),
            home: account.home,
            accounts,
        })
    })
    .await
    .map_err(|e| sqrx_core::SandboxError::Protocol {
        id: String::new(),
        reason: e.to_string(),
    })?
}

fn file_type(kind: &str) -> &'static str {
    match kind {
        "dir" => "FILE_TYPE_DIRECTORY",
        "symlink" => "FILE_TYPE_SYMLINK",
        "file" => "FILE_TYPE_FILE",
        _ => "FILE_TYPE_UNSPECIFIED",
    }
}

/// `ls -l`'s mode string of an entry (Go's `FileMode.String()`, as envd reports it).
fn permissions(kind: &str, mode: u32) -> String {
    let t = match kind {
        "dir" => 'd',
        "symlink" => 'L',
        "char" => 'c',
        "block" => 'D',
        "fifo" => 'p',
        "socket" => 'S',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// envd's `EntryInfo` of a file; owner and group named from the sandbox's `accounts`.
fn entry(f: &sqrx_core::sandbox::FileInfo, accounts: &sqrx_core::accounts::Accounts) -> Value {
    json!({
        "name": f.name,
        "type": file_type(f.kind),
        "path": f.path,
        "size": f.size.to_string(),
        "mode": f.mode & 0o777,
        "permissions": permissions(f.kind, f.mode),
        "owner": accounts.user_name(f.uid),
        "group": accounts.group_name(f.gid),
        "modifiedTime": f.mtime.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "isSymlink": f.kind == "symlink",
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathRequest {
    #[serde(default)]
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct MoveRequest {
    source: String,
    destination: String,
}

/// The entries under `path`, `depth` levels down (1: its children), not following links.
fn list_deep(
    sb: &sqrx_core::Sandbox,
    path: &str,
    depth: u32,
) -> Result<Vec<sqrx_core::sandbox::FileInfo>, sqrx_core::SandboxError> {
    let mut out = Vec::new();
    for f in sb.list(path)? {
        let dir = f.kind == "dir";
        let child = f.path.clone();
        out.push(f);
        if dir && depth > 1 {
            out.extend(list_deep(sb, &child, depth - 1)?);
        }
    }
    Ok(out)
}

fn not_a_dir(path: &str) -> RpcError {
    RpcError::invalid(format!("path {path} is not a directory"))
}

/// `POST /filesystem.Filesystem/{method}`.
pub async fn rpc(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sb = match super::process::sandbox_for(&state, &headers).await {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    let Acting { sb, home, accounts } = match acting(sb, &headers, None).await {
        Ok(acting) => acting,
        Err(e) => return RpcError::from(e).into_response(),
    };
    let result: Result<Value, RpcError> = match method.as_str() {
        "Stat" | "ListDir" | "MakeDir" | "Remove" => {
            let req: PathRequest = match connect::decode_unary(&headers, &body) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            let path = absolute(&home, &req.path);
            let method = method.clone();
            tokio::task::spawn_blocking(move || -> Result<Value, RpcError> {
                match method.as_str() {
                    "Stat" => Ok(json!({"entry": entry(&sb.stat(&path)?, &accounts)})),
                    "ListDir" => {
                        let st = sb.stat(&path)?;
                        if st.kind != "dir" {
                            return Err(not_a_dir(&path));
                        }
                        let depth = req.depth.unwrap_or(1).max(1);
                        let entries: Vec<Value> = list_deep(&sb, &path, depth)?
                            .iter()
                            .map(|f| entry(f, &accounts))
                            .collect();
                        Ok(json!({"entries": entries}))
                    }
                    "MakeDir" => match sb.stat(&path) {
                        Ok(st) if st.kind == "dir" => Err(RpcError::new(
                            Code::AlreadyExists,
                            format!("directory {path} already exists"),
                        )),
                        Ok(_) => Err(RpcError::invalid(format!(
                            "path {path} exists and is not a directory"
                        ))),
                        Err(_) => {
                            sb.mkdir(&path)?;
                            Ok(json!({"entry": entry(&sb.stat(&path)?, &accounts)}))
                        }
                    },
                    _ => {
                        sb.remove(&path, true)?;
                        Ok(json!({}))
                    }
                }
            })
            .await
            .unwrap_or_else(|e| Err(RpcError::new(Code::Internal, e.to_string())))
        }
        "Move" => {
            let req: MoveRequest = match connect::decode_unary(&headers, &body) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            let (from, to) = (
                absolute(&home, &req.source),
                absolute(&home, &req.destination),
            );
            tokio::task::spawn_blocking(move || -> Result<Value, RpcError> {
                sb.rename(&from, &to)?;
                Ok(json!({"entry": entry(&sb.stat(&to)?, &accounts)}))
            })
            .await
            .unwrap_or_else(|e| Err(RpcError::new(Code::Internal, e.to_string())))
        }
        "WatchDir" => {
            let req: WatchRequest = match connect::decode_stream_request(&headers, &body) {
                Ok(r) => r,
                Err(e) => return connect::stream_error(e),
            };
            return match start_watch(&sb, &home, &req) {
                Ok(rx) => stream_watch(rx),
                Err(e) => connect::stream_error(e),
            };
        }
        "CreateWatcher" => {
            let req: WatchRequest = match connect::decode_unary(&headers, &body) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            start_watch(&sb, &home, &req).map(|rx| {
                let mut b = [0u8; 12];
                let _ = getrandom::fill(&mut b);
                let id = hex::encode(b);
                watchers().insert(
                    id.clone(),
                    Watcher {
                        sandbox: sb.id().to_string(),
                        rx,
                    },
                );
                json!({"watcherId": id})
            })
        }
        "GetWatcherEvents" | "RemoveWatcher" => {
            let req: WatcherRequest = match connect::decode_unary(&headers, &body) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            let mut all = watchers();
            match all.get_mut(&req.watcher_id) {
                Some(w) if w.sandbox == sb.id() => {
                    if method == "RemoveWatcher" {
                        all.remove(&req.watcher_id);
                        Ok(json!({}))
                    } else {
                        let mut events = Vec::new();
                        let mut failed = None;
                        while let Ok(item) = w.rx.try_recv() {
                            match item {
                                Ok(c) => events.push(event_json(&c)),
                                Err(e) => failed = Some(RpcError::from(e)),
                            }
                        }
                        match failed {
                            Some(e) => {
                                all.remove(&req.watcher_id);
                                Err(e)
                            }
                            None => Ok(json!({"events": events})),
                        }
                    }
                }
                _ => Err(RpcError::new(
                    Code::NotFound,
                    format!("watcher {} not found", req.watcher_id),
                )),
            }
        }
        other => Err(RpcError::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{other} does not exist"),
        )),
    };
    connect::unary(result)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchRequest {
    #[serde(default)]
    path: String,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    include_entry: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherRequest {
    watcher_id: String,
}

/// A polling watcher of `CreateWatcher`, drained by `GetWatcherEvents`.
struct Watcher {
    sandbox: String,
    rx: tokio::sync::mpsc::Receiver<Result<sqrx_core::sandbox::Change, sqrx_core::SandboxError>>,
}

fn watchers() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, Watcher>> {
    static WATCHERS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, Watcher>>,
    > = std::sync::OnceLock::new();
    WATCHERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn start_watch(
    sb: &sqrx_core::Sandbox,
    home: &str,
    req: &WatchRequest,
) -> Result<
    tokio::sync::mpsc::Receiver<Result<sqrx_core::sandbox::Change, sqrx_core::SandboxError>>,
    RpcError,
> {
    if req.include_entry {
        // Reported envd 0.5.2 predates includeEntry; refuse rather than ignore.
        return Err(RpcError::invalid("includeEntry is not supported"));
    }
    let path = absolute(home, &req.path);
    match sb.stat(&path) {
        Ok(st) if st.kind != "dir" => return Err(not_a_dir(&path)),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(sb.watch_dir(&path, req.recursive)?)
}

/// envd's `FilesystemEvent` of a change.
fn event_json(c: &sqrx_core::sandbox::Change) -> Value {
    use sqrx_core::sandbox::ChangeKind;
    let kind = match c.kind {
        ChangeKind::Create => "EVENT_TYPE_CREATE",
        ChangeKind::Write => "EVENT_TYPE_WRITE",
        ChangeKind::Remove => "EVENT_TYPE_REMOVE",
        ChangeKind::Chmod => "EVENT_TYPE_CHMOD",
    };
    json!({"name": c.name, "type": kind})
}

/// `WatchDir`'s stream: `{"start": {}}`, then the changes as they are seen.
fn stream_watch(
    mut rx: tokio::sync::mpsc::Receiver<
        Result<sqrx_core::sandbox::Change, sqrx_core::SandboxError>,
    >,
) -> Response {
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Value, RpcError>>(64);
    tokio::spawn(async move {
        if tx.send(Ok(json!({"start": {}}))).await.is_err() {
            return;
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(50), rx.recv()).await;
            let msg = match next {
                Err(_) => Ok(json!({"keepalive": {}})),
                Ok(Some(Ok(c))) => Ok(json!({"filesystem": event_json(&c)})),
                Ok(Some(Err(e))) => Err(RpcError::from(e)),
                Ok(None) => return,
            };
            let end = msg.is_err();
            if tx.send(msg).await.is_err() || end {
                return;
            }
        }
    });
    connect::stream(out)
}

/// An error of `/files` (envd's shape: `{"code": <status>, "message": ...}`).
fn files_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"code": status.as_u16(), "message": message.into()})),
    )
        .into_response()
}

fn files_error_of(e: sqrx_core::SandboxError) -> Response {
    let status = crate::error::ApiError::status_of(e.kind());
    files_error(status, e.to_string())
}

/// The query of `/files`.
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    signature_expiration: Option<i64>,
}

/// A signed file URL's signature: `v1_` and the unpadded base64 of
/// `sha256("{path}:{read|write}:{user}:{access token}[:{expiration}]")`.
fn signature(path: &str, op: &str, user: &str, token: &str, expiration: Option<i64>) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let raw = match expiration {
        Some(e) => format!("{path}:{op}:{user}:{token}:{e}"),
        None => format!("{path}:{op}:{user}:{token}"),
    };
    let digest = sha2::Sha256::digest(raw.as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The sandbox of a `/files` request: by its access token, or (a signed URL, which carries
/// no sandbox header when every sandbox shares one URL) the sandbox whose token signed it.
async fn files_sandbox(
    state: &AppState,
    headers: &HeaderMap,
    q: &FilesQuery,
    op: &str,
) -> Result<sqrx_core::Sandbox, Response> {
    let Some(given) = q
        .signature
        .as_deref()
        .filter(|_| !headers.contains_key("x-access-token"))
    else {
        return super::process::sandbox_for(state, headers).await;
    };
    if let Some(exp) = q.signature_expiration
        && exp < chrono::Utc::now().timestamp()
    {
        return Err(files_error(
            StatusCode::UNAUTHORIZED,
            "the signature has expired",
        ));
    }
    let named = super::sandbox_id(headers);
    let candidates = state
        .blocking(move |rt| {
            Ok::<_, sqrx_core::SandboxError>(match named {
                Some(id) => rt.get(&id).into_iter().collect::<Vec<_>>(),
                None => rt.list(),
            })
        })
        .await
        .unwrap_or_default();
    let path = q.path.clone().unwrap_or_default();
    let user = q.username.clone().unwrap_or_default();
    for sb in candidates {
        let info = sb.info();
        if info.status != "running" {
            continue;
        }
        let token = super::access_token(state, sb.id(), info.created);
        let expected = signature(&path, op, &user, &token, q.signature_expiration);
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            expected.as_bytes(),
        )) {
            return Ok(sb);
        }
    }
    Err(files_error(
        StatusCode::UNAUTHORIZED,
        "the signature matches no running sandbox",
    ))
}

/// `GET /files?path=`: the file's bytes.
pub async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FilesQuery>,
) -> Response {
    let sb = match files_sandbox(&state, &headers, &q, "read").await {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    let Acting { sb, home, .. } = match acting(sb, &headers, q.username.as_deref()).await {
        Ok(acting) => acting,
        Err(e) => return files_error_of(e),
    };
    let Some(path) = q.path.as_deref().map(|p| absolute(&home, p)) else {
        return files_error(StatusCode::BAD_REQUEST, "path is required");
    };
    let read = tokio::task::spawn_blocking(move || {
        let st = sb.stat(&path)?;
        if st.kind == "dir" {
            return Err(sqrx_core::SandboxError::Invalid {
                field: "path",
                reason: format!("{path} is a directory"),
            });
        }
        sb.read_file(&path)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(Err(e)) => files_error_of(e),
        Err(e) => files_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The most an upload may hold (after decompression).
const UPLOAD_LIMIT: usize = 4 << 30;

/// `POST /files[?path=]`: multipart (field `file`, the file name the destination path when
/// `path` is absent; many files at once), or the raw bytes of one file
/// (`application/octet-stream`, `path` required, `Content-Encoding: gzip` allowed). Parents
/// are created; the answer lists the written entries.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FilesQuery>,
    req: axum::extract::Request,
) -> Response {
    let sb = match files_sandbox(&state, &headers, &q, "write").await {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    let Acting { sb, home, .. } = match acting(sb, &headers, q.username.as_deref()).await {
        Ok(acting) => acting,
        Err(e) => return files_error_of(e),
    };
    let octet = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if octet {
        let Some(path) = q.path.as_deref().map(|p| absolute(&home, p)) else {
            return files_error(StatusCode::BAD_REQUEST, "path is required for a raw upload");
        };
        let raw = match axum::body::to_bytes(req.into_body(), UPLOAD_LIMIT).await {
            Ok(b) => b,
            Err(e) => return files_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let gzip = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
        let data = if gzip {
            let mut out = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(
                    flate2::read::GzDecoder::new(&raw[..]),
                    UPLOAD_LIMIT as u64,
                ),
                &mut out,
            );
            if let Err(e) = read {
                return files_error(StatusCode::BAD_REQUEST, format!("bad gzip body: {e}"));
            }
            Bytes::from(out)
        } else {
            raw
        };
        return write_all(sb, vec![(path, data)]).await;
    }
    let multipart =
        <axum::extract::Multipart as axum::extract::FromRequest<AppState>>::from_request(
            req, &state,
        )
        .await;
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => return files_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut files: Vec<(String, Bytes)> = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.file_name().map(str::to_string);
                let path = match (&q.path, name) {
                    (Some(p), _) => p.clone(),
                    (None, Some(n)) if !n.is_empty() => n,
                    _ => {
                        return files_error(
                            StatusCode::BAD_REQUEST,
                            "a part without a file name and no path",
                        );
                    }
                };
                match field.bytes().await {
                    Ok(b) => files.push((absolute(&home, &path), b)),
                    Err(e) => return files_error(StatusCode::BAD_REQUEST, e.body_text()),
                }
            }
            Ok(None) => break,
            Err(e) => return files_error(StatusCode::BAD_REQUEST, e.body_text()),
        }
    }
    if files.is_empty() {
        return files_error(StatusCode::BAD_REQUEST, "no file in the upload");
    }
    write_all(sb, files).await
}

/// Write `files` (path, bytes) and answer the written entries.
async fn write_all(sb: sqrx_core::Sandbox, files: Vec<(String, Bytes)>) -> Response {
    let written = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (path, data) in files {
            if sb.stat(&path).is_ok_and(|s| s.kind == "dir") {
                return Err(sqrx_core::SandboxError::Invalid {
                    field: "path",
                    reason: format!("{path} is a directory"),
                });
            }
            sb.write_file(&path, &data, 0o644)?;
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            out.push(json!({"path": path, "name": name, "type": "file"}));
        }
        Ok(out)
    })
    .await;
    match written {
        Ok(Ok(entries)) => axum::Json(entries).into_response(),
        Ok(Err(e)) => files_error_of(e),
        Err(e) => files_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_e2b_s_v1_scheme() {
        // sha256("/a.txt:read::tok") in unpadded standard base64.
        let s = signature("/a.txt", "read", "", "tok", None);
        assert!(s.starts_with("v1_") && !s.ends_with('='), "{s}");
        assert_ne!(s, signature("/a.txt", "write", "", "tok", None));
        assert_ne!(s, signature("/a.txt", "read", "", "tok", Some(1)));
        assert_eq!(permissions("dir", 0o755), "drwxr-xr-x");
        assert_eq!(permissions("file", 0o644), "-rw-r--r--");
        assert_eq!(absolute("/root", "x/y"), "/root/x/y");
        assert_eq!(absolute("/home/user/", ""), "/home/user");
        assert_eq!(absolute("/home/user", "/etc/x"), "/etc/x");
    }
}
