//! `sqrx layer push|pull|sync` and `sqrx layer ls --remote`: the layer store's copy in S3,
//! configured by `SQRX_S3_*` (or sq-sandbox's `SQUASH_S3_*`) and the standard AWS credentials.

use std::io::IsTerminal;

use sqrx_core::remote::{Remote, RemoteConfig};
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

/// A progress bar on a terminal, for `what` of `name`.
fn bar(what: &str, name: &LayerName) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {name} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}})"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    })
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
        let bar = bar("pushing", &name);
        let progress = |done: u64, total: u64| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        };
        let report = remote
            .push(store, &name, Some(&progress))
            .map_err(|e| CliError(e.to_string()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
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
        let bar = bar("pulling", &name);
        let progress = |done: u64, total: u64| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        };
        let report = remote
            .pull(store, &name, force, Some(&progress))
            .map_err(|e| CliError(e.to_string()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
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
