//! `sqrx layer push|pull|sync` and `sqrx layer ls --remote`: the layer store's copy in S3,
//! configured by `SQRX_S3_*` (or sq-sandbox's `SQUASH_S3_*`) and the standard AWS credentials.

use std::io::IsTerminal;

use sqrx_core::Layer;
use sqrx_core::remote::{Progress, Remote, RemoteConfig, Uploads};
use sqrx_core::{LayerName, LayerStore};

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// The bucket the environment names.
pub fn config() -> Result<RemoteConfig, CliError> {
    RemoteConfig::from_env(&sqrx_server::config::process_env)
        .map_err(|e| CliError(e.to_string()))?
        .ok_or_else(|| {
            CliError(
                "no bucket: set SQRX_S3_BUCKET (or SQUASH_S3_BUCKET), and SQRX_S3_ENDPOINT for \
                 a service other than AWS; see docs/s3.md"
                    .into(),
            )
        })
}

/// Connect to the bucket the environment names.
pub fn connect() -> Result<Remote, CliError> {
    Remote::connect(config()?).map_err(|e| CliError(e.to_string()))
}

/// Run `transfer` with a progress bar on a terminal, for `what` of `name`.
fn with_bar<T>(what: &str, name: &LayerName, transfer: impl FnOnce(Progress<'_>) -> T) -> T {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {name} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}})"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let out = transfer(&progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out
}

/// The layers named, or every local one with `all`.
fn names(store: &LayerStore, given: &[String], all: bool) -> Result<Vec<LayerName>, CliError> {
    if all {
        return Ok(store.list()?.into_iter().map(|l| l.name).collect());
    }
    if given.is_empty() {
        return Err(CliError("name at least one layer, or pass --all".into()));
    }
    given
        .iter()
        .map(|n| LayerName::new(n.as_str()).map_err(CliError::from))
        .collect()
}

/// `sqrx layer push NAME... | --all`.
pub fn push(store: &LayerStore, given: &[String], all: bool, json: bool) -> Result<(), CliError> {
    let remote = connect()?;
    let mut reports = Vec::new();
    for name in names(store, given, all)? {
        let report = with_bar("pushing", &name, |p| remote.push(store, &name, Some(p)))
            .map_err(|e| CliError(e.to_string()))?;
        if !json {
            let what = match (report.uploaded_bytes, report.parts_reused) {
                (0, _) => "already in the bucket".to_string(),
                (n, 0) => format!("uploaded {n} bytes"),
                (n, r) => format!("uploaded {n} bytes, resumed {r} parts"),
            };
            println!(
                "{}: {what} (s3://{}/{})",
                report.name,
                remote.config().bucket,
                report.key
            );
        }
        reports.push(serde_json::json!({
            "name": report.name, "digest": report.digest, "key": report.key,
            "uploaded_bytes": report.uploaded_bytes, "parts_reused": report.parts_reused,
            "indexed": report.indexed,
        }));
    }
    if json {
        print_json(&reports)?;
    }
    Ok(())
}

/// `sqrx layer pull NAME... [--force]`.
pub fn pull(store: &LayerStore, given: &[String], force: bool, json: bool) -> Result<(), CliError> {
    let remote = connect()?;
    let mut reports = Vec::new();
    for name in names(store, given, false)? {
        let report = with_bar("pulling", &name, |p| {
            remote.pull(store, &name, force, Some(p))
        })
        .map_err(|e| CliError(e.to_string()))?;
        if !json {
            match report.downloaded_bytes {
                0 => println!("{}: already here ({})", report.name, report.digest),
                n => println!(
                    "{}: downloaded {n} bytes, verified {}",
                    report.name, report.digest
                ),
            }
        }
        reports.push(serde_json::json!({
            "name": report.name, "digest": report.digest,
            "downloaded_bytes": report.downloaded_bytes,
            "download_seconds": report.download.as_secs_f64(),
            "verify_seconds": report.verify.as_secs_f64(),
        }));
    }
    if json {
        print_json(&reports)?;
    }
    Ok(())
}

/// `sqrx layer sync`.
pub fn sync(store: &LayerStore, json: bool) -> Result<(), CliError> {
    let report = connect()?
        .sync(store)
        .map_err(|e| CliError(e.to_string()))?;
    if json {
        return print_json(&serde_json::json!({"pushed": report.pushed, "pulled": report.pulled}));
    }
    println!(
        "pushed {} ({}), pulled {} ({})",
        report.pushed.len(),
        report.pushed.join(", "),
        report.pulled.len(),
        report.pulled.join(", ")
    );
    Ok(())
}

/// `sqrx layer ls --remote`.
pub fn list(json: bool) -> Result<(), CliError> {
    let layers = connect()?.list().map_err(|e| CliError(e.to_string()))?;
    if json {
        return print_json(&layers);
    }
    for l in layers {
        println!("{}\t{}\t{}", l.name, l.size, l.digest);
    }
    Ok(())
}

/// After `sqrx layer build|import|from-host|bootstrap`: with a bucket, push `layer` now
/// (`sync`) or queue it for the background pusher of a server on `data_dir`.
pub fn after_build(
    data_dir: &std::path::Path,
    store: &LayerStore,
    layer: &Layer,
    sync: bool,
) -> Result<(), CliError> {
    let config = match (
        sync,
        RemoteConfig::from_env(&sqrx_server::config::process_env),
    ) {
        (true, _) => config()?,
        (false, Ok(Some(c))) if c.auto_push => c,
        (false, _) => return Ok(()),
    };
    let bucket = config.bucket.clone();
    if !sync {
        Uploads::new(data_dir)
            .queue_layer(layer)
            .map_err(|e| CliError(e.to_string()))?;
        eprintln!(
            "{}: queued for s3://{bucket} (`sqrx serve` on this data directory pushes it; \
             --sync pushes it now; `sqrx layer uploads` shows where it stands)",
            layer.name
        );
        return Ok(());
    }
    let remote = Remote::connect(config).map_err(|e| CliError(e.to_string()))?;
    let report = with_bar("pushing", &layer.name, |p| {
        remote.push(store, &layer.name, Some(p))
    })
    .map_err(|e| {
        CliError(format!(
            "{} is stored here, but the push failed: {e}",
            layer.name
        ))
    })?;
    eprintln!(
        "{}: pushed to s3://{bucket}/{} ({} bytes uploaded)",
        report.name, report.key, report.uploaded_bytes
    );
    Ok(())
}

/// `sqrx layer uploads`.
pub fn uploads(data_dir: &std::path::Path, json: bool) -> Result<(), CliError> {
    let list = Uploads::new(data_dir)
        .list()
        .map_err(|e| CliError(e.to_string()))?;
    if json {
        return print_json(&list);
    }
    println!(
        "{:<9} {:<40} {:<8} {:>8}  ERROR",
        "KIND", "NAME", "STATE", "ATTEMPTS"
    );
    for u in list {
        let (kind, state) = (u.kind.as_str(), u.state.as_str());
        let error = match (&u.error, u.next_attempt) {
            (Some(e), Some(t)) => format!("{e} (next attempt {})", t.format("%H:%M:%S")),
            (Some(e), None) => e.clone(),
            (None, _) => String::new(),
        };
        println!(
            "{kind:<9} {:<40} {state:<8} {:>8}  {error}",
            u.name, u.attempts
        );
    }
    Ok(())
}

/// Before a create on `rt`: pull the layers of `names` the store lacks from the runtime's
/// bucket, with progress on a terminal (the create would pull them silently otherwise).
pub fn pull_missing(rt: &sqrx_core::Runtime, names: &[String]) -> Result<(), CliError> {
    let missing: Vec<LayerName> = names
        .iter()
        .filter(|n| n.as_str() != sqrx_core::layer::BASE_LAYER)
        .filter_map(|n| LayerName::new(n.as_str()).ok())
        .filter(|n| !rt.layers().contains(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let Some(remote) = rt.remote().map_err(|e| CliError(e.to_string()))? else {
        return Ok(());
    };
    for name in missing {
        match with_bar("pulling", &name, |p| {
            remote.pull(rt.layers(), &name, false, Some(p))
        }) {
            Ok(_) => {}
            // The create says it better (naming the key).
            Err(sqrx_core::remote::RemoteError::NotFound { .. }) => {}
            Err(e) => return Err(CliError(e.to_string())),
        }
    }
    Ok(())
}
