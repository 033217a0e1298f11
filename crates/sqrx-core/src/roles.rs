//! The roles a program can be started in instead of running its own `main`, and the one place
//! that decides which.
//!
//! Some of sqrx's processes are not programs of their own: the runtime starts them by running
//! the init program again with an environment variable that names the role. The init program
//! is `sqrx-init` when the runtime finds one (`RuntimeConfig::init_path`, `SQRX_INIT`, next to
//! the current executable), else the embedding program itself, if that program called
//! [`run_role_if_any`] first thing in `main` (self-exec).
//!
//! | role | named by | what it is |
//! |---|---|---|
//! | [`Role::InfoService`] | `SQRX_INFO_SERVICE_PORT` (the port) | the session info service, inside a session's sandbox |
//! | [`Role::NetworkDaemon`] | `SQRX_RESOLVER` | a runtime's DNS resolver, name-checking proxy and egress proxy |
//! | [`Role::SandboxInit`] | `SQRX_RUN_AS_INIT` (`sqrx-init`: when nothing else is named) | a sandbox's PID 1 and control server |
//! | `Role::JsWorker` (feature `js`) | `SQRX_JS_WORKER` (`sqrx-init`: also its argument `js-worker`) | a confined JavaScript worker |
//!
//! ```no_run
//! // First thing in `main`. In a role, this runs it and exits; otherwise it returns, and the
//! // runtime may now re-execute this program in any role when it finds no sqrx-init.
//! sqrx_core::roles::run_role_if_any();
//! // ... the program itself
//! ```

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once [`run_role_if_any`] returned: this program can be re-executed in any role.
static SELF_EXEC: AtomicBool = AtomicBool::new(false);

/// A role a process started by sqrx plays instead of its program's own `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The built-in session service, run inside a session's sandbox: a WebSocket server that
    /// reports the sandbox to the session's client. Named by
    /// [`INFO_SERVICE_ENV`](crate::session::INFO_SERVICE_ENV), which holds its port.
    InfoService,
    /// A runtime's network daemon (one per data directory, in the namespace that holds the
    /// host side of the sandboxes' links): DNS under the sandboxes' policies, the proxy that
    /// checks TLS SNI and HTTP `Host`, and the egress proxy that puts secrets in requests. Named
    /// by [`RESOLVER_ENV`](crate::network::RESOLVER_ENV).
    NetworkDaemon,
    /// A sandbox's init: PID 1, which builds the sandbox's root and reaps, and the control
    /// server the host talks to ([`crate::init`]). Named by
    /// [`INIT_ENV`](crate::init::INIT_ENV); the role of `sqrx-init` when nothing else is named.
    SandboxInit,
    /// A confined JavaScript worker ([`crate::js::confined`]). Named by
    /// [`WORKER_ENV`](crate::js::confined::WORKER_ENV), and for `sqrx-init` also by its first
    /// argument [`WORKER_ARG`](crate::js::confined::WORKER_ARG).
    #[cfg(feature = "js")]
    JsWorker,
}

impl Role {
    /// The role the environment names, `is_set` telling whether a variable is set; `None`
    /// when it names none.
    ///
    /// The network daemon comes before init: a daemon started by self-exec gets
    /// [`INIT_ENV`](crate::init::INIT_ENV) as well.
    pub fn named_by(is_set: impl Fn(&str) -> bool) -> Option<Role> {
        if is_set(crate::session::INFO_SERVICE_ENV) {
            return Some(Role::InfoService);
        }
        if is_set(crate::network::RESOLVER_ENV) {
            return Some(Role::NetworkDaemon);
        }
        if is_set(crate::init::INIT_ENV) {
            return Some(Role::SandboxInit);
        }
        #[cfg(feature = "js")]
        if is_set(crate::js::confined::WORKER_ENV) {
            return Some(Role::JsWorker);
        }
        None
    }

    /// The role this process's environment names.
    pub fn from_env() -> Option<Role> {
        Role::named_by(|name| std::env::var_os(name).is_some())
    }

    /// The role of the `sqrx-init` program, whose first argument is `first_arg`: a JavaScript
    /// worker for `js-worker`, else the role the environment names, else a sandbox init.
    pub fn of_sqrx_init(first_arg: Option<&OsStr>, is_set: impl Fn(&str) -> bool) -> Role {
        #[cfg(feature = "js")]
        if first_arg == Some(OsStr::new(crate::js::confined::WORKER_ARG)) {
            return Role::JsWorker;
        }
        #[cfg(not(feature = "js"))]
        let _ = first_arg;
        Role::named_by(is_set).unwrap_or(Role::SandboxInit)
    }

    /// Play the role in this process; returns its exit code.
    pub fn run(self) -> i32 {
        match self {
            Role::InfoService => crate::session::info_service_main(),
            Role::NetworkDaemon => crate::network::resolver_main(),
            Role::SandboxInit => crate::init::main(),
            #[cfg(feature = "js")]
            Role::JsWorker => crate::js::confined::worker_main(),
        }
    }
}

/// Call first thing in `main` of a program that uses sqrx: when the environment names a
/// [`Role`], play it and exit; otherwise return, and remember that this program can play every
/// role, so that a [`crate::Runtime`] and a confined JavaScript executor may re-execute it
/// when they find no `sqrx-init`.
///
/// First thing, because a sandbox init forks and must do so while the process has a single
/// thread, and because a role must not run whatever the program does before it.
pub fn run_role_if_any() {
    if let Some(role) = Role::from_env() {
        std::process::exit(role.run());
    }
    SELF_EXEC.store(true, Ordering::Relaxed);
}

/// Whether [`run_role_if_any`] was called in this process (and returned): this program can be
/// re-executed in a role.
pub fn self_exec_enabled() -> bool {
    SELF_EXEC.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |name| names.contains(&name)
    }

    #[test]
    fn each_variable_names_its_role() {
        assert_eq!(Role::named_by(set(&[])), None);
        assert_eq!(
            Role::named_by(set(&["SQRX_INFO_SERVICE_PORT"])),
            Some(Role::InfoService)
        );
        assert_eq!(
            Role::named_by(set(&["SQRX_RESOLVER"])),
            Some(Role::NetworkDaemon)
        );
        assert_eq!(
            Role::named_by(set(&["SQRX_RUN_AS_INIT"])),
            Some(Role::SandboxInit)
        );
        #[cfg(feature = "js")]
        assert_eq!(
            Role::named_by(set(&["SQRX_JS_WORKER"])),
            Some(Role::JsWorker)
        );
    }

    #[test]
    fn a_self_executed_network_daemon_is_not_an_init() {
        // The runtime starts the daemon by self-exec with both variables set.
        assert_eq!(
            Role::named_by(set(&["SQRX_RESOLVER", "SQRX_RUN_AS_INIT"])),
            Some(Role::NetworkDaemon)
        );
    }

    #[test]
    fn sqrx_init_is_an_init_unless_told_otherwise() {
        assert_eq!(Role::of_sqrx_init(None, set(&[])), Role::SandboxInit);
        assert_eq!(
            Role::of_sqrx_init(Some(OsStr::new("other")), set(&[])),
            Role::SandboxInit
        );
        assert_eq!(
            Role::of_sqrx_init(None, set(&["SQRX_RESOLVER"])),
            Role::NetworkDaemon
        );
        assert_eq!(
            Role::of_sqrx_init(None, set(&["SQRX_INFO_SERVICE_PORT"])),
            Role::InfoService
        );
        #[cfg(feature = "js")]
        assert_eq!(
            Role::of_sqrx_init(Some(OsStr::new("js-worker")), set(&[])),
            Role::JsWorker
        );
    }
}
