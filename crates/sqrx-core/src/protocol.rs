//! The framed protocol between the host library and a sandbox's `sqrx-init` over its Unix
//! control socket. One connection carries one request.
//!
//! A frame is a kind byte, a big-endian `u32` length and that many payload bytes. Control
//! frames carry JSON; output and stdin frames carry raw bytes.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// Largest frame accepted (output is chunked far below this).
pub const MAX_FRAME: u32 = 16 << 20;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host → init: a [`Request`] (JSON).
    Request = 1,
    /// Init → host: the process started ([`Started`], JSON).
    Started = 2,
    /// Init → host: stdout bytes.
    Stdout = 3,
    /// Init → host: stderr bytes.
    Stderr = 4,
    /// Host → init: stdin bytes.
    Stdin = 5,
    /// Host → init: end of stdin.
    StdinEof = 6,
    /// Init → host: the process ended ([`Exit`], JSON).
    Exit = 7,
    /// Init → host: the request failed ([`Failure`], JSON).
    Error = 8,
    /// Init → host: a reply to a request that has no process (JSON).
    Reply = 9,
    /// Host → init: a new terminal size for a pty exec ([`PtySize`], JSON).
    Resize = 10,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Started,
            3 => Kind::Stdout,
            4 => Kind::Stderr,
            5 => Kind::Stdin,
            6 => Kind::StdinEof,
            7 => Kind::Exit,
            8 => Kind::Error,
            9 => Kind::Reply,
            10 => Kind::Resize,
            _ => return None,
        })
    }
}

/// What the host asks init to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is init alive and serving?
    Ping,
    /// Run a process and stream its output until it exits.
    Exec(ExecSpec),
    /// Start a process in the background; the reply carries its pid.
    Spawn(ExecSpec),
    /// Wait for a background process started with `Spawn`.
    Wait {
        /// Its pid (inside the sandbox).
        pid: i32,
        /// Give up after this many milliseconds (a `timeout` failure; the process stays
        /// waitable). `None` waits as long as it takes.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Send a signal to a process (its whole process group when `group`).
    Signal {
        /// The pid inside the sandbox.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// Signal the process group instead of the process.
        group: bool,
    },
    /// Connect to `127.0.0.1:port` inside the sandbox's network namespace; the reply (a
    /// [`Kind::Reply`] frame) carries the connected socket as an `SCM_RIGHTS` fd.
    Connect {
        /// The TCP port.
        port: u16,
        /// Give up after this many milliseconds.
        timeout_ms: u64,
    },
}

/// A process to run inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Program and arguments; the program is looked up in the sandbox's `PATH`.
    pub argv: Vec<String>,
    /// The complete environment of the process.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox; empty: the home directory of `user` (or `/`).
    pub cwd: String,
    /// Run as this user of the sandbox's `/etc/passwd` (a name or a numeric uid) with its
    /// primary and supplementary groups; `None`: the sandbox's root. Init sets `HOME`, `USER`
    /// and `LOGNAME` from the entry unless `env` has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Kill the process group after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Bytes of each stream sent back; the rest is read and dropped.
    pub output_cap: u64,
    /// Whether the host will send stdin frames (otherwise stdin is `/dev/null`).
    pub stdin: bool,
    /// Run on a pseudo-terminal of this size (stdin, stdout and stderr are the terminal; its
    /// output comes as stdout frames; the host may send stdin and resize frames).
    #[serde(default)]
    pub pty: Option<PtySize>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// The process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Its pid inside the sandbox.
    pub pid: i32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code when it exited normally.
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
    /// The timeout fired and its process group was killed.
    pub timed_out: bool,
    /// stdout passed the cap.
    pub stdout_truncated: bool,
    /// stderr passed the cap.
    pub stderr_truncated: bool,
    /// The exec's sequence number in this sandbox (from 1; 0 for background processes).
    #[serde(default)]
    pub seq: u64,
}

/// Why init could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// A human-readable message.
    pub message: String,
}

/// The kind of a [`Failure`]. On the wire it is the snake_case name (`"not_found"`, ...); a
/// host that receives a kind it does not know refuses the frame as a protocol error, never
/// guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No such program, working directory or process.
    NotFound,
    /// The request is malformed (empty command, bad signal, undecodable frame).
    Invalid,
    /// The program may not be executed.
    Permission,
    /// A pids or memory limit of the sandbox stopped it.
    Limit,
    /// A wait ran out of time (the process still runs).
    Timeout,
    /// Nothing accepts connections on the port asked for.
    Refused,
    /// Anything else: init's own fault.
    Internal,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::NotFound,
        FailureKind::Invalid,
        FailureKind::Permission,
        FailureKind::Limit,
        FailureKind::Timeout,
        FailureKind::Refused,
        FailureKind::Internal,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not_found",
            FailureKind::Invalid => "invalid",
            FailureKind::Permission => "permission",
            FailureKind::Limit => "limit",
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line init writes, as JSON, on the stdout pipe the host reads while the sandbox starts:
/// first [`Startup::Forked`] from the outer stage, then [`Startup::Ready`] from the server, or
/// [`Startup::Failed`] from whichever stage could not go on (its details also go to
/// `init.log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Startup {
    /// The outer stage forked the sandbox's PID 1.
    Forked {
        /// PID 1's host pid.
        pid: i32,
    },
    /// The server is confined and accepts on the control socket.
    Ready,
    /// Init could not start the sandbox.
    Failed {
        /// Why.
        kind: StartupFailureKind,
        /// What failed, for a human.
        message: String,
    },
}

