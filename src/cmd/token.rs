//! `gantry token`: create, list, show and revoke API tokens. A token's secret is shown once,
//! when it is created; the master keeps only its hash.

use super::ClientArgs;
use crate::output::{self, Format};
use gantry_api::security::{CreateToken, TokenInfo};
use std::time::Duration;

/// `gantry token …`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Creates a token carrying policies and prints it, this once.
    Create {
        /// Unique name: lowercase letters, digits, `-`, `_`.
        #[arg(long)]
        name: String,
        /// A policy the token carries (repeat for several; their grants add up). Built in:
        /// `admin`, `deployer`, `read-only`.
        #[arg(long = "policy", value_name = "POLICY", required = true)]
        policies: Vec<String>,
        /// How long the token works, e.g. `24h` or `30d` [default: until revoked].
        #[arg(long, value_parser = super::parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists tokens: name, policies, age and expiry (never the secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one token (never its secret).
    Show {
        /// Token name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revokes a token: it stops working at once.
    Revoke {
        /// Token name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows whom the master takes this client for: the token's name, its policies, its expiry.
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a token command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, policies, ttl, client } => {
            let ttl_secs = ttl.map(ttl_secs).transpose()?;
            let created = client.client()?.create_token(&CreateToken { name, policies, ttl_secs }).await?;
            if client.output == Format::Json {
                return output::json(&created);
            }
            // The sentence goes to stderr so that `$(gantry token create …)` holds the token alone.
            eprintln!(
                "Token {} created (policies: {}{}); it will not be shown again:",
                created.info.name,
                created.info.policies.join(", "),
                expiry_clause(created.info.expires_at),
            );
            println!("{}", created.token);
            Ok(())
        }
        TokenCommand::Whoami { client } => {
            let whoami = client.client()?.whoami().await?;
            if client.output == Format::Json {
                return output::json(&whoami);
            }
            println!(
                "{} (policies: {}{})",
                whoami.identity,
                whoami.policies.join(", "),
                expiry_clause(whoami.expires_at)
            );
            Ok(())
        }
        TokenCommand::List { client } => {
            let tokens = client.client()?.list_tokens().await?;
            if client.output == Format::Json {
                return output::json(&tokens);
            }
            let now = gantry_api::now_millis();
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.policies.join(","),
                        format!("{} ago", output::age(t.created_at)),
                        expires(t.expires_at, now),
                    ]
                })
                .collect();
            output::table(&["NAME", "POLICIES", "CREATED", "EXPIRES"], &rows);
            Ok(())
        }
        TokenCommand::Show { name, client } => {
            let token = client.client()?.get_token(&name).await?;
            if client.output == Format::Json {
                return output::json(&token);
            }
            show(&token);
            Ok(())
        }
        TokenCommand::Revoke { name, client } => {
            let token = client.client()?.revoke_token(&name).await?;
            if client.output == Format::Json {
                return output::json(&token);
            }
            println!("Token {} revoked.", token.name);
            Ok(())
        }
    }
}

/// The `--ttl` in whole seconds, at least one.
fn ttl_secs(ttl: Duration) -> anyhow::Result<u64> {
    let secs = ttl.as_secs();
    anyhow::ensure!(secs >= 1, "--ttl must be at least 1s");
    Ok(secs)
}

fn show(token: &TokenInfo) {
    println!("name:     {}", token.name);
    println!("policies: {}", token.policies.join(", "));
    println!("created:  {} ago", output::age(token.created_at));
    println!("expires:  {}", expires(token.expires_at, gantry_api::now_millis()));
}

fn expiry_clause(expires_at: Option<u64>) -> String {
    match expires_at {
        Some(_) => format!("; expires {}", expires(expires_at, gantry_api::now_millis())),
        None => String::new(),
    }
}

/// When a token expires, seen at `now`: `never`, `in 5h` or `expired 2d ago`.
fn expires(expires_at: Option<u64>, now: u64) -> String {
    match expires_at {
        None => "never".to_string(),
        // Rounded up: a token made with `--ttl 30d` reads `in 30d`, not `in 29d`.
        Some(at) if at > now => format!("in {}", compact((at - now).div_ceil(1000))),
        Some(at) => format!("expired {} ago", compact((now - at) / 1000)),
    }
}

/// A compact span like `3s`, `5m`, `2h`, `4d` (the units of [`output::age`]).
fn compact(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_as_a_span_from_now() {
        let now = 1_000_000_000;
        assert_eq!(expires(None, now), "never");
        assert_eq!(expires(Some(now + 24 * 3600 * 1000), now), "in 24h");
        assert_eq!(expires(Some(now + 30 * 1000), now), "in 30s");
        assert_eq!(expires(Some(now + 30 * 86_400 * 1000 - 20), now), "in 30d", "a fresh 30d token");
        assert_eq!(expires(Some(now - 3 * 86_400 * 1000), now), "expired 3d ago");
        assert_eq!(expires(Some(now), now), "expired 0s ago");
    }

    #[test]
    fn ttl_is_whole_seconds_and_not_zero() {
        assert_eq!(ttl_secs(Duration::from_secs(86_400)).expect("a day"), 86_400);
        assert_eq!(ttl_secs(Duration::from_millis(1500)).expect("rounds down"), 1);
        assert!(ttl_secs(Duration::from_millis(500)).is_err());
    }
}
