//! `sqrx sandbox secret` and `sqrx sandbox secrets`, and the `NAME=@FILE` secrets `create`
//! takes: values come from files or stdin, never from the command line.

use sqrx_core::Runtime;

use crate::cli::error::CliError;
use crate::cli::output::print_json;

/// Add the secret `NAME=@FILE` to the sandbox `id`, or give it a new value or hosts.
pub fn set(rt: &Runtime, id: &str, secret: String, hosts: &[String]) -> Result<(), CliError> {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}={h}", secret_name(&secret)))
        .collect();
    let secrets = parse_secrets(&[secret], &hosts, &mut std::io::stdin().lock())?;
    let mut sandbox = rt.get(id)?;
    for (name, s) in secrets {
        sandbox.set_secret(&name, s)?;
        println!("{id}: secret {name} set");
    }
    Ok(())
}

/// Print the sandbox's secrets: names, placeholders, hosts and sources, never values.
pub fn list(rt: &Runtime, id: &str, json: bool) -> Result<(), CliError> {
    let secrets = rt.get(id)?.secrets();
    if json {
        print_json(&secrets)?;
    } else {
        for s in secrets {
            println!(
                "{}\t{}\t{}\t{}",
                s.name,
                s.placeholder,
                s.allowed_hosts.join(","),
                s.source
            );
        }
    }
    Ok(())
}

/// The NAME of a `NAME=@FILE` argument.
fn secret_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(n, _)| n)
}

/// Secrets from `--secret NAME=@FILE` (`@-` reads `stdin`) and `--secret-host NAME=HOST`. A
/// value on the command line is refused: it would land in shell history and `ps`.
pub(super) fn parse_secrets(
    secrets: &[String],
    hosts: &[String],
    stdin: &mut dyn std::io::Read,
) -> Result<std::collections::BTreeMap<String, sqrx_core::Secret>, CliError> {
    let mut out = std::collections::BTreeMap::new();
    for arg in secrets {
        let Some((name, source)) = arg.split_once('=') else {
            return Err(CliError(format!(
                "--secret expects NAME=@FILE, got {arg:?}"
            )));
        };
        let Some(source) = source.strip_prefix('@') else {
            return Err(CliError(format!(
                "--secret {name}: give the value in a file (NAME=@FILE) or on stdin (NAME=@-), \
                 not on the command line, where shell history and ps would show it"
            )));
        };
        let mut value = String::new();
        let read = if source == "-" {
            stdin.read_to_string(&mut value)
        } else {
            std::fs::File::open(source)
                .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut value))
        };
        read.map_err(|e| CliError(format!("--secret {name}: cannot read {source}: {e}")))?;
        // A key file's final newline is not part of the key.
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value).to_string();
        out.insert(
            name.to_string(),
            sqrx_core::Secret::new(value, Vec::<String>::new()),
        );
    }
    for arg in hosts {
        let Some((name, host)) = arg.split_once('=') else {
            return Err(CliError(format!(
                "--secret-host expects NAME=HOST, got {arg:?}"
            )));
        };
        let Some(secret) = out.get_mut(name) else {
            return Err(CliError(format!(
                "--secret-host {arg}: no --secret {name}=@FILE given"
            )));
        };
        secret.allowed_hosts.push(host.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::create::CreateArgs;
    use super::super::{SandboxCmd, parse};
    use super::*;

    #[test]
    fn secrets_come_from_files_or_stdin_never_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-real\n").expect("write");
        let file_arg = format!("API={}", key.display());
        let cmd = parse(&[
            "create",
            "a",
            "--allow",
            "api.example.com",
            "--secret",
            &format!("API=@{}", key.display()),
            "--secret",
            "OTHER=@-",
            "--secret-host",
            "API=api.example.com",
            "--secret-host",
            "OTHER=*.example.org",
        ])
        .expect("parse");
        let SandboxCmd::Create(CreateArgs {
            secrets,
            secret_hosts,
            ..
        }) = cmd
        else {
            panic!("not create");
        };
        let mut stdin: &[u8] = b"from-stdin";
        let parsed = parse_secrets(&secrets, &secret_hosts, &mut stdin).expect("secrets");
        assert_eq!(
            parsed["API"].value, "sk-real",
            "the final newline is dropped"
        );
        assert_eq!(parsed["API"].allowed_hosts, vec!["api.example.com"]);
        assert_eq!(parsed["OTHER"].value, "from-stdin");
        assert_eq!(parsed["OTHER"].allowed_hosts, vec!["*.example.org"]);
        let inline = parse_secrets(&["API=sk-real".into()], &[], &mut stdin).expect_err("inline");
        assert!(
            inline.0.contains("@FILE") && !inline.0.contains("sk-real"),
            "{}",
            inline.0
        );
        let e = parse_secrets(&[file_arg], &[], &mut stdin).expect_err("no @");
        assert!(e.0.contains("@FILE"), "{}", e.0);
        let e = parse_secrets(&[], &["NOPE=a.com".into()], &mut stdin).expect_err("no secret");
        assert!(e.0.contains("--secret NOPE"), "{}", e.0);
        assert!(
            parse(&["secret", "a", "API=@-"]).is_err(),
            "--host is required"
        );
    }
}
