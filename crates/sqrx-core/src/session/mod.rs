//! Time-limited sessions: a short-lived sandbox running one service for a remote client, which
//! reaches it through the host (see [`crate::Sandbox::connect`]); the session ends by itself.
//!
//! A [`SessionManager`] opens sessions from named [`SessionTemplate`]s: it creates the sandbox,
//! starts the template's command in the background, waits until the service accepts a
//! connection (that moment is `started_at`), and hands out a session id and a random
//! termination token. A reaper ends sessions at `valid_till` and destroys their sandbox;
//! watchers ([`SessionManager::watch`]) learn when a session ends, so proxies can close their
//! clients. Sessions are saved in the data directory (`sessions/<id>.json`), so a manager
//! started again on it takes them over; their sandboxes carry a lifetime as well, so the
//! runtime's reaper removes them even if no manager runs.

mod error;
mod files;
mod info_service;
mod manager;
mod template;

pub use error::SessionError;
pub use info_service::INFO_SERVICE_ENV;
pub(crate) use info_service::main as info_service_main;
pub use manager::{Session, SessionConfig, SessionManager, SessionStatus};
pub use template::{DEFAULT_TEMPLATE, SessionTemplate};
