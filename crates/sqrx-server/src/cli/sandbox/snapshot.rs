//! `sqrx sandbox snapshot`, `restore` and `snapshots`.

use sqrx_core::Runtime;

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// Snapshot the filesystem of the sandbox `id` under `label` (default: the current time).
pub fn snapshot(rt: &Runtime, id: &str, label: Option<&str>, json: bool) -> Result<(), CliError> {
    let snap = rt.get(id)?.snapshot(label)?;
    if json {
        print_json(&snap)?;
    } else {
        println!("{} ({} bytes)", snap.label, snap.size);
    }
    Ok(())
}

/// Restore the snapshot `label` of the sandbox `id`.
pub fn restore(rt: &Runtime, id: &str, label: &str) -> Result<(), CliError> {
    rt.get(id)?.restore(label)?;
    println!("restored {id} to {label}");
    Ok(())
}

/// List the snapshots of the sandbox `id`.
pub fn list(rt: &Runtime, id: &str, json: bool) -> Result<(), CliError> {
    let snaps = rt.get(id)?.snapshots()?;
    if json {
        print_json(&snaps)?;
    } else {
        println!("{:<32} {:>12} {:<20} PARENT", "LABEL", "BYTES", "CREATED");
        for s in snaps {
            println!(
                "{:<32} {:>12} {:<20} {}",
                s.label,
                s.size,
                s.created.format("%Y-%m-%d %H:%M:%S"),
                s.parent.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
