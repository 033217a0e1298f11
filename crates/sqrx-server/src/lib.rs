//! The sqrx reference server: an HTTP/WebSocket front for `sqrx-core` with the native API
//! (`/v1`), sessions (`/v1/try`, `/{session_id}/ws`), the reverse proxy into sandboxes
//! (`/proxy`), the sq-sandbox compatible API (`/cgi-bin`), in-process JavaScript
//! (`/v1/execute`, `/api/execute`), the multi-tenant API (`/api/admin`, `/api/me`,
//! `/api/sandboxes`: users, keys, quotas, audit), a web console (`/ui/`), an OpenAPI document and Prometheus metrics. It holds no
//! sandbox logic: every handler translates HTTP into core calls (blocking ones on the
//! blocking pool) and core errors into JSON errors.
//!
//! ```no_run
//! use sqrx_server::{AppState, ServerConfig, app};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = sqrx_core::Runtime::open(sqrx_core::RuntimeConfig::new("/var/lib/sqrx"))?;
//! let state = AppState::new(rt, ServerConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app(state)).await?;
//! # Ok(())
//! # }
//! ```

pub mod app;
pub mod auth;
pub mod cgi;
pub mod config;
pub mod connection;
pub mod e2b;
pub mod error;
pub mod extract;
pub mod hosts;
pub mod js_api;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod serve;
pub mod state;
pub mod tenants;
pub mod ui;
pub mod v1;

pub use app::app;
pub use config::{JsIsolation, LogFormat, ServeArgs, ServerConfig};
pub use error::ApiError;
pub use state::AppState;
