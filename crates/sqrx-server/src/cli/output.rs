//! Printing a command's result as JSON (`--json`).

use crate::cli::error::CliError;

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
