//! The host <-> worker channel: length-prefixed JSON frames over a Unix stream socket pair.
//!
//! A frame is a little-endian `u32` byte count followed by that many bytes of JSON. The host
//! sends [`ToWorker::Configure`] once, then one [`ToWorker::Run`] at a time; the worker answers
//! [`FromWorker::Ready`] (or [`FromWorker::Failed`]) once, then one [`FromWorker::Done`] per run.
//! Both ends parse typed enums: a frame that does not parse is a protocol error, never guessed
//! at. The host never trusts the worker: a reply is size-capped and read against a deadline.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::js::{Execution, JsLimits, JsRequest};

/// Bumped whenever a frame changes shape; a worker binary of another version says so in its
/// first frame (or cannot parse ours) and the host refuses it with a clear error.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// The descriptor number the channel has in the worker.
pub(crate) const CHANNEL_FD: std::os::fd::RawFd = 3;

/// How often a host waiting for a reply looks at its caller's cancellation.
const CANCEL_SLICE: Duration = Duration::from_millis(50);

/// [`JsLimits`] on the wire (durations as microseconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireLimits {
    memory_bytes: usize,
    timeout_us: u64,
    stack_bytes: usize,
    max_log_bytes: usize,
    max_result_bytes: usize,
}

impl From<&JsLimits> for WireLimits {
    fn from(l: &JsLimits) -> Self {
        WireLimits {
            memory_bytes: l.memory_bytes,
            timeout_us: u64::try_from(l.timeout.as_micros()).unwrap_or(u64::MAX),
            stack_bytes: l.stack_bytes,
            max_log_bytes: l.max_log_bytes,
            max_result_bytes: l.max_result_bytes,
        }
    }
}

impl From<&WireLimits> for JsLimits {
    fn from(w: &WireLimits) -> Self {
        JsLimits {
            memory_bytes: w.memory_bytes,
            timeout: Duration::from_micros(w.timeout_us),
            stack_bytes: w.stack_bytes,
            max_log_bytes: w.max_log_bytes,
            max_result_bytes: w.max_result_bytes,
        }
    }
}

/// What the host sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToWorker {
    /// First frame: who to become and the limits every execution runs under.
    Configure {
        /// The host's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Execution limits.
        limits: WireLimits,
        /// The user the worker switches to when started as root.
        uid: u32,
        /// The group the worker switches to when started as root.
        gid: u32,
    },
    /// Run one script.
    Run(JsRequest),
}

/// [`ToWorker::Run`] as the host sends it: the same frame, serialized from a borrowed request
/// (no copy of the script).
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunRef<'a> {
    /// Run one script.
    Run(&'a JsRequest),
}

/// What the worker sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromWorker {
    /// Confined and ready for [`ToWorker::Run`].
    Ready {
        /// The worker's [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// Setup failed at `step`; the worker exits.
    Failed {
        /// The confinement step (`setresuid`, `seccomp`, ...).
        step: String,
        /// The error.
        message: String,
    },
    /// The outcome of the last [`ToWorker::Run`].
    Done(Execution),
}

/// One frame: the length prefix and the JSON.
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, v).map_err(|e| e.to_string())?;
    let len = u32::try_from(buf.len() - 4)
        .map_err(|_| format!("frame of {} bytes is too large", buf.len() - 4))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed frame: {e}"))
}

/// Read one frame, blocking (the worker's side: it trusts the host). `Ok(None)` on a clean end
/// of stream before a frame starts.
pub(crate) fn read_blocking<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, String> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("end of stream inside a frame header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let len = u32::from_le_bytes(head) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| format!("read a {len}-byte frame: {e}"))?;
    decode(&body).map(Some)
}

/// How a bounded read ended.
pub(crate) enum Bounded<T> {
    /// A whole frame.
    Frame(T),
    /// The peer closed the channel (the worker died or exited).
    Closed,
    /// The deadline passed first.
    Expired,
    /// The caller gave up first.
    Cancelled,
}