/// The kind of a [`Startup::Failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartupFailureKind {
    /// The kernel cannot isolate the sandbox with a user namespace and idmapped mounts.
    IsolationUnsupported,
    /// Any other step of building the sandbox failed.
    Setup,
}

impl Startup {
    /// The line for this status (JSON and a newline).
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising this enum cannot fail (no maps with non-string keys, no foreign types);
        // an empty object would still be an unknown line, which the host reports as a failure.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }

    /// Parse one line; `None` when it is not a status this host knows.
    pub fn parse(line: &str) -> Option<Startup> {
        serde_json::from_str(line.trim_end()).ok()
    }
}

/// One frame as bytes.
pub fn encode_frame(kind: Kind, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind as u8);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Decode the frame at the start of `bytes`, reading the rest of it from `r` when `bytes` holds
/// only its beginning.
pub fn finish_frame(bytes: &[u8], r: &mut impl Read) -> std::io::Result<(Kind, Vec<u8>)> {
    let mut head = [0u8; 5];
    let have = bytes.len().min(5);
    head[..have].copy_from_slice(&bytes[..have]);
    if have < 5 {
        r.read_exact(&mut head[have..])?;
    }
    let (kind, len) = check_head(head)?;
    let payload = read_payload(&mut bytes[have..].chain(r), len)?;
    Ok((kind, payload))
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Write a JSON frame.
pub fn write_json(w: &mut impl Write, kind: Kind, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_frame(w, kind, &bytes)
}

/// Read one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(Kind, Vec<u8>)>> {
    let mut head = [0u8; 5];
    // The end of the stream is clean only between frames: a head cut short is an error.
    loop {
        match r.read(&mut head[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    r.read_exact(&mut head[1..])?;
    let (kind, len) = check_head(head)?;
    Ok(Some((kind, read_payload(r, len)?)))
}

/// The kind and payload length a frame head declares, refused before anything is read or
/// allocated for the payload when the kind is unknown or the length is past [`MAX_FRAME`].
fn check_head(head: [u8; 5]) -> std::io::Result<(Kind, u32)> {
    let kind = Kind::from_u8(head[0]).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unknown frame kind {}", head[0]),
        )
    })?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    Ok((kind, len))
}

/// Memory reserved up front for a payload: the buffer grows with the bytes that actually
/// arrive, so a peer that declares a large frame and sends little costs little.
const PAYLOAD_RESERVE: usize = 64 * 1024;

fn short_payload(got: usize, len: u32) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("frame of {len} bytes ended after {got}"),
    )
}

fn read_payload(r: &mut impl Read, len: u32) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity((len as usize).min(PAYLOAD_RESERVE));
    r.take(u64::from(len)).read_to_end(&mut payload)?;
    if payload.len() != len as usize {
        return Err(short_payload(payload.len(), len));
    }
    Ok(payload)
}

/// Async versions for the host side.
pub mod tokio_io {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{Kind, PAYLOAD_RESERVE, check_head, short_payload};

    /// Write one frame.
    pub async fn write_frame(
        w: &mut (impl AsyncWrite + Unpin),
        kind: Kind,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let len =
            u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
        let mut buf = Vec::with_capacity(5 + payload.len());
        buf.push(kind as u8);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(payload);
        w.write_all(&buf).await?;
        w.flush().await
    }

    /// Write a JSON frame.
    pub async fn write_json(
        w: &mut (impl AsyncWrite + Unpin),
        kind: Kind,
        value: &impl serde::Serialize,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_frame(w, kind, &bytes).await
    }

