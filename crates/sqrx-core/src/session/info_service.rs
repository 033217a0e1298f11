//! The built-in session service: a WebSocket server, run inside the sandbox by the sqrx
//! binary itself, that sends every client the sandbox's hostname, layers, limits and uptime
//! once a second (like squarex's placeholder service).
//!
//! The session manager puts the binary that serves as init into a layer (with the libraries it
//! needs) and starts it inside the sandbox with [`INFO_SERVICE_ENV`] set to the port.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Set to a port number to make the sqrx binary run the info service.
pub const INFO_SERVICE_ENV: &str = "SQRX_INFO_SERVICE_PORT";

/// The info service's main ([`crate::roles::Role::InfoService`]): serve on the port
/// [`INFO_SERVICE_ENV`] names; returns the exit code.
pub(crate) fn main() -> i32 {
    let port = std::env::var_os(INFO_SERVICE_ENV).unwrap_or_default();
    match port.to_str().and_then(|p| p.parse::<u16>().ok()) {
        Some(port) => serve(port),
        None => {
            eprintln!("sqrx info service: {INFO_SERVICE_ENV} must be a port number");
            2
        }
    }
}

fn serve(port: u16) -> i32 {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sqrx info service: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    let started = Instant::now();
    for stream in listener.incoming().flatten() {
        let _ = std::thread::Builder::new().spawn(move || client(stream, started));
    }
    1
}

fn info(started: Instant) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let limits: serde_json::Value = std::env::var("SQRX_LIMITS")
        .ok()
        .and_then(|l| serde_json::from_str(&l).ok())
        .unwrap_or(serde_json::Value::Null);
    let layers: Vec<String> = std::env::var("SQRX_LAYERS")
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    serde_json::json!({
        "hostname": hostname.trim(),
        "layers": layers,
        "limits": limits,
        "uptime_s": started.elapsed().as_secs(),
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
}

fn client(stream: TcpStream, started: Instant) {
    use tungstenite::Message;
    // Readiness probes connect and leave without a handshake: nothing to do for them.
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    let _ = ws.get_mut().set_read_timeout(Some(Duration::from_secs(1)));
    loop {
        if ws.send(Message::text(info(started))).is_err() {
            return;
        }
        // Reading answers pings and notices a close; the timeout paces the updates.
        match ws.read() {
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                return;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
