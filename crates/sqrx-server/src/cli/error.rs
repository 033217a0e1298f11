//! [`CliError`], the one error every command returns, and its conversions from core errors.

/// An error already formatted for the one line the CLI prints.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<sqrx_core::Error> for CliError {
    fn from(e: sqrx_core::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<sqrx_core::SandboxError> for CliError {
    fn from(e: sqrx_core::SandboxError) -> Self {
        CliError(e.to_string())
    }
}

impl From<sqrx_core::LayerError> for CliError {
    fn from(e: sqrx_core::LayerError) -> Self {
        CliError(e.to_string())
    }
}
