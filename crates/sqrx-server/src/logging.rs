//! Structured logs with `tracing`: text or one JSON object per line, on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. The filter comes from `SQRX_LOG` (e.g. `debug`,
/// `sqrx_server=debug,tower_http=info`), else `default`.
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_env("SQRX_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
