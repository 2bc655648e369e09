//! `gantry secret`: store, list, show and delete secrets. A value goes to the master and never
//! comes back: no command prints one, and `show` and `list` give metadata only.

use super::ClientArgs;
use crate::output::{self, Format};
use anyhow::Context;
use gantry_api::security::SecretInfo;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

/// `gantry secret …`
#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Stores a value as the secret's next version: from --from-file, else from stdin (typed
    /// without echo when stdin is a terminal).
    Put {
        /// Secret name, e.g. `db-password` or `team-a/db/password`.
        name: String,
        /// Read the value from this file, byte for byte (a trailing newline is kept).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists secrets: name, version, last change (never the values).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows a secret's metadata (never its value).
    Show {
        /// Secret name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deletes a secret, every version of it.
    Delete {
        /// Secret name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a secret command.
pub async fn run(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Put { name, from_file, client } => {
            let value = read_value(&name, from_file.as_deref())?;
            let secret = client.client()?.put_secret(&name, &value).await?;
            if client.output == Format::Json {
                return output::json(&secret);
            }
            println!("Secret {} stored (version {}).", secret.name, secret.version);
            Ok(())
        }
        SecretCommand::List { client } => {
            let secrets = client.client()?.list_secrets().await?;
            if client.output == Format::Json {
                return output::json(&secrets);
            }
            let rows: Vec<Vec<String>> = secrets
                .iter()
                .map(|s| vec![s.name.clone(), s.version.to_string(), format!("{} ago", output::age(s.updated_at))])
                .collect();
            output::table(&["NAME", "VERSION", "UPDATED"], &rows);
            Ok(())
        }
        SecretCommand::Show { name, client } => {
            let secret = client.client()?.get_secret(&name).await?;
            if client.output == Format::Json {
                return output::json(&secret);
            }
            show(&secret);
            Ok(())
        }
        SecretCommand::Delete { name, client } => {
            let secret = client.client()?.delete_secret(&name).await?;
            if client.output == Format::Json {
                return output::json(&secret);
            }
            println!("Secret {} deleted.", secret.name);
            Ok(())
        }
    }
}

/// The value to store: the file's bytes; else, from a terminal, one line typed without echo (its
/// newline is not part of the value); else every byte of stdin.
fn read_value(name: &str, from_file: Option<&Path>) -> anyhow::Result<String> {
    let (bytes, source) = match from_file {
        Some(file) => (
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
            file.display().to_string(),
        ),
        None if std::io::stdin().is_terminal() => {
            let typed = rpassword::prompt_password(format!("Value of secret {name} (not shown): "))
                .context("cannot read the value from the terminal")?;
            (typed.into_bytes(), "the terminal".to_string())
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("cannot read the value from stdin")?;
            (bytes, "stdin".to_string())
        }
    };
    let value = value_of(bytes, &source)?;
    if value.ends_with('\n') {
        eprintln!(
            "note: the value from {source} ends with a newline, which is stored with it (`printf %s` leaves it out)"
        );
    }
    Ok(value)
}

/// Checks a value read from `source`: UTF-8 text, not empty. Errors never quote the value.
fn value_of(bytes: Vec<u8>, source: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!bytes.is_empty(), "the value from {source} is empty; nothing was stored");
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the value from {source} is not UTF-8 text; nothing was stored"))
}

fn show(secret: &SecretInfo) {
    println!("name:    {}", secret.name);
    println!("version: {}", secret.version);
    println!("created: {} ago", output::age(secret.created_at));
    println!("updated: {} ago", output::age(secret.updated_at));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_byte_for_byte_and_must_be_text() {
        assert_eq!(value_of(b"s3cret\n".to_vec(), "stdin").expect("text"), "s3cret\n");
        let err = value_of(Vec::new(), "stdin").expect_err("empty").to_string();
        assert!(err.contains("empty"), "{err}");
        let err = value_of(vec![b'k', 0xff, 0xfe], "key.bin").expect_err("not UTF-8").to_string();
        assert!(err.contains("key.bin is not UTF-8"), "{err}");
    }

    #[test]
    fn a_file_is_read_as_it_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "line one\nline two\n").expect("write");
        assert_eq!(read_value("db", Some(&file)).expect("read"), "line one\nline two\n");
        let err = read_value("db", Some(&dir.path().join("absent"))).expect_err("missing").to_string();
        assert!(err.contains("cannot read") && err.contains("absent"), "{err}");
    }
}
