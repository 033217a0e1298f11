//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa). Served at
//! `/openapi.json` and committed as `docs/openapi.json` (a test keeps the two equal).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{cgi, error, js_api, proxy, v1};

/// Declares the bearer scheme and applies it to every operation but the public ones.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let requirement = utoipa::openapi::security::SecurityRequirement::new::<
            &str,
            [&str; 0],
            &str,
        >("bearer", []);
        for (path, item) in openapi.paths.paths.iter_mut() {
            if crate::auth::PUBLIC_PATHS.contains(&path.as_str()) {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(vec![requirement.clone()]);
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sqrx",
        description = "Fast, composable sandboxes for untrusted code: the native API (/v1), \
            sessions (/v1/try, /{session_id}/ws), the reverse proxy into sandboxes (/proxy), \
            the sq-sandbox compatible API (/cgi-bin) and in-process JavaScript (/v1/execute, \
            /api/execute). Errors are always {\"error\": \"...\"}. See docs/api.md.",
        license(name = "Apache-2.0")
    ),
    paths(
        v1::health::health,
        v1::layers::list, v1::layers::get, v1::layers::upload, v1::layers::remove,
        v1::remote::push, v1::remote::pull, v1::remote::sync, v1::remote::list,
        v1::remote::uploads,
        v1::sandboxes::create, v1::sandboxes::list, v1::sandboxes::get, v1::sandboxes::destroy,
        v1::sandboxes::logs, v1::sandboxes::pause, v1::sandboxes::resume, v1::stats::stats,
        v1::network::set_network,
        v1::secrets::list,
        v1::secrets::put,
        v1::secrets::remove,
        v1::secrets::runtime_list,
        v1::secrets::reload,
        v1::snapshots::snapshot, v1::snapshots::list, v1::snapshots::restore,
        v1::snapshots::activate, v1::snapshots::clone, v1::snapshots::push,
        v1::exec::exec, v1::exec_ws::exec_ws, v1::pty::pty,
        v1::sessions::try_session, v1::sessions::status, v1::sessions::stop,
        v1::sessions::stop_delete, v1::sessions::extend, proxy::session::session_ws, proxy::http::proxy,
        v1::files::get_root, v1::files::get, v1::files::put, v1::files::remove,
        v1::archive::upload, v1::archive::download,
        js_api::execute, js_api::execute_compat,
        cgi::health, cgi::modules, cgi::list_sandboxes, cgi::create, cgi::get, cgi::destroy,
        cgi::exec, cgi::logs, cgi::activate, cgi::snapshot, cgi::restore,
        metrics_doc,
        crate::tenants::routes::create_user, crate::tenants::routes::list_users,
        crate::tenants::routes::show_user, crate::tenants::routes::update_user,
        crate::tenants::routes::delete_user, crate::tenants::routes::create_user_key,
        crate::tenants::routes::list_user_keys, crate::tenants::routes::revoke_any_key,
        crate::tenants::routes::audit, crate::tenants::routes::me,
        crate::tenants::routes::create_my_key, crate::tenants::routes::list_my_keys,
        crate::tenants::routes::revoke_my_key, crate::tenants::routes::list_sandboxes,
        crate::tenants::routes::create_sandbox,
    ),
    components(schemas(
        error::ErrorBody,
        v1::exec_ws::WsExecRequest, v1::exec_ws::ServerFrame, v1::pty::PtyFrame,
        v1::sessions::TryRequest, v1::sessions::TryResponse, v1::sessions::StatusResponse, v1::sessions::ExtendRequest,
        v1::archive::Unpacked,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "v1", description = "The native API"),
        (name = "sessions", description = "Time-limited sessions (squarex): a sandbox running one service, reached over WebSocket"),
        (name = "proxy", description = "HTTP and WebSocket reverse proxy into any port of a sandbox"),
        (name = "js", description = "JavaScript with QuickJS, in-process"),
        (name = "cgi-bin", description = "sq-sandbox compatible API"),
        (name = "ops", description = "Operations"),
    )
)]
pub struct ApiDoc;

/// `GET /metrics`: Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Metrics in the OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
#[allow(
    dead_code,
    reason = "documentation anchor; the handler lives in app.rs"
)]
fn metrics_doc() {}

/// The document as pretty JSON (what `docs/openapi.json` holds, plus a final newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"));
    text.push('\n');
    text
}

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}
