//! `sqrx sandbox ls ID`, `put`, `get`, `upload` and `download`: files in and out of a
//! sandbox.

use std::io::Write;
use std::path::Path;

use sqrx_core::Runtime;

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// List the directory `path` inside the sandbox `id`.
pub fn ls(rt: &Runtime, id: &str, path: &str, json: bool) -> Result<(), CliError> {
    let files = rt.get(id)?.list(path)?;
    if json {
        print_json(&files)?;
    } else {
        for f in files {
            println!(
                "{:<8} {:>4o} {:>10} {} {}",
                f.kind,
                f.mode,
                f.size,
                f.mtime.format("%Y-%m-%d %H:%M"),
                f.name
            );
        }
    }
    Ok(())
}

/// Copy the local file or directory `local` (`-`: stdin) to `path` inside the sandbox `id`,
/// a file with the octal permission bits `mode`.
pub fn put(rt: &Runtime, id: &str, local: &str, path: &str, mode: &str) -> Result<(), CliError> {
    let mode = u32::from_str_radix(mode, 8)
        .map_err(|_| CliError(format!("--mode expects octal bits like 644, got {mode:?}")))?;
    if local != "-" && Path::new(local).is_dir() {
        let sb = rt.get(id)?;
        let n = upload_dir(&sb, Path::new(local), path)?;
        println!("{n} entries copied to {path}");
        return Ok(());
    }
    let data = if local == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
        buf
    } else {
        std::fs::read(local).map_err(|e| CliError(format!("cannot read {local}: {e}")))?
    };
    rt.get(id)?.write_file(path, &data, mode)?;
    Ok(())
}

/// Copy the file `path` out of the sandbox `id` to `local` (`-`: stdout).
pub fn get(rt: &Runtime, id: &str, path: &str, local: &str) -> Result<(), CliError> {
    let data = rt.get(id)?.read_file(path)?;
    if local == "-" {
        std::io::stdout()
            .write_all(&data)
            .map_err(|e| CliError(format!("cannot write stdout: {e}")))?;
    } else {
        std::fs::write(local, &data).map_err(|e| CliError(format!("cannot write {local}: {e}")))?;
    }
    Ok(())
}

/// Extract the tar archive `archive` (`None` or `-`: stdin) into `path` inside the sandbox `id`.
pub fn upload(rt: &Runtime, id: &str, path: &str, archive: Option<&str>) -> Result<(), CliError> {
    let sb = rt.get(id)?;
    let n = match archive {
        None | Some("-") => sb.upload_tar(path, std::io::stdin().lock())?,
        Some(file) => {
            let f = std::fs::File::open(file)
                .map_err(|e| CliError(format!("cannot open {file}: {e}")))?;
            sb.upload_tar(path, std::io::BufReader::new(f))?
        }
    };
    eprintln!("{n} entries extracted to {path}");
    Ok(())
}

/// Write `path` inside the sandbox `id` as a tar archive to `archive` (`None` or `-`: stdout).
pub fn download(rt: &Runtime, id: &str, path: &str, archive: Option<&str>) -> Result<(), CliError> {
    let sb = rt.get(id)?;
    match archive {
        None | Some("-") => sb.download_tar(path, std::io::stdout().lock())?,
        Some(file) => {
            let f = std::fs::File::create(file)
                .map_err(|e| CliError(format!("cannot create {file}: {e}")))?;
            sb.download_tar(path, std::io::BufWriter::new(f))?
        }
    };
    Ok(())
}

/// Copy the local directory `local` into `path` inside the sandbox, streaming a tar archive
/// through a pipe (never the whole tree in memory).
fn upload_dir(sb: &sqrx_core::Sandbox, local: &Path, path: &str) -> Result<u64, CliError> {
    let (reader, writer) =
        std::io::pipe().map_err(|e| CliError(format!("cannot create a pipe: {e}")))?;
    let local = local.to_path_buf();
    let packer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.append_dir_all(".", &local)?;
        b.into_inner().map(drop)
    });
    let uploaded = sb.upload_tar(path, reader);
    let packed = packer
        .join()
        .map_err(|_| CliError("the archiving thread panicked".into()))?;
    let n = uploaded?;
    packed.map_err(|e| CliError(format!("cannot archive the local directory: {e}")))?;
    Ok(n)
}
