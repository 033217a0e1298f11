//! `sqrx_core::Error` → `sqrx.SqrxError` and its subclasses, one per [`ErrorKind`].

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use sqrx_core::ErrorKind;

create_exception!(
    sqrx,
    SqrxError,
    PyException,
    "Base class of every sqrx error; `kind` names the core's error kind."
);
create_exception!(
    sqrx,
    NotFound,
    SqrxError,
    "The named thing (sandbox, layer, file) does not exist."
);
create_exception!(
    sqrx,
    AlreadyExists,
    SqrxError,
    "Something with that name already exists."
);
create_exception!(
    sqrx,
    InvalidArgument,
    SqrxError,
    "The input is malformed or breaks a rule (bad id, relative path, bad limit)."
);
create_exception!(
    sqrx,
    LimitExceeded,
    SqrxError,
    "A configured limit would be exceeded (too many sandboxes)."
);
create_exception!(
    sqrx,
    Conflict,
    SqrxError,
    "The operation conflicts with the current state (paused, in use)."
);
create_exception!(
    sqrx,
    Unavailable,
    SqrxError,
    "A required facility is missing on this host (sqrx-init, a kernel feature)."
);
create_exception!(
    sqrx,
    Timeout,
    SqrxError,
    "The operation did not finish in time."
);
create_exception!(
    sqrx,
    PermissionDenied,
    SqrxError,
    "The caller or the process lacks a permission."
);
create_exception!(
    sqrx,
    InsufficientStorage,
    SqrxError,
    "The disk the data directory is on is full; nothing half-written was left."
);
create_exception!(
    sqrx,
    Internal,
    SqrxError,
    "An unexpected failure of the host or a bug."
);

/// Every core error kind with its exception class, for registering the classes and setting
/// their `kind` attribute.
pub(crate) fn classes(py: Python<'_>) -> [(ErrorKind, Bound<'_, pyo3::types::PyType>); 10] {
    [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidArgument,
        ErrorKind::LimitExceeded,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::PermissionDenied,
        ErrorKind::InsufficientStorage,
        ErrorKind::Internal,
    ]
    .map(|k| (k, class_of(py, k)))
}

fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, pyo3::types::PyType> {
    match kind {
        ErrorKind::NotFound => py.get_type::<NotFound>(),
        ErrorKind::AlreadyExists => py.get_type::<AlreadyExists>(),
        ErrorKind::InvalidArgument => py.get_type::<InvalidArgument>(),
        ErrorKind::LimitExceeded => py.get_type::<LimitExceeded>(),
        ErrorKind::Conflict => py.get_type::<Conflict>(),
        ErrorKind::Unavailable => py.get_type::<Unavailable>(),
        ErrorKind::Timeout => py.get_type::<Timeout>(),
        ErrorKind::PermissionDenied => py.get_type::<PermissionDenied>(),
        ErrorKind::InsufficientStorage => py.get_type::<InsufficientStorage>(),
        ErrorKind::Internal => py.get_type::<Internal>(),
    }
}

/// The exception for a core error: the class of its kind, the core's message.
pub(crate) fn to_py(e: impl Into<sqrx_core::Error>) -> PyErr {
    let e: sqrx_core::Error = e.into();
    let message = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => NotFound::new_err(message),
        ErrorKind::AlreadyExists => AlreadyExists::new_err(message),
        ErrorKind::InvalidArgument => InvalidArgument::new_err(message),
        ErrorKind::LimitExceeded => LimitExceeded::new_err(message),
        ErrorKind::Conflict => Conflict::new_err(message),
        ErrorKind::Unavailable => Unavailable::new_err(message),
        ErrorKind::Timeout => Timeout::new_err(message),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(message),
        ErrorKind::InsufficientStorage => InsufficientStorage::new_err(message),
        ErrorKind::Internal => Internal::new_err(message),
    }
}
