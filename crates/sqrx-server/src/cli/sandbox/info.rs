//! `sqrx sandbox ls` (without an id), `info` and `logs`: what sandboxes there are and what
//! they did.

use sqrx_core::Runtime;

use super::net::policy_text;
use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// List the sandboxes: a table, or with `--json` an array of their infos.
pub fn list(rt: &Runtime, json: bool) -> Result<(), CliError> {
    let sandboxes = rt.list();
    if json {
        let infos = sandboxes
            .iter()
            .map(info_json)
            .collect::<Result<Vec<_>, _>>()?;
        print_json(&infos)?;
    } else {
        println!(
            "{:<24} {:<8} {:<24} {:>8} {:<19} NETWORK",
            "ID", "STATUS", "LAYERS", "INIT", "CREATED"
        );
        for sb in sandboxes {
            let i = sb.info();
            println!(
                "{:<24} {:<8} {:<24} {:>8} {:<19} {}",
                i.id,
                i.status,
                i.layers.join(","),
                i.init_pid,
                i.created.format("%Y-%m-%d %H:%M:%S"),
                policy_text(sb.network_policy())
            );
        }
    }
    Ok(())
}

/// Show the sandbox `id`.
pub fn info(rt: &Runtime, id: &str, json: bool) -> Result<(), CliError> {
    let sandbox = rt.get(id)?;
    let info = sandbox.info();
    if json {
        print_json(&info_json(&sandbox)?)?;
    } else {
        println!("id:       {}", info.id);
        println!("status:   {}", info.status);
        println!("layers:   {}", info.layers.join(", "));
        println!("init pid: {}", info.init_pid);
        if let Some(snap) = &info.active_snapshot {
            println!("snapshot: {snap}");
        }
        println!("upper:    {} bytes used", info.upper_bytes);
        println!("created:  {}", info.created);
        println!(
            "limits:   cpu {:?}, memory {:?} MiB, pids {:?}, upper {} MiB",
            info.cpu, info.memory_mb, info.pids_max, info.upper_mb
        );
        println!("network:  {}", policy_text(sandbox.network_policy()));
        if let Some(link) = sandbox.network_info() {
            println!("address:  {} (gateway {})", link.address, link.gateway);
        }
    }
    Ok(())
}

/// Show the exec history of the sandbox `id`.
pub fn logs(rt: &Runtime, id: &str, json: bool) -> Result<(), CliError> {
    let logs = rt.get(id)?.logs();
    if json {
        print_json(&logs)?;
    } else {
        for e in logs {
            let status = if e.timed_out {
                "timeout".to_string()
            } else if e.oom_killed {
                "oom".to_string()
            } else {
                e.exit_code
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| format!("signal {}", e.signal.unwrap_or(0)))
            };
            println!(
                "#{:<4} {} {:>6} ms  {:<10} {}",
                e.seq,
                e.started.format("%H:%M:%S"),
                e.duration_ms,
                status,
                e.command
            );
        }
    }
    Ok(())
}

/// The sandbox's info as JSON, with its network policy and, when it has a link, its
/// addresses.
pub(super) fn info_json(sandbox: &sqrx_core::Sandbox) -> Result<serde_json::Value, CliError> {
    let encode = |e: serde_json::Error| CliError(format!("cannot encode JSON: {e}"));
    let mut value = serde_json::to_value(sandbox.info()).map_err(encode)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "network".into(),
            serde_json::to_value(sandbox.network_policy()).map_err(encode)?,
        );
        let link = sandbox.network_info();
        obj.insert(
            "address".into(),
            link.as_ref()
                .map_or(serde_json::Value::Null, |l| l.address.to_string().into()),
        );
        obj.insert(
            "gateway".into(),
            link.as_ref()
                .map_or(serde_json::Value::Null, |l| l.gateway.to_string().into()),
        );
    }
    Ok(value)
}