    /// Read one frame; `None` at a clean end of stream.
    pub async fn read_frame(
        r: &mut (impl AsyncRead + Unpin),
    ) -> std::io::Result<Option<(Kind, Vec<u8>)>> {
        let mut head = [0u8; 5];
        // The end of the stream is clean only between frames: a head cut short is an error.
        if r.read(&mut head[..1]).await? == 0 {
            return Ok(None);
        }
        r.read_exact(&mut head[1..]).await?;
        let (kind, len) = check_head(head)?;
        let mut payload = Vec::with_capacity((len as usize).min(PAYLOAD_RESERVE));
        r.take(u64::from(len)).read_to_end(&mut payload).await?;
        if payload.len() != len as usize {
            return Err(short_payload(payload.len(), len));
        }
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let req = Request::Exec(ExecSpec {
            argv: vec!["echo".into(), "hi".into()],
            env: vec![("A".into(), "b".into())],
            cwd: "/".into(),
            timeout_ms: Some(5),
            output_cap: 10,
            stdin: false,
            pty: None,
            user: Some("user".into()),
        });
        write_json(&mut buf, Kind::Request, &req).expect("write");
        write_frame(&mut buf, Kind::Stdout, b"raw\x00bytes").expect("write");
        let mut r = &buf[..];
        let (k, p) = read_frame(&mut r).expect("read").expect("frame");
        assert_eq!(k, Kind::Request);
        assert_eq!(serde_json::from_slice::<Request>(&p).expect("json"), req);
        assert_eq!(
            read_frame(&mut r).expect("read"),
            Some((Kind::Stdout, b"raw\x00bytes".to_vec()))
        );
        assert_eq!(read_frame(&mut r).expect("read"), None);
    }

    #[test]
    fn failure_kinds_keep_their_wire_names() {
        let names: Vec<String> = FailureKind::ALL
            .iter()
            .map(|k| serde_json::to_string(k).expect("json"))
            .collect();
        assert_eq!(
            names,
            [
                "\"not_found\"",
                "\"invalid\"",
                "\"permission\"",
                "\"limit\"",
                "\"timeout\"",
                "\"refused\"",
                "\"internal\""
            ]
        );
        for k in FailureKind::ALL {
            assert_eq!(serde_json::to_string(&k).expect("json"), format!("\"{k}\""));
        }
        assert!(serde_json::from_str::<Failure>(r#"{"kind":"exploded","message":""}"#).is_err());
    }

    #[test]
    fn startup_statuses_are_lines_of_json() {
        for status in [
            Startup::Forked { pid: 42 },
            Startup::Ready,
            Startup::Failed {
                kind: StartupFailureKind::IsolationUnsupported,
                message: "cannot create a user namespace: EPERM".into(),
            },
        ] {
            let line = String::from_utf8(status.to_line()).expect("utf-8");
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Startup::parse(&line), Some(status));
        }
        assert_eq!(
            Startup::Forked { pid: 7 }.to_line(),
            b"{\"status\":\"forked\",\"pid\":7}\n"
        );
        assert_eq!(Startup::parse("ready\n"), None);
        assert_eq!(
            Startup::parse(r#"{"status":"failed","kind":"odd","message":""}"#),
            None
        );
        assert_eq!(Startup::parse(""), None);
    }

    /// A reader that serves `data` and fails the test if it is ever handed a buffer larger
    /// than `largest` (a payload buffer allocated to a declared length would be).
    struct Stingy<'a> {
        data: &'a [u8],
        largest: usize,
    }

    impl Read for Stingy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(
                buf.len() <= self.largest,
                "a read into {} bytes: the payload was allocated to its declared length",
                buf.len()
            );
            self.data.read(buf)
        }
    }

    #[test]
    fn a_large_declared_length_is_not_allocated_up_front() {
        let mut head = vec![Kind::Stdout as u8];
        head.extend_from_slice(&MAX_FRAME.to_be_bytes());
        head.extend_from_slice(b"only a few bytes");
        let mut r = Stingy {
            data: &head,
            largest: 2 * PAYLOAD_RESERVE,
        };
        let e = read_frame(&mut r).expect_err("short payload");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        let mut r = Stingy {
            data: &head[1..],
            largest: 2 * PAYLOAD_RESERVE,
        };
        assert!(finish_frame(&head[..1], &mut r).is_err());
    }

    #[test]
    fn a_length_past_the_limit_is_refused_before_the_payload_is_read() {
        let mut bytes = vec![Kind::Request as u8];
        bytes.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        bytes.extend_from_slice(&[0u8; 64]);
        let mut r = Stingy {
            data: &bytes,
            largest: 5,
        };
        let e = read_frame(&mut r).expect_err("too large");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(r.data.len() == 64, "the payload was read");
        let e = finish_frame(&bytes, &mut &[][..]).expect_err("too large");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn a_head_cut_short_is_an_error_not_the_end() {
        for cut in 1..5 {
            let bytes = [Kind::Stdout as u8, 0, 0, 0, 1];
            assert!(read_frame(&mut &bytes[..cut]).is_err(), "{cut}");
        }
        assert_eq!(read_frame(&mut &[][..]).expect("clean end"), None);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut r = &[42u8, 0, 0, 0, 0][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[3u8, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[3u8, 0, 0, 0, 9, 1][..];
        assert!(read_frame(&mut r).is_err(), "truncated payload");
    }
}
