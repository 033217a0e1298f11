//! `Sandbox::connect`: a TCP connection to a port on the sandbox's own loopback, with no IP
//! route between host and sandbox. Init connects to `127.0.0.1:PORT` inside the sandbox's
//! network namespace and passes the connected socket back over the control socket
//! (`SCM_RIGHTS`), so it works with any network policy, `none` included.

use std::time::Duration;

use super::SandboxError;
use super::runtime::Sandbox;
use crate::protocol::{self, FailureKind, Kind, Request};

/// How long init tries to connect before reporting the port closed.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Sandbox {
    /// Connect to `127.0.0.1:port` inside the sandbox (blocking). A port nobody listens on is
    /// [`SandboxError::PortClosed`].
    pub fn connect_tcp(
        &self,
        port: u16,
        timeout: Duration,
    ) -> Result<std::net::TcpStream, SandboxError> {
        if self.is_paused() {
            return Err(SandboxError::Paused {
                id: self.id().to_string(),
            });
        }
        let proto = |reason: String| SandboxError::Protocol {
            id: self.id().to_string(),
            reason,
        };
        let socket = self.control_socket();
        let mut s = match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => s,
            Err(e) => {
                if !self.state.init_alive() {
                    return Err(SandboxError::Dead {
                        id: self.id().to_string(),
                    });
                }
                return Err(proto(e.to_string()));
            }
        };
        let _ = s.set_read_timeout(Some(timeout + Duration::from_secs(5)));
        let req = Request::Connect {
            port,
            timeout_ms: timeout.as_millis().min(u64::MAX as u128) as u64,
        };
        protocol::write_json(&mut s, Kind::Request, &req).map_err(|e| proto(e.to_string()))?;
        let mut buf = [0u8; 4096];
        let (n, fd) =
            crate::sys::fdpass::recv_with_fd(&s, &mut buf).map_err(|e| proto(e.to_string()))?;
        if n == 0 {
            return Err(proto("init closed the connection".into()));
        }
        let (kind, payload) =
            protocol::finish_frame(&buf[..n], &mut s).map_err(|e| proto(e.to_string()))?;
        match (kind, fd) {
            (Kind::Reply, Some(fd)) => Ok(std::net::TcpStream::from(fd)),
            (Kind::Error, _) => {
                let f = SandboxError::decode_failure(self.id(), &payload)?;
                if f.kind == FailureKind::Refused {
                    Err(SandboxError::PortClosed {
                        id: self.id().to_string(),
                        port,
                        reason: f.message,
                    })
                } else {
                    Err(SandboxError::Command {
                        id: self.id().to_string(),
                        kind: f.kind,
                        message: f.message,
                    })
                }
            }
            (other, _) => Err(proto(format!("unexpected reply {other:?} to connect"))),
        }
    }

    /// Connect to `127.0.0.1:port` inside the sandbox. See [`Sandbox::connect_tcp`].
    pub async fn connect(&self, port: u16) -> Result<tokio::net::TcpStream, SandboxError> {
        let sandbox = self.clone();
        let std =
            tokio::task::spawn_blocking(move || sandbox.connect_tcp(port, DEFAULT_CONNECT_TIMEOUT))
                .await
                .map_err(|e| SandboxError::Protocol {
                    id: self.id().to_string(),
                    reason: e.to_string(),
                })??;
        std.set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(std))
            .map_err(|e| SandboxError::Protocol {
                id: self.id().to_string(),
                reason: e.to_string(),
            })
    }
}
