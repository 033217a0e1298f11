//! Per-execution limits.

use std::time::Duration;

use super::JsError;

/// The limits every execution runs under. Each worker owns one QuickJS runtime; the memory and
/// stack limits apply to that runtime, the timeout to each execution (from the moment a worker
/// starts it, queueing excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsLimits {
    /// Heap the script may allocate (QuickJS's malloc limit), bytes. Default
    /// [`JsLimits::DEFAULT_MEMORY_MB`] MiB.
    pub memory_bytes: usize,
    /// Wall-clock time for one execution, promise jobs and host calls included. Default
    /// [`JsLimits::DEFAULT_TIMEOUT_MS`] ms.
    pub timeout: Duration,
    /// JavaScript stack, bytes; deeper recursion throws a `RangeError`. Default 1 MiB.
    pub stack_bytes: usize,
    /// Total size of the captured `console` output (its JSON), bytes; the log past it is
    /// dropped and a marker entry appended. Default 1 MiB.
    pub max_log_bytes: usize,
    /// Size of the result's JSON, bytes; a larger result is replaced by a string holding its
    /// first bytes and a marker. Default 1 MiB.
    pub max_result_bytes: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits {
            memory_bytes: (Self::DEFAULT_MEMORY_MB as usize) << 20,
            timeout: Duration::from_millis(Self::DEFAULT_TIMEOUT_MS),
            stack_bytes: 1 << 20,
            max_log_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
        }
    }
}

impl JsLimits {
    /// The default time limit, milliseconds: what the server, `sqrx js` and the bindings use
    /// when a caller names none.
    pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
    /// The default heap limit, MiB: what the server, `sqrx js` and the bindings use when a
    /// caller names none.
    pub const DEFAULT_MEMORY_MB: u64 = 64;
    /// The longest time limit.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
    /// The smallest heap a runtime can start in: QuickJS needs ~1 MiB for its builtins.
    pub const MIN_MEMORY_BYTES: usize = 2 << 20;
    /// The smallest stack that still runs ordinary code.
    pub const MIN_STACK_BYTES: usize = 64 << 10;
    /// The largest stack a worker thread is given (the thread gets this plus headroom).
    pub const MAX_STACK_BYTES: usize = 256 << 20;

    /// Check that every limit is in range.
    pub fn validate(&self) -> Result<(), JsError> {
        let bad = |name, reason: String| Err(JsError::InvalidLimit { name, reason });
        if self.memory_bytes < Self::MIN_MEMORY_BYTES {
            return bad(
                "memory_bytes",
                format!(
                    "{} is below the minimum {}",
                    self.memory_bytes,
                    Self::MIN_MEMORY_BYTES
                ),
            );
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be greater than zero".into());
        }
        if self.timeout > Self::MAX_TIMEOUT {
            return bad("timeout", "must be at most 24 hours".into());
        }
        if !(Self::MIN_STACK_BYTES..=Self::MAX_STACK_BYTES).contains(&self.stack_bytes) {
            return bad(
                "stack_bytes",
                format!(
                    "{} is outside {}..={}",
                    self.stack_bytes,
                    Self::MIN_STACK_BYTES,
                    Self::MAX_STACK_BYTES
                ),
            );
        }
        if self.max_log_bytes == 0 {
            return bad("max_log_bytes", "must be greater than zero".into());
        }
        if self.max_result_bytes == 0 {
            return bad("max_result_bytes", "must be greater than zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        JsLimits::default().validate().expect("valid");
    }

    #[test]
    fn out_of_range_limits_are_rejected() {
        let cases = [
            JsLimits {
                memory_bytes: 1024,
                ..JsLimits::default()
            },
            JsLimits {
                timeout: Duration::ZERO,
                ..JsLimits::default()
            },
            JsLimits {
                stack_bytes: 10,
                ..JsLimits::default()
            },
            JsLimits {
                max_log_bytes: 0,
                ..JsLimits::default()
            },
            JsLimits {
                max_result_bytes: 0,
                ..JsLimits::default()
            },
        ];
        for limits in cases {
            let err = limits.validate().expect_err("invalid");
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
        }
    }
}
