//! Work in another network namespace without moving the caller: a short-lived thread joins the
//! namespace, does one thing (create a socket, which stays in the namespace it was made in;
//! write a per-namespace sysctl) and ends.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Run `f` on a new thread that has joined the network namespace `ns`. The caller's threads
/// never change namespace.
pub fn run_in<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let raw = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns with a namespace descriptor borrowed for the whole scope and an
            // integer flag; it changes only this thread, which ends with the scope.
            if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace worker panicked")))
    })
}

/// Move the calling thread into a new network namespace (a thread of its own, for tests that
/// then hold the namespace by a descriptor).
#[cfg(test)]
pub fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare with an integer flag; it changes only the calling thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination a connection had before an nftables `redirect` sent it to this socket
/// (`SO_ORIGINAL_DST`, IPv4).
pub fn original_destination(sock: &impl AsRawFd) -> io::Result<std::net::SocketAddrV4> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `addr`, which is that large, and
    // updates `len`; the descriptor is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    #[test]
    fn a_thread_in_another_namespace_sees_its_interfaces_and_the_caller_does_not_move() {
        if !sqrx_testkit::privileged("sys::netns") {
            return;
        }
        let before = std::fs::read_link("/proc/thread-self/ns/net").expect("own ns");
        // A fresh namespace, held by a descriptor (made on a thread of its own).
        let ns: OwnedFd = std::thread::spawn(|| {
            // SAFETY: unshare with an integer flag on this short-lived thread only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open ns"))
        })
        .join()
        .expect("thread");
        let inside = run_in(ns.as_fd(), || {
            std::fs::read_link("/proc/thread-self/ns/net")
        })
        .expect("run_in");
        assert_ne!(inside, before);
        let ifaces = run_in(ns.as_fd(), || {
            std::fs::read_to_string("/proc/thread-self/net/dev")
        })
        .expect("dev");
        assert_eq!(
            ifaces.lines().count(),
            3,
            "only lo in a fresh namespace: {ifaces}"
        );
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").expect("own ns"),
            before
        );
    }
}
