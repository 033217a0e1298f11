//! Running the server: open the runtime, make the base layer if needed, listen, and shut down
//! gracefully on SIGTERM/SIGINT (in-flight requests finish within the grace period; sandboxes
//! keep running and the next server re-attaches them). HTTP is served by one single-threaded
//! runtime per core, which reads `/proxy` requests itself (see [`crate::connection`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use sqrx_core::{Runtime, RuntimeConfig};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::app::app;
use crate::config::ServerConfig;
use crate::connection::{self, Routes};
use crate::state::AppState;

/// How often expired sandboxes are reaped.
const REAP_INTERVAL: Duration = Duration::from_secs(10);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime could not open the data directory.
    #[error("cannot open the runtime in {dir}: {source}")]
    Runtime {
        /// The data directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: sqrx_core::SandboxError,
    },
    /// The shared state (JavaScript executor, session templates) could not be built.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tenant database could not be opened or migrated.
    #[error("tenant database: {reason}")]
    Database {
        /// Why.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("cannot start tokio: {0}")]
    Tokio(#[source] std::io::Error),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The signal handlers could not be installed.
    #[error("cannot watch SIGTERM/SIGINT: {0}")]
    Signal(#[source] std::io::Error),
    /// A startup task failed.
    #[error("startup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The listen address is reachable from other hosts and no auth token is set.
    #[error(
        "refusing to listen on {addr} without an auth token: anyone who can reach that \
         address could run code on this host. Set --auth-token (or SQRX_AUTH_TOKEN), listen \
         on a loopback address (127.0.0.1, [::1]), or pass --insecure-no-auth to accept the risk"
    )]
    Unauthenticated {
        /// The non-loopback address.
        addr: SocketAddr,
    },
}

/// Refuse to serve an address other hosts can reach without a token, unless the operator
/// opted out (`--insecure-no-auth`, then loudly logged).
pub fn check_exposure(
    config: &ServerConfig,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<(), ServeError> {
    if config.auth_token.is_some() {
        return Ok(());
    }
    let Some(addr) = addrs.into_iter().find(|a| !a.ip().is_loopback()) else {
        return Ok(());
    };
    if !config.insecure_no_auth {
        return Err(ServeError::Unauthenticated { addr });
    }
    tracing::warn!(
        %addr,
        "INSECURE: --insecure-no-auth: serving a non-loopback address WITHOUT authentication; \
         anyone who can reach it can run code on this host"
    );
    Ok(())
}

/// Run the server until SIGTERM or SIGINT: startup and background work on a multi-threaded
/// tokio runtime, HTTP on one single-threaded runtime per core (see `serve_shard`).
pub fn run(config: ServerConfig, data_dir: PathBuf) -> Result<(), ServeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sqrx-server")
        .build()
        .map_err(ServeError::Tokio)?
        .block_on(serve(config, data_dir))
}

/// Open the tenant database of `config` (SQLite in `data_dir` unless `--database-url`).
pub async fn open_tenants(
    config: &ServerConfig,
    data_dir: &std::path::Path,
) -> Result<crate::tenants::Tenants, ServeError> {
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| crate::tenants::Tenants::default_url(data_dir));
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(data_dir).map_err(|source| ServeError::Database {
            reason: format!("cannot create {}: {source}", data_dir.display()),
        })?;
    }
    let tenants = crate::tenants::Tenants::open(&url)
        .await
        .map_err(|e| ServeError::Database {
            reason: e.to_string(),
        })?;
    tracing::info!(
        backend = tenants.store().backend(),
        keys = tenants.keys_exist(),
        "tenant database ready"
    );
    Ok(tenants)
}

/// Open the runtime for `config` on `data_dir`, creating the base layer when asked and missing.
pub async fn open_runtime(config: &ServerConfig, data_dir: PathBuf) -> Result<Runtime, ServeError> {
    let mut rc = RuntimeConfig::new(&data_dir);
    rc.max_sandboxes = config.max_sandboxes;
    rc.isolation = config.isolation;
    rc.network = config.network.runtime.clone();
    rc.remote = config.remote.clone();
    // Sandboxes the server starts (sessions too) get the server's defaults.
    rc.default_memory_mb = Some(config.limits.default_memory_mb);
    rc.default_pids_max = Some(config.limits.default_pids_max);
    let bootstrap = config.bootstrap;
    let dir = data_dir.clone();
    let rt = tokio::task::spawn_blocking(move || {
        let rt = Runtime::open(rc)?;
        // At start a bad `<data>/secrets.json` stops the server, naming the file and the secret.
        rt.reload_secrets()?;
        Ok(rt)
    })
    .await?
    .map_err(|source| ServeError::Runtime { dir, source })?;
    // New layers and snapshots go up to the bucket in the background (docs/s3.md).
    match rt.start_pusher() {
        Ok(true) => tracing::info!("pushing new layers and snapshots to the bucket"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "the background pusher did not start"),
    }
    if bootstrap {
        let store_rt = rt.clone();
        match tokio::task::spawn_blocking(move || store_rt.layers().ensure_base()).await? {
            Ok(layer) => {
                tracing::info!(layer = %layer.name, digest = %layer.digest, "base layer ready")
            }
            // The server is still useful (layers can be uploaded); say why creates will fail.
            Err(e) => tracing::error!(error = %e, "cannot create the base layer 000-base"),
        }
    }
    Ok(rt)
}

