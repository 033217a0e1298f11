//! `sqrx sandbox snapshot`, `restore` and `snapshots`.

use sqrx_core::Runtime;

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// Snapshot the filesystem of the sandbox `id` under `label` (default: the current time),
/// and push it into the bucket with `push`.
pub fn snapshot(
    rt: &Runtime,
    id: &str,
    label: Option<&str>,
    push: bool,
    json: bool,
) -> Result<(), CliError> {
    if push && rt.remote().map_err(|e| CliError(e.to_string()))?.is_none() {
        crate::cli::remote::config()?;
    }
    let sandbox = rt.get(id)?;
    let snap = sandbox.snapshot(label)?;
    let pushed = match push {
        true => Some(sandbox.push_snapshot(&snap.label)?),
        false => None,
    };
    if json {
        let mut value = serde_json::to_value(&snap).map_err(|e| CliError(e.to_string()))?;
        if let (Some(p), Some(obj)) = (&pushed, value.as_object_mut()) {
            obj.insert(
                "pushed".into(),
                serde_json::json!({"key": p.key, "uploaded_bytes": p.uploaded_bytes, "latest": p.latest}),
            );
        }
        print_json(&value)?;
    } else {
        println!("{} ({} bytes)", snap.label, snap.size);
        if let Some(p) = pushed {
            println!("pushed: {} bytes uploaded ({})", p.uploaded_bytes, p.key);
        }
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
