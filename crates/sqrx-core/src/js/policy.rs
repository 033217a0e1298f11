//! What a caller may ask of one execution, in the units every surface takes it in:
//! `timeout_ms` and `memory_mb` (the server's request body, the `sqrx js` flags, the Python
//! and Node arguments). [`JsLimitsPolicy::resolve`] fills in what a request leaves out and
//! refuses what is out of range, naming the field and the range; the surfaces only translate.

use std::fmt;
use std::time::Duration;

use super::{JsError, JsLimits};

/// A limit a caller asks for by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsLimitField {
    /// The time limit, milliseconds.
    TimeoutMs,
    /// The heap limit, MiB.
    MemoryMb,
}

impl JsLimitField {
    /// The field's name: `timeout_ms` or `memory_mb`.
    pub fn as_str(self) -> &'static str {
        match self {
            JsLimitField::TimeoutMs => "timeout_ms",
            JsLimitField::MemoryMb => "memory_mb",
        }
    }
}

impl fmt::Display for JsLimitField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The defaults for the limits a request leaves out, and the largest a request may ask for.
/// A request past a maximum is refused, never clamped.
///
/// [`JsLimitsPolicy::default`] is what the limits themselves allow (what `sqrx js` and the
/// bindings use); the server narrows the maxima with its `[limits]`.
///
/// ```
/// use sqrx_core::js::{JsLimitField, JsLimitsPolicy, JsLimits};
///
/// let policy = JsLimitsPolicy { max_memory_mb: 512, ..JsLimitsPolicy::default() };
/// let limits = policy.resolve(None, Some(128))?;
/// assert_eq!(limits.memory_bytes, 128 << 20);
/// assert_eq!(limits.timeout, JsLimits::default().timeout);
/// let too_big = policy.resolve(None, Some(513)).expect_err("over the maximum");
/// assert!(matches!(too_big, sqrx_core::JsError::LimitOutOfRange { field: JsLimitField::MemoryMb, max: 512, .. }));
/// # Ok::<(), sqrx_core::JsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsLimitsPolicy {
    /// The limits of a request that names none; every request also gets their stack and output
    /// (log and result) limits. Default [`JsLimits::default`].
    pub defaults: JsLimits,
    /// The longest `timeout_ms` a request may ask for. Default: [`JsLimits::MAX_TIMEOUT`].
    pub max_timeout_ms: u64,
    /// The largest `memory_mb` a request may ask for. Default: no maximum but what this
    /// host's address space can name.
    pub max_memory_mb: u64,
}

/// The largest `memory_mb` whose byte count fits in a `usize`.
const ADDRESSABLE_MB: u64 = (usize::MAX >> 20) as u64;

impl Default for JsLimitsPolicy {
    fn default() -> Self {
        JsLimitsPolicy {
            defaults: JsLimits::default(),
            max_timeout_ms: JsLimits::MAX_TIMEOUT.as_millis() as u64,
            max_memory_mb: ADDRESSABLE_MB,
        }
    }
}

impl JsLimitsPolicy {
    /// The smallest `memory_mb` ([`JsLimits::MIN_MEMORY_BYTES`]).
    pub const MIN_MEMORY_MB: u64 = (JsLimits::MIN_MEMORY_BYTES >> 20) as u64;