/// SIGTERM and SIGINT handlers, installed before the server says it is listening (a signal
/// that arrives between the two would otherwise kill the process outright).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Self, ServeError> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(ServeError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(ServeError::Signal)?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Serve until SIGTERM or SIGINT.
pub async fn serve(config: ServerConfig, data_dir: PathBuf) -> Result<(), ServeError> {
    // Before anything is touched: an exposed server without a token does not start.
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(config.listen.as_str())
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen.clone(),
            source,
        })?
        .collect();
    let tenants = open_tenants(&config, &data_dir).await?;
    if !tenants.keys_exist() {
        check_exposure(&config, resolved)?;
    }
    let rt = open_runtime(&config, data_dir.clone()).await?;
    let reaper = rt.clone();
    let reaped = tokio::task::spawn_blocking(move || reaper.reap()).await?;
    if !reaped.is_empty() {
        tracing::info!(sandboxes = ?reaped, "reaped expired sandboxes");
    }
    rt.start_reaper(REAP_INTERVAL);
    let signals = Signals::install()?;
    let grace = config.shutdown_grace;
    let listen = config.listen.clone();
    let state = AppState::new(rt, config)?;
    state.set_tenants(tenants);
    let bind_error = |source| ServeError::Bind {
        addr: listen.clone(),
        source,
    };
    // One HTTP thread per core, each accepting on a listening socket of its own, all on the
    // same port (SO_REUSEPORT: the kernel spreads connections evenly over them).
    let addr = free_address(&listen).await.map_err(bind_error)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        listeners.push(reuseport_listener(addr).map_err(bind_error)?);
    }
    tracing::info!(%addr, threads, data_dir = %data_dir.display(), "listening");
    // One line on stdout for scripts and tests that asked for port 0.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "sqrx: listening on http://{addr}");
    let _ = out.flush();

    // SIGHUP: read <data>/secrets.json again (sq-sandbox's behaviour).
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    let reloader = state.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reloader.blocking(|rt| rt.reload_secrets()).await {
                Ok(n) => tracing::info!(secrets = n, "SIGHUP: secrets read again"),
                Err(e) => tracing::error!(error = %e.message, "SIGHUP: secrets unchanged"),
            }
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signals.recv().await;
        let _ = stop_tx.send(true);
    });
    let router = app(state.clone());
    let mut shards = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (router, state, stop) = (router.clone(), state.clone(), stop_rx.clone());
        let shard = std::thread::Builder::new()
            .name(format!("sqrx-http-{i}"))
            .spawn(move || serve_shard(listener, router, state, stop))
            .map_err(ServeError::Tokio)?;
        shards.push(shard);
    }
    let served = tokio::task::spawn_blocking(move || {
        for shard in shards {
            match shard.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ServeError::Serve(std::io::Error::other(
                        "an HTTP thread panicked",
                    )));
                }
            }
        }
        Ok(())
    });
    let mut deadline = stop_rx;
    tokio::select! {
        r = served => r??,
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "requests still running after the grace period; dropping them");
        }
    }
    tracing::info!("stopped; sandboxes keep running");
    Ok(())
}

/// The address to listen on for `listen` (`HOST:PORT`, port 0 for any): the first address it
/// resolves to that is free, with the port the kernel picked for port 0. A plain socket is
/// bound to find out, so an address any other socket holds is refused (EADDRINUSE) as usual,
/// even one held by another server that also uses SO_REUSEPORT.
async fn free_address(listen: &str) -> std::io::Result<SocketAddr> {
    let mut last = std::io::Error::other("the address resolves to nothing");
    for wanted in tokio::net::lookup_host(listen).await? {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(wanted),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        probe.set_reuse_address(true)?;
        match probe.bind(&wanted.into()) {
            Ok(()) => {
                return probe
                    .local_addr()?
                    .as_socket()
                    .ok_or_else(|| std::io::Error::other("not an IP address"));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A non-blocking listening socket on `addr` that the other HTTP threads' sockets share
/// (`SO_REUSEPORT`; the kernel only lets the same user join).
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serve connections from `listener` on this thread, on a runtime of its own, until `stop`
/// (then the open requests finish). A connection is served where it was accepted from start
/// to end, its upstream connections included: no task moves between threads, as an nginx
/// worker. Tasks a request spawns run on the same thread; blocking calls go to this runtime's
/// blocking pool; the server's background work (reapers) stays on the main runtime.
fn serve_shard(
    listener: std::net::TcpListener,
    router: Router,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Tokio)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Serve)?;
        let connections = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (tcp, client) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            // Responses and relayed frames are written whole: Nagle would only hold back
            // the last small segment of each (nginx sets TCP_NODELAY on keep-alive
            // connections too).
            let _ = tcp.set_nodelay(true);
            let Ok(local) = tcp.local_addr() else {
                continue;
            };
            let routes = Routes {
                router: router.clone(),
                state: state.clone(),
                client,
                local,
            };
            connections.spawn(connection::serve(tcp, client, routes, stop.clone()));
        }
        drop(listener);
        connections.close();
        connections.wait().await;
        Ok(())
    })
}

/// After a failed accept: a connection the client gave up on is nothing; anything else
/// (out of file descriptors, say) is logged and accepting pauses for a second, as axum does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
