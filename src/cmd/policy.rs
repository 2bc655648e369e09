//! `gantry policy`: apply policies from files, list, show and delete them. Files are parsed and
//! checked here, every one of them, before anything is sent: a typo is reported at its
//! `file:line:column` and no policy is half-applied.

use super::ClientArgs;
use crate::output::{self, Format};
use anyhow::Context;
use gantry_api::security::Policy;
use gantry_trust::policy::BUILTIN;
use std::path::{Path, PathBuf};

/// `gantry policy …`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Creates or replaces policies from TOML (or `.json`) files; see configs/policies/ for examples.
    Apply {
        /// Policy files; each holds one policy.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists policies, the built-in ones included.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one policy, as TOML that `gantry policy apply` takes back.
    Show {
        /// Policy name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deletes a policy.
    Delete {
        /// Policy name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a policy command.
pub async fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Apply { files, client } => {
            let policies = read_files(&files)?;
            let api = client.client()?;
            let mut applied = Vec::with_capacity(policies.len());
            for (file, policy) in &policies {
                let policy =
                    api.put_policy(policy).await.with_context(|| format!("cannot apply {}", file.display()))?;
                if client.output == Format::Table {
                    println!("Policy {} applied from {}.", policy.name, file.display());
                }
                applied.push(policy);
            }
            if client.output == Format::Json {
                return output::json(&applied);
            }
            Ok(())
        }
        PolicyCommand::List { client } => {
            let policies = client.client()?.list_policies().await?;
            if client.output == Format::Json {
                return output::json(&policies);
            }
            let rows: Vec<Vec<String>> = policies
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        if BUILTIN.contains(&p.name.as_str()) { "yes" } else { "-" }.to_string(),
                        p.description.clone().unwrap_or_else(|| "-".to_string()),
                    ]
                })
                .collect();
            output::table(&["NAME", "BUILT-IN", "DESCRIPTION"], &rows);
            Ok(())
        }
        PolicyCommand::Show { name, client } => {
            let policy = client.client()?.get_policy(&name).await?;
            if client.output == Format::Json {
                return output::json(&policy);
            }
            print!("{}", to_toml(&policy)?);
            Ok(())
        }
        PolicyCommand::Delete { name, client } => {
            let policy = client.client()?.delete_policy(&name).await?;
            if client.output == Format::Json {
                return output::json(&policy);
            }
            println!("Policy {} deleted.", policy.name);
            Ok(())
        }
    }
}

/// Reads and checks every file; fails, listing each error, if any file is wrong, if two files
/// hold the same policy or if one redefines a built-in policy.
fn read_files(files: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Policy)>> {
    let mut policies: Vec<(PathBuf, Policy)> = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in files {
        let policy = match read_file(file) {
            Ok(policy) => policy,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        if BUILTIN.contains(&policy.name.as_str()) {
            errors.push(format!(
                "{}: `{}` is a built-in policy and cannot be changed; give yours another name",
                file.display(),
                policy.name
            ));
        } else if let Some((first, _)) = policies.iter().find(|(_, p)| p.name == policy.name) {
            errors.push(format!("{}: policy `{}` is also in {}", file.display(), policy.name, first.display()));
        } else {
            policies.push((file.clone(), policy));
        }
    }
    match errors.as_slice() {
        [] => Ok(policies),
        [one] => anyhow::bail!("{one} (nothing was applied)"),
        many => anyhow::bail!("{} policy files are wrong (nothing was applied):\n  {}", many.len(), many.join("\n  ")),
    }
}

/// Reads one policy file: JSON if its name ends in `.json`, else TOML.
fn read_file(file: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let policy = if file.extension().is_some_and(|e| e == "json") {
        gantry_trust::policy::parse_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    } else {
        gantry_trust::policy::parse_toml(&text, &file.display().to_string())?
    };
    Ok(policy)
}

/// A policy as TOML, the format of policy files.
fn to_toml(policy: &Policy) -> anyhow::Result<String> {
    toml::to_string(policy).with_context(|| format!("cannot write policy `{}` as TOML", policy.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::security::{Kind, Level};

    fn examples() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join("policies");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).expect("configs/policies").map(|e| e.expect("entry").path()).collect();
        files.sort();
        files
    }

    #[test]
    fn every_example_policy_parses() {
        let files = examples();
        assert!(files.len() >= 2, "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            let policy =
                gantry_trust::policy::parse_toml(&text, &file.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(policy.name.as_str()), file.file_stem().and_then(|s| s.to_str()), "name = file name");
            assert!(policy.description.is_some(), "{}", file.display());
            let shown = to_toml(&policy).expect("as TOML");
            assert_eq!(gantry_trust::policy::parse_toml(&shown, "shown").expect("`show` output applies"), policy);
        }
        read_files(&files).expect("the examples apply together");
    }

    #[test]
    fn the_team_a_deployer_writes_only_team_a_workloads() {
        let p = read_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/policies/deployer-team-a.toml"))
            .expect("parses");
        for kind in [Kind::Apps, Kind::Jobs, Kind::Deployments] {
            assert_eq!(p.level(kind, Some("team-a-web")), Level::Write, "{kind}");
            assert_eq!(p.level(kind, Some("team-b-web")), Level::Deny, "{kind}");
            assert_eq!(p.level(kind, None), Level::Deny, "{kind}");
        }
        assert_eq!(p.level(Kind::Tasks, Some("anything")), Level::Read);
        assert_eq!(p.level(Kind::Logs, Some("anything")), Level::Read);
        assert_eq!(p.most(Kind::Secrets), Level::Deny);
    }

    #[test]
    fn bad_files_are_all_reported_and_nothing_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let good = write("good.toml", "name = \"good\"\n[rules]\napps = \"read\"\n");
        let typo = write("typo.toml", "name = \"typo\"\n[rules]\napss = \"read\"\n");
        let json = write("bad.json", "{\"name\": \"j\", \"rules\": {\"apps\": \"all\"}}");
        let admin = write("admin.toml", "name = \"admin\"\n");
        let twice = write("again.toml", "name = \"good\"\n");
        let missing = dir.path().join("missing.toml");

        assert_eq!(read_files(std::slice::from_ref(&good)).expect("good").len(), 1);
        let err = read_files(&[good.clone(), typo, json, admin, twice, missing]).expect_err("bad files").to_string();
        assert!(err.starts_with("5 policy files are wrong (nothing was applied)"), "{err}");
        assert!(err.contains("typo.toml:3:1: unknown variant `apss`"), "{err}");
        assert!(err.contains("bad.json: line 1, column"), "{err}");
        assert!(err.contains("`admin` is a built-in policy"), "{err}");
        assert!(err.contains("again.toml: policy `good` is also in"), "{err}");
        assert!(err.contains("cannot read") && err.contains("missing.toml"), "{err}");

        let json = write("ok.json", "{\"name\": \"j\", \"rules\": {\"apps\": \"read\"}}");
        assert_eq!(read_files(&[json]).expect("json")[0].1.name, "j");
    }
}