/// Read one frame of at most `max` bytes before `deadline` (the host's side: the worker may be
/// stuck, dead or hostile). Anything after the frame is refused.
pub(crate) fn read_bounded<T: DeserializeOwned>(
    sock: &UnixStream,
    max: usize,
    deadline: Instant,
    cancelled: &dyn Fn() -> bool,
) -> Result<Bounded<T>, String> {
    let mut head = [0u8; 4];
    let mut got = 0;
    let mut body: Vec<u8> = Vec::new();
    let mut want: Option<usize> = None;
    loop {
        if let Some(len) = want
            && body.len() == len
        {
            return decode(&body).map(Bounded::Frame);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Bounded::Expired);
        }
        if cancelled() {
            return Ok(Bounded::Cancelled);
        }
        let wait = (deadline - now).min(CANCEL_SLICE);
        // Round up: waking a little after the deadline beats spinning just before it.
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let read = |buf: &mut [u8]| -> Result<Option<usize>, String> {
            match (&*sock).read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Some(0)),
                Err(e) => Err(format!("read: {e}")),
            }
        };
        let Some(len) = want else {
            // The header and as much of the body as has arrived, in one read: the worker
            // sends one frame per request and nothing after it, so bytes past the frame's end
            // are a protocol error, not the start of a next frame. Small, as zeroing a large
            // buffer for every frame would cost more than the read; a typical answer fits.
            let mut chunk = [0u8; 4 << 10];
            let n = match read(&mut chunk)? {
                None => continue,
                Some(0) => return Ok(Bounded::Closed),
                Some(n) => n,
            };
            let h = n.min(head.len() - got);
            head[got..got + h].copy_from_slice(&chunk[..h]);
            got += h;
            if got < head.len() {
                continue;
            }
            let len = u32::from_le_bytes(head) as usize;
            if len > max {
                return Err(format!("a {len}-byte frame is over the {max}-byte cap"));
            }
            let rest = &chunk[h..n];
            if rest.len() > len {
                return Err(format!(
                    "{} bytes after a {len}-byte frame",
                    rest.len() - len
                ));
            }
            want = Some(len);
            // Grown as bytes arrive: a lying length allocates nothing up front.
            body.reserve(len.min(64 << 10));
            body.extend_from_slice(rest);
            continue;
        };
        // The rest of the body, straight into it, never past the frame's end.
        let start = body.len();
        body.resize(start + (len - start).min(64 << 10), 0);
        let n = read(&mut body[start..]);
        body.truncate(start + n.as_ref().ok().copied().flatten().unwrap_or(0));
        match n? {
            None => continue,
            Some(0) => return Ok(Bounded::Closed),
            Some(_) => {}
        }
    }
}

/// Write a whole frame without raising SIGPIPE in the host when the worker is gone.
pub(crate) fn send_all(sock: &UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        match nix::sys::socket::send(
            sock.as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let (a, b) = UnixStream::pair().expect("pair");
        let run = ToWorker::Run(JsRequest::new("1+2"));
        send_all(&a, &encode(&run).expect("encode")).expect("send");
        let back: ToWorker = read_blocking(&mut &b).expect("read").expect("frame");
        assert!(matches!(back, ToWorker::Run(r) if r.code == "1+2"));
        // The borrowed form is the same frame.
        let req = JsRequest::new("6*7").with_input(serde_json::json!({"a": [1]}));
        send_all(&a, &encode(&RunRef::Run(&req)).expect("encode")).expect("send");
        let back: ToWorker = read_blocking(&mut &b).expect("read").expect("frame");
        assert!(matches!(back, ToWorker::Run(r) if r.code == "6*7" && r.input == req.input));

        let far = Instant::now() + Duration::from_secs(5);
        let ready = FromWorker::Ready { protocol: 1 };
        send_all(&b, &encode(&ready).expect("encode")).expect("send");
        match read_bounded::<FromWorker>(&a, 1 << 20, far, &|| false) {
            Ok(Bounded::Frame(FromWorker::Ready { protocol: 1 })) => {}
            _ => panic!("expected Ready"),
        }
        // Over the cap.
        send_all(&b, &encode(&ready).expect("encode")).expect("send");
        assert!(read_bounded::<FromWorker>(&a, 4, far, &|| false).is_err());
        // A frame larger than the socket buffer and the first read, written as it is read.
        let big = FromWorker::Failed {
            step: "s".into(),
            message: "x".repeat(300_000),
        };
        let frame = encode(&big).expect("encode");
        let writer = {
            let b = b.try_clone().expect("clone");
            std::thread::spawn(move || send_all(&b, &frame))
        };
        match read_bounded::<FromWorker>(&a, 1 << 20, far, &|| false) {
            Ok(Bounded::Frame(FromWorker::Failed { message, .. })) => {
                assert_eq!(message.len(), 300_000)
            }
            _ => panic!("expected the large frame"),
        }
        writer.join().expect("writer").expect("send");
        // Bytes after the frame (a second frame nobody asked for).
        let mut two = encode(&ready).expect("encode");
        two.extend(encode(&ready).expect("encode"));
        send_all(&b, &two).expect("send");
        assert!(read_bounded::<FromWorker>(&a, 1 << 20, far, &|| false).is_err());
        // A frame that does not parse as the enum.
        let (a, b) = UnixStream::pair().expect("pair");
        send_all(&b, &encode(&serde_json::json!({"bogus": 1})).expect("e")).expect("send");
        assert!(read_bounded::<FromWorker>(&a, 1 << 20, far, &|| false).is_err());
        // Nothing comes: the deadline, then the caller's cancellation, then a closed channel.
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(matches!(
            read_bounded::<FromWorker>(&a, 1 << 20, soon, &|| false),
            Ok(Bounded::Expired)
        ));
        assert!(matches!(
            read_bounded::<FromWorker>(&a, 1 << 20, far, &|| true),
            Ok(Bounded::Cancelled)
        ));
        drop(b);
        assert!(matches!(
            read_bounded::<FromWorker>(&a, 1 << 20, far, &|| false),
            Ok(Bounded::Closed)
        ));
    }
}
