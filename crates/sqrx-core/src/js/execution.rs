//! What a script is given ([`JsRequest`]) and what it produces ([`Execution`]).

use serde::{Deserialize, Serialize};

/// One script to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsRequest {
    /// The script (classic script mode; top-level `await` allowed). The value of its last
    /// expression is the result.
    pub code: String,
    /// Made available to the script as the global `input` (`null` when absent).
    #[serde(default)]
    pub input: Option<serde_json::Value>,
}

impl JsRequest {
    /// A request for `code` without input.
    pub fn new(code: impl Into<String>) -> Self {
        JsRequest {
            code: code.into(),
            input: None,
        }
    }

    /// The same request with `input` as the global `input`.
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = Some(input);
        self
    }
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// The script (and the promise it returned) completed; `result` holds its value.
    Success,
    /// The script threw, its promise rejected, or its value could not be converted.
    Error,
    /// The execution ran past [`JsLimits::timeout`](super::JsLimits::timeout).
    Timeout,
    /// The script ran past [`JsLimits::memory_bytes`](super::JsLimits::memory_bytes).
    OutOfMemory,
}

impl ExecutionStatus {
    /// The status as it appears in JSON (`"success"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Success => "success",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::OutOfMemory => "out_of_memory",
        }
    }
}

/// A thrown value, described the way JavaScript describes errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionError {
    /// The error's `name` (`TypeError`, `SyntaxError`, ...; `Error` for a thrown non-error).
    pub name: String,
    /// Its `message` (the value itself, as a string, for a thrown non-error).
    pub message: String,
    /// Its `stack` as QuickJS formats it (empty when it has none).
    pub stack: String,
}

/// The console method a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `console.log`
    Log,
    /// `console.info`
    Info,
    /// `console.warn`
    Warn,
    /// `console.error`
    Error,
    /// `console.debug`
    Debug,
}

impl LogLevel {
    /// Every level, in the order the console methods are installed.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Log,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Debug,
    ];

    /// The console method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Log => "log",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Debug => "debug",
        }
    }
}

/// One `console` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Which method was called.
    #[serde(rename = "type")]
    pub level: LogLevel,
    /// When, RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
    pub timestamp: String,
    /// The arguments, converted to JSON.
    pub data: Vec<serde_json::Value>,
}

/// The outcome of one script. Serializes to the JSON users of the original JS sandbox know:
/// `{"status", "result", "error": false | {"name","message","stack"}, "log", "executionTime"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// How it ended.
    pub status: ExecutionStatus,
    /// The script's value on success, `null` otherwise.
    pub result: serde_json::Value,
    /// What was thrown (or why the execution was stopped); `false` in JSON when nothing was.
    #[serde(with = "error_or_false")]
    pub error: Option<ExecutionError>,
    /// Captured `console` output, in call order.
    pub log: Vec<LogEntry>,
    /// Wall-clock time of the execution in milliseconds (microsecond resolution).
    #[serde(rename = "executionTime")]
    pub execution_time_ms: f64,
}

impl Execution {
    /// Did the script succeed?
    pub fn is_success(&self) -> bool {
        self.status == ExecutionStatus::Success
    }

    /// Round a duration to milliseconds with microsecond resolution.
    pub(crate) fn millis(d: std::time::Duration) -> f64 {
        (d.as_micros() as f64) / 1000.0
    }
}

/// `error` is `false` when there is none, an object otherwise.
mod error_or_false {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ExecutionError;

    pub fn serialize<S: Serializer>(v: &Option<ExecutionError>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(e) => e.serialize(s),
            None => s.serialize_bool(false),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Flag(bool),
        Error(ExecutionError),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ExecutionError>, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Flag(false) => Ok(None),
            Wire::Flag(true) => Err(serde::de::Error::custom("error must be false or an object")),
            Wire::Error(e) => Ok(Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_to_the_seed_shape() {
        let ok = Execution {
            status: ExecutionStatus::Success,
            result: serde_json::json!(3),
            error: None,
            log: vec![LogEntry {
                level: LogLevel::Warn,
                timestamp: "2026-01-02T03:04:05.678Z".into(),
                data: vec![serde_json::json!("hi")],
            }],
            execution_time_ms: 0.012,
        };
        let v = serde_json::to_value(&ok).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"status": "success", "result": 3, "error": false,
                "log": [{"type": "warn", "timestamp": "2026-01-02T03:04:05.678Z", "data": ["hi"]}],
                "executionTime": 0.012})
        );
        let back: Execution = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, ok);

        let oom = Execution {
            status: ExecutionStatus::OutOfMemory,
            result: serde_json::Value::Null,
            error: Some(ExecutionError {
                name: "InternalError".into(),
                message: "out of memory".into(),
                stack: String::new(),
            }),
            log: vec![],
            execution_time_ms: 1.0,
        };
        let v = serde_json::to_value(&oom).expect("json");
        assert_eq!(v["status"], "out_of_memory");
        assert_eq!(v["error"]["name"], "InternalError");
        assert_eq!(serde_json::from_value::<Execution>(v).expect("back"), oom);
    }

    #[test]
    fn error_true_is_rejected() {
        let v = serde_json::json!({"status": "error", "result": null, "error": true, "log": [],
            "executionTime": 1});
        assert!(serde_json::from_value::<Execution>(v).is_err());
    }
}
