//! The web console at `/ui/`: a single page (sandboxes, terminal, files, snapshots, sessions,
//! a JavaScript playground) built from the top-level `ui/` folder into `ui/dist` of this
//! crate and compiled into the binary (see `build.rs` and docs/ui.md), so it works offline.
//!
//! The files are public (they hold no secret); every API call the page makes carries the
//! token. `index.html` is revalidated on every load (`no-cache` + `ETag`); the other files
//! have content-hashed names under `assets/` and are cached for good (`immutable`). Text
//! files are sent gzip-compressed to clients that accept it (compressed once, on first use).
//! Every answer carries a Content-Security-Policy that allows only the page's own scripts.
//! The page routes on the URL fragment (`#/sandboxes/ID`), so any other `/ui/...` path
//! without a file extension gets `index.html` and a missing asset gets 404.

use std::io::Write as _;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The console's Content-Security-Policy: scripts, styles, fonts and connections (HTTP and
/// WebSocket) from this origin only; no inline script, no plugins, no framing. Inline styles
/// are allowed because xterm.js sizes its rows with a `<style>` element.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// One embedded file, ready to serve.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
    gzip: Option<Vec<u8>>,
    etag: String,
}

/// Is `path` (a request path) the console's?
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// The `/ui` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(path: &str) -> bool {
    let ct = content_type(path);
    ct.starts_with("text/") || ct == "application/json" || ct == "image/svg+xml"
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::best(),
    );
    encoder.write_all(bytes).ok()?;
    let compressed = encoder.finish().ok()?;
    (compressed.len() < bytes.len()).then_some(compressed)
}

fn assets() -> &'static [Asset] {
    static PREPARED: OnceLock<Vec<Asset>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|&(path, bytes)| Asset {
                path,
                bytes,
                gzip: if compressible(path) && bytes.len() > 512 {
                    gzip(bytes)
                } else {
                    None
                },
                etag: format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32]),
            })
            .collect()
    })
}

/// Does the client accept gzip (`Accept-Encoding` naming `gzip` or `*` without `q=0`)?
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let cache = if asset.path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &asset.gzip {
            Some(gz) if accepts_gzip(headers) => (
                [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
                gz.clone(),
            )
                .into_response(),
            _ => asset.bytes.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, etag);
    }
    security_headers(h);
    response
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn find(path: &str) -> Option<&'static Asset> {
    assets().iter().find(|a| a.path == path)
}

/// `GET /ui/`.
async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(asset) => serve(asset, &headers),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this build has no console (crates/sqrx-server/ui/dist was empty: run npm run build in ui/)",
        )
        .into_response(),
    }
}

/// `GET /ui/{*path}`: a file, else `index.html` for a page path (no extension).
async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if let Some(asset) = find(&path) {
        return serve(asset, &headers);
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("assets/") || last.contains('.') {
        let mut response =
            ApiError::not_found(format!("no console file /ui/{path}")).into_response();
        security_headers(response.headers_mut());
        return response;
    }
    index(headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1.0, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn types_and_paths() {
        assert_eq!(
            content_type("assets/app-X1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert!(compressible("assets/app.css") && !compressible("a.png"));
        assert!(is_ui_path("/ui") && is_ui_path("/ui/assets/x.js") && !is_ui_path("/uix"));
    }

    #[test]
    fn the_console_is_embedded() {
        let index = find("index.html").expect("ui/dist/index.html is committed");
        let text = std::str::from_utf8(index.bytes).expect("utf8");
        assert!(!text.contains("<script>"), "no inline script (CSP)");
        for asset in assets() {
            assert!(
                asset.path == "index.html" || asset.path.starts_with("assets/"),
                "{}",
                asset.path
            );
        }
    }
}
