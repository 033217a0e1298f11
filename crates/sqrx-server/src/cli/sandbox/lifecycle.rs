//! `sqrx sandbox pause`, `resume`, `activate` and `rm`: changes to a running sandbox as a
//! whole.

use sqrx_core::Runtime;

use crate::cli::error::CliError;

/// Freeze every process of the sandbox `id`.
pub fn pause(rt: &Runtime, id: &str) -> Result<(), CliError> {
    rt.get(id)?.pause()?;
    println!("paused {id}");
    Ok(())
}

/// Thaw the paused sandbox `id`.
pub fn resume(rt: &Runtime, id: &str) -> Result<(), CliError> {
    rt.get(id)?.resume()?;
    println!("resumed {id}");
    Ok(())
}

/// Add the layer `layer` to the running sandbox `id`.
pub fn activate(rt: &Runtime, id: &str, layer: &str) -> Result<(), CliError> {
    rt.get(id)?.activate(layer)?;
    println!("activated {layer} in {id}");
    Ok(())
}

/// Destroy the sandbox `id`.
pub fn rm(rt: &Runtime, id: &str, save: bool) -> Result<(), CliError> {
    let sandbox = rt.get(id)?;
    match save {
        true => sandbox.destroy()?,
        false => sandbox.destroy_unsaved()?,
    }
    println!("removed {id}");
    Ok(())
}
