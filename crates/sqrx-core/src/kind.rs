//! The stable classification of every error sqrx-core returns, and the classification of
//! I/O errors. Module errors depend on this file only, never on the crate error that gathers
//! them.

/// A stable classification of errors that the server maps to HTTP statuses and the bindings map
/// to exception classes. New kinds may be added; existing ones keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The named thing (layer, sandbox, file) does not exist.
    NotFound,
    /// Something with that name already exists.
    AlreadyExists,
    /// The input is malformed or violates a rule (bad name, corrupt image, escaping path).
    InvalidArgument,
    /// A configured limit would be exceeded.
    LimitExceeded,
    /// The operation conflicts with the current state (for example, in use).
    Conflict,
    /// A required facility is missing on this host (a tool, a kernel feature).
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// The caller or the process lacks a permission.
    PermissionDenied,
    /// The disk (or the filesystem the data directory is on) is full or over its quota
    /// (`ENOSPC`, `EDQUOT`). Nothing half-written is left; freeing space and retrying works.
    InsufficientStorage,
    /// Anything else: a bug or an unexpected failure of the host.
    Internal,
}

impl ErrorKind {
    /// The kind's name as used on every wire (`"NotFound"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::LimitExceeded => "LimitExceeded",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::InsufficientStorage => "InsufficientStorage",
            ErrorKind::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify an I/O error by what the caller can do about it.
pub(crate) fn io_kind(e: &std::io::Error) -> ErrorKind {
    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
        return ErrorKind::InsufficientStorage;
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            ErrorKind::InvalidArgument
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ErrorKind::InsufficientStorage
        }
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_insufficient_storage() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(io_kind(&e), ErrorKind::InsufficientStorage, "{e}");
        }
        let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(io_kind(&e), ErrorKind::InsufficientStorage);
        assert_eq!(
            ErrorKind::InsufficientStorage.as_str(),
            "InsufficientStorage"
        );
    }
}
