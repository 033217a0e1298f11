//! The runtime's CA in a sandbox's trust store: done by init, inside the sandbox, as its root
//! (so what it writes belongs to the sandbox), only for sandboxes with secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The distro bundle (Debian, Ubuntu, Alpine): the CA is appended to it in the upper.
pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CA alone (for `NODE_EXTRA_CA_CERTS`, which adds to Node's own roots).
pub const CA_FILE: &str = "/etc/sqrx/egress-ca.crt";

/// The environment of every exec in a sandbox with secrets: TLS clients that do not read the
/// distro bundle by default read these.
pub fn env() -> [(&'static str, &'static str); 4] {
    [
        ("SSL_CERT_FILE", BUNDLE),
        ("REQUESTS_CA_BUNDLE", BUNDLE),
        ("CURL_CA_BUNDLE", BUNDLE),
        ("NODE_EXTRA_CA_CERTS", CA_FILE),
    ]
}

/// Write `path` (its directories made), replacing a symlink instead of following it.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        std::fs::remove_file(path)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)
}

/// Put `ca_pem` in the sandbox's trust store (after the pivot): [`CA_FILE`], and the distro
/// bundle with the CA appended once (a restart or restore finds it there already).
pub(crate) fn install(ca_pem: &str) -> std::io::Result<()> {
    write_file(Path::new(CA_FILE), ca_pem.as_bytes())?;
    // The bundle is often a symlink into /etc/ssl or /usr/share: read through it, write a
    // regular file in its place.
    let mut bundle = std::fs::read_to_string(BUNDLE).unwrap_or_default();
    if !bundle.contains(ca_pem.trim()) {
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(ca_pem);
    }
    write_file(Path::new(BUNDLE), bundle.as_bytes())
}
