//! `sqrx_core::Error` → a rejected Promise / thrown error that `index.js` turns into a
//! `SqrxError` whose `code` is the core's error kind.

/// A napi error whose message is `"<Kind>: <core message>"`. napi-rs only lets a Promise
/// reject with a status from its own fixed set, so the kind travels in the message and
/// `index.js` (`toSqrxError`) splits it off into `SqrxError.code`.
pub(crate) fn to_napi(e: impl Into<sqrx_core::Error>) -> napi::Error {
    let e: sqrx_core::Error = e.into();
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("{}: {e}", e.kind().as_str()),
    )
}

/// An invalid argument detected while translating (not by the core).
pub(crate) fn invalid(message: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(
        napi::Status::InvalidArg,
        format!(
            "{}: {message}",
            sqrx_core::ErrorKind::InvalidArgument.as_str()
        ),
    )
}

/// A background task that died (a panic in the core): an internal error.
pub(crate) fn join(e: tokio::task::JoinError) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!(
            "{}: sqrx task failed: {e}",
            sqrx_core::ErrorKind::Internal.as_str()
        ),
    )
}
