//! Passing a file descriptor over a Unix socket (`SCM_RIGHTS`), with the bytes it rides on.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Send `bytes` on `sock` with `fd` attached (the receiver gets its own copy of the fd).
pub fn send_with_fd(sock: &impl AsRawFd, bytes: &[u8], fd: &impl AsRawFd) -> std::io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(bytes)];
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    if sent != bytes.len() {
        // The fd rode on the first byte; the rest goes as plain bytes.
        let rest = &bytes[sent..];
        let iov = [IoSlice::new(rest)];
        sendmsg::<()>(sock.as_raw_fd(), &iov, &[], MsgFlags::empty(), None)?;
    }
    Ok(())
}

/// Receive up to `buf.len()` bytes from `sock` and the fd attached to them, if any.
pub fn recv_with_fd(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in this process for us (SCM_RIGHTS);
                // nothing else owns it, so taking ownership is sound. Extra fds are closed.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn an_fd_crosses_a_socket_pair() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (mut r, mut w) = std::io::pipe().expect("pipe");
        send_with_fd(&a, b"hello", &w).expect("send");
        let mut buf = [0u8; 16];
        let (n, fd) = recv_with_fd(&b, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        let mut copy = std::fs::File::from(fd.expect("an fd"));
        copy.write_all(b"via the copy").expect("write");
        drop(copy);
        w.flush().expect("flush");
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).expect("read");
        assert_eq!(got, "via the copy");
    }
}
