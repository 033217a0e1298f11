//! Pseudo-terminals for interactive execs: the child's controlling terminal and window size.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;

/// Make the child of `cmd` a session leader whose controlling terminal is its stdin (the pty
/// slave), so job control, `^C` and window-size changes reach it.
pub fn controlling_terminal(cmd: &mut std::process::Command) {
    // SAFETY: the hook runs in the forked child before exec and only makes two
    // async-signal-safe system calls (setsid, ioctl); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Set the window size of the terminal `fd` (the pty master); the kernel sends `SIGWINCH` to
/// the terminal's foreground process group.
pub fn set_window_size(fd: &impl AsFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