    /// The limits for a request that asks for `timeout_ms` and `memory_mb` (`None`: the
    /// default): [`JsError::LimitOutOfRange`] names a field past its range, and the result is
    /// checked as a whole ([`JsLimits::validate`]).
    pub fn resolve(
        &self,
        timeout_ms: Option<u64>,
        memory_mb: Option<u64>,
    ) -> Result<JsLimits, JsError> {
        let mut limits = self.defaults.clone();
        if let Some(ms) = timeout_ms {
            let max = self
                .max_timeout_ms
                .min(JsLimits::MAX_TIMEOUT.as_millis() as u64);
            check(JsLimitField::TimeoutMs, ms, 1, max)?;
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = memory_mb {
            let max = self.max_memory_mb.min(ADDRESSABLE_MB);
            check(JsLimitField::MemoryMb, mb, Self::MIN_MEMORY_MB, max)?;
            // In range, so the byte count fits (`ADDRESSABLE_MB`).
            limits.memory_bytes = usize::try_from(mb << 20).unwrap_or(usize::MAX);
        }
        limits.validate()?;
        Ok(limits)
    }
}

fn check(field: JsLimitField, value: u64, min: u64, max: u64) -> Result<(), JsError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(JsError::LimitOutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_of_range(r: Result<JsLimits, JsError>) -> (JsLimitField, u64, u64, u64) {
        match r {
            Err(JsError::LimitOutOfRange {
                field,
                value,
                min,
                max,
            }) => (field, value, min, max),
            other => panic!("expected LimitOutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn what_a_request_leaves_out_is_the_default() {
        let policy = JsLimitsPolicy::default();
        assert_eq!(
            policy.resolve(None, None).expect("defaults"),
            JsLimits::default()
        );
        let limits = policy.resolve(Some(100), Some(8)).expect("in range");
        assert_eq!(limits.timeout, Duration::from_millis(100));
        assert_eq!(limits.memory_bytes, 8 << 20);
        assert_eq!(limits.stack_bytes, JsLimits::default().stack_bytes);
        assert_eq!(
            JsLimits::default().timeout,
            Duration::from_millis(JsLimits::DEFAULT_TIMEOUT_MS)
        );
        assert_eq!(
            JsLimits::default().memory_bytes,
            (JsLimits::DEFAULT_MEMORY_MB as usize) << 20
        );
    }

    #[test]
    fn a_request_past_a_maximum_is_refused_naming_field_and_range() {
        let policy = JsLimitsPolicy {
            max_timeout_ms: 60_000,
            max_memory_mb: 512,
            ..JsLimitsPolicy::default()
        };
        assert_eq!(
            out_of_range(policy.resolve(Some(60_001), None)),
            (JsLimitField::TimeoutMs, 60_001, 1, 60_000)
        );
        assert_eq!(
            out_of_range(policy.resolve(Some(0), None)),
            (JsLimitField::TimeoutMs, 0, 1, 60_000)
        );
        assert_eq!(
            out_of_range(policy.resolve(None, Some(513))),
            (JsLimitField::MemoryMb, 513, 2, 512)
        );
        assert_eq!(
            out_of_range(policy.resolve(None, Some(1))),
            (JsLimitField::MemoryMb, 1, 2, 512)
        );
        policy
            .resolve(Some(60_000), Some(512))
            .expect("at the maxima");
        let err = policy
            .resolve(None, Some(0))
            .expect_err("below the minimum");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "invalid memory_mb: 0 is outside 2..=512",
            "the message names the field and the range"
        );
    }

    #[test]
    fn the_default_maxima_are_the_limits_own() {
        let policy = JsLimitsPolicy::default();
        let day = JsLimits::MAX_TIMEOUT.as_millis() as u64;
        policy.resolve(Some(day), None).expect("24 hours");
        assert_eq!(
            out_of_range(policy.resolve(Some(day + 1), None)).0,
            JsLimitField::TimeoutMs
        );
        // No maximum of its own for memory, but a byte count that cannot be named is refused
        // instead of wrapping around.
        policy
            .resolve(None, Some(1 << 20))
            .expect("a TiB is a limit, not an allocation");
        assert_eq!(
            out_of_range(policy.resolve(None, Some(u64::MAX))),
            (JsLimitField::MemoryMb, u64::MAX, 2, ADDRESSABLE_MB)
        );
    }

    #[test]
    fn a_server_maximum_past_the_limits_own_is_capped_by_them() {
        let policy = JsLimitsPolicy {
            max_timeout_ms: u64::MAX,
            ..JsLimitsPolicy::default()
        };
        let day = JsLimits::MAX_TIMEOUT.as_millis() as u64;
        assert_eq!(out_of_range(policy.resolve(Some(day + 1), None)).3, day);
    }
}
