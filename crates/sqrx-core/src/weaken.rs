//! Deliberately weakened builds, for showing that each escape probe can fail: with the
//! `insecure-weaken` cargo feature (never in a release, never by default), the defences named in
//! `SQRX_WEAKEN` (comma-separated, or `all`) are skipped: masks, caps, seccomp, nnp, fds,
//! dumpable, files, devices, netns, pidns, pivot, nosuid (the user namespace is switched off at run time
//! with `SQRX_ISOLATION=host-root`), and the network's net-refused (refused destinations and
//! other sandboxes), net-input (the host), net-dns (the DNS redirect), net-proxy (the name
//! check), net-flush (emptying names sets on a policy change), net-rebind (refused answers). Without the feature every check is a
//! constant `false` and compiles away.

/// Is the defence `name` switched off?
#[cfg(feature = "insecure-weaken")]
pub fn off(name: &str) -> bool {
    std::env::var("SQRX_WEAKEN").is_ok_and(|v| v.split(',').any(|d| d == name || d == "all"))
}

/// Is the defence `name` switched off? Never, in this build.
#[cfg(not(feature = "insecure-weaken"))]
#[inline(always)]
pub fn off(_name: &str) -> bool {
    false
}
