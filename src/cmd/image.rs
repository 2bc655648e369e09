//! `gantry image`: the images agents keep for container tasks: list them, prune them. The
//! master asks each agent (`/api/v1/agents/{id}/images`); agents are asked side by side.

use super::ClientArgs;
use crate::output::{self, Format};
use anyhow::Context;
use gantry_api::image::{AgentImages, AgentImagesPruned, CachedImage};
use gantry_api::{Agent, Client, ClientError};

/// `gantry image …`
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Lists the images cached on agents: references, digest, size, when a launch last used
    /// them, and whether a live task runs from them.
    List {
        /// Only this agent (its id, or the hostname of exactly one agent); default: every agent.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Removes cached images no live task uses: least recently used first until each cache is
    /// at most its size (the agent's image cache limit), or every one with `--all`.
    Prune {
        /// Only this agent (its id, or the hostname of exactly one agent); default: every agent.
        #[arg(long)]
        agent: Option<String>,
        /// Remove every image no live task uses, not only what is over the cache's size.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// An agent asked, as `node list` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    id: String,
    hostname: String,
}

/// Runs an image command.
pub async fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::List { agent, client } => {
            let api = client.client()?;
            let targets = select(&api.list_agents().await?, agent.as_deref())?;
            let answers = futures_util::future::join_all(targets.iter().map(|t| api.agent_images(&t.id))).await;
            let caches = settle(&targets, answers, agent.is_some(), "read the image cache of")?;
            if client.output == Format::Json {
                return output::json(&caches);
            }
            print_caches(&caches);
            Ok(())
        }
        ImageCommand::Prune { agent, all, client } => {
            let api = client.client()?;
            let targets = select(&api.list_agents().await?, agent.as_deref())?;
            let answers = prune_all(&api, &targets, all).await;
            let pruned = settle(&targets, answers, agent.is_some(), "prune the image cache of")?;
            if client.output == Format::Json {
                return output::json(&pruned);
            }
            for report in &pruned {
                for line in prune_lines(report, all) {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}

async fn prune_all(api: &Client, targets: &[Target], all: bool) -> Vec<Result<AgentImagesPruned, ClientError>> {
    futures_util::future::join_all(targets.iter().map(|t| api.prune_agent_images(&t.id, all))).await
}

/// The agents to ask: the one `name` names (an id, or the hostname of exactly one agent), or
/// every agent.
fn select(agents: &[Agent], name: Option<&str>) -> anyhow::Result<Vec<Target>> {
    let target = |a: &Agent| Target { id: a.info.id.clone(), hostname: a.info.hostname.clone() };
    let Some(name) = name else {
        anyhow::ensure!(
            !agents.is_empty(),
            "no agent is registered: start one (`gantry agent`) or `gantry up` a cluster"
        );
        return Ok(agents.iter().map(target).collect());
    };
    if let Some(agent) = agents.iter().find(|a| a.info.id == name) {
        return Ok(vec![target(agent)]);
    }
    let named: Vec<&Agent> = agents.iter().filter(|a| a.info.hostname == name).collect();
    match named.as_slice() {
        [agent] => Ok(vec![target(agent)]),
        [] => anyhow::bail!("no agent `{name}`: `gantry node list` shows their ids and hostnames"),
        many => {
            let ids: Vec<&str> = many.iter().map(|a| a.info.id.as_str()).collect();
            anyhow::bail!("{} agents are registered as `{name}` ({}): name one by its id", ids.len(), ids.join(", "))
        }
    }
}

/// The answers that came back. With one agent named, its error is the command's. With every
/// agent, one where containers cannot run (409) is only noted, on stderr; any other failure is
/// printed there and fails the command once the rest is answered.
fn settle<T>(
    targets: &[Target],
    answers: Vec<Result<T, ClientError>>,
    one: bool,
    action: &str,
) -> anyhow::Result<Vec<T>> {
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    for (target, answer) in targets.iter().zip(answers) {
        match answer {
            Ok(value) => answered.push(value),
            Err(error) if one => {
                return Err(error)
                    .with_context(|| format!("cannot {action} agent {} ({})", target.id, target.hostname));
            }
            Err(error) if error.status() == Some(409) => eprintln!("note: {error}"),
            Err(error) => {
                eprintln!("error: {error}");
                failed.push(target.hostname.clone());
            }
        }
    }
    if !failed.is_empty() {
        let (count, total) = (failed.len(), targets.len());
        anyhow::bail!(
            "could not {action} {count} of {total} agents ({}); see above, or name one with --agent",
            failed.join(", ")
        );
    }
    Ok(answered)
}

fn print_caches(caches: &[AgentImages]) {
    let rows: Vec<Vec<String>> =
        caches.iter().flat_map(|c| c.cache.images.iter().map(|i| image_row(&c.hostname, i))).collect();
    if rows.is_empty() {
        println!("No images are cached on {}.", agents_phrase(caches.len()));
    } else {
        output::table(&["AGENT", "REFERENCE", "DIGEST", "SIZE", "LAST USED", "IN USE"], &rows);
        println!();
    }
    for cache in caches {
        println!("{}", cache_summary(cache));
    }
}

fn agents_phrase(count: usize) -> String {
    if count == 1 { "the agent".to_string() } else { format!("any of the {count} agents") }
}

/// One table row: agent hostname, references, short digest, size, age of last use, in use.
fn image_row(hostname: &str, image: &CachedImage) -> Vec<String> {
    vec![
        hostname.to_string(),
        if image.references.is_empty() { "-".to_string() } else { image.references.join(", ") },
        image.short_digest().to_string(),
        bytes(image.size_bytes),
        format!("{} ago", output::age(image.last_used)),
        if image.in_use { "yes" } else { "no" }.to_string(),
    ]
}

fn cache_summary(cache: &AgentImages) -> String {
    let count = cache.cache.images.len();
    let in_use = cache.cache.images.iter().filter(|i| i.in_use).count();
    format!(
        "{} ({}): {count} image{}, {in_use} in use, {} of {} cached",
        cache.hostname,
        cache.agent_id,
        if count == 1 { "" } else { "s" },
        bytes(cache.cache.total_bytes),
        bytes(cache.cache.max_bytes)
    )
}

/// What a prune did on one agent, for people: a summary line, then each image removed and each
/// file that could not be.
fn prune_lines(pruned: &AgentImagesPruned, all: bool) -> Vec<String> {
    let report = &pruned.report;
    let removed = report.removed.len();
    let why_kept = match (removed, report.remaining_bytes, all) {
        (0, 0, _) => "",
        (0, _, true) => " (every image left is in use)",
        (0, _, false) => " (within the cache's size; --all removes every image not in use)",
        _ => "",
    };
    let mut lines = vec![format!(
        "{} ({}): removed {removed} image{}, freed {}; {} cached{why_kept}",
        pruned.hostname,
        pruned.agent_id,
        if removed == 1 { "" } else { "s" },
        bytes(report.freed_bytes),
        bytes(report.remaining_bytes)
    )];
    for image in &report.removed {
        let name = if image.references.is_empty() { "-".to_string() } else { image.references.join(", ") };
        lines.push(format!("  removed {name} ({}, {})", image.short_digest(), bytes(image.size_bytes)));
    }
    for failure in &report.failures {
        lines.push(format!("  could not remove {failure} (the next prune tries again)"));
    }
    lines
}

/// A size in binary units, e.g. `512 B`, `1.5 MiB`, `20.0 GiB`.
fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if value < 1024 {
        return format!("{value} B");
    }
    let mut size = value as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::image::{ImageCache, ImagePruneReport};
    use gantry_api::{AgentInfo, AgentState, ApiError, Resources};

    fn agent(id: &str, hostname: &str) -> Agent {
        Agent {
            info: AgentInfo {
                id: id.into(),
                hostname: hostname.into(),
                endpoint: "https://127.0.0.1:1".into(),
                resources: Resources::default(),
                attributes: Default::default(),
                version: "0".into(),
            },
            state: AgentState::Active,
            drain: None,
            registered_at: 0,
            last_seen_at: 0,
            used: Resources::default(),
            tasks: 0,
        }
    }

    fn target(id: &str, hostname: &str) -> Target {
        Target { id: id.into(), hostname: hostname.into() }
    }

    fn image(reference: &str, in_use: bool) -> CachedImage {
        CachedImage {
            references: vec![reference.into()],
            manifest_digest: "sha256:0123456789abcdef".into(),
            size_bytes: 3 << 20,
            last_used: gantry_api::now_millis(),
            in_use,
        }
    }

    fn api_error(status: u16, message: &str) -> ClientError {
        ClientError::Api { status, error: ApiError { message: message.into(), field: None } }
    }

    #[test]
    fn agents_are_chosen_by_id_or_unique_hostname_or_all() {
        let agents = [agent("a1", "node-1"), agent("a2", "node-2"), agent("a3", "node-2")];
        assert_eq!(select(&agents, None).expect("all").len(), 3);
        assert_eq!(select(&agents, Some("a2")).expect("by id"), vec![target("a2", "node-2")]);
        assert_eq!(select(&agents, Some("node-1")).expect("by hostname"), vec![target("a1", "node-1")]);
        let ambiguous = select(&agents, Some("node-2")).expect_err("two agents").to_string();
        assert!(ambiguous.contains("a2, a3") && ambiguous.contains("by its id"), "{ambiguous}");
        let unknown = select(&agents, Some("nope")).expect_err("unknown").to_string();
        assert!(unknown.contains("gantry node list"), "{unknown}");
        assert!(select(&[], None).expect_err("none").to_string().contains("no agent is registered"));
    }

    #[test]
    fn with_every_agent_those_without_containers_are_noted_and_failures_fail_the_command() {
        let targets = [target("a1", "node-1"), target("a2", "node-2"), target("a3", "node-3")];
        let answers = vec![Ok(1), Err(api_error(409, "containers cannot run on agent `a2`")), Ok(3)];
        assert_eq!(settle(&targets, answers, false, "read").expect("409 is a note"), vec![1, 3]);
        let answers = vec![Ok(1), Err(api_error(502, "cannot reach agent `a2`")), Ok(3)];
        let error = settle(&targets, answers, false, "read the image cache of").expect_err("502").to_string();
        assert!(error.contains("could not read the image cache of 1 of 3 agents (node-2)"), "{error}");
    }

    #[test]
    fn with_one_agent_named_its_error_is_the_command_s() {
        let targets = [target("a2", "node-2")];
        let answers: Vec<Result<u8, _>> = vec![Err(api_error(409, "containers cannot run on agent `a2`: not root"))];
        let error = settle(&targets, answers, true, "read the image cache of").expect_err("409");
        let text = format!("{error:#}");
        assert!(text.starts_with("cannot read the image cache of agent a2 (node-2): containers cannot run"), "{text}");
    }

    #[test]
    fn rows_and_summaries_say_size_age_and_use() {
        let row = image_row("node-1", &image("r/web:1", true));
        assert_eq!(row[..4], ["node-1", "r/web:1", "0123456789ab", "3.0 MiB"]);
        assert!(row[4].ends_with("s ago"), "{}", row[4]);
        assert_eq!(row[5], "yes");
        let cache = AgentImages {
            agent_id: "a1".into(),
            hostname: "node-1".into(),
            cache: ImageCache { total_bytes: 3 << 20, max_bytes: 20 << 30, images: vec![image("r/web:1", true)] },
        };
        assert_eq!(cache_summary(&cache), "node-1 (a1): 1 image, 1 in use, 3.0 MiB of 20.0 GiB cached");
    }

    #[test]
    fn a_prune_says_what_it_removed_and_freed() {
        let pruned = AgentImagesPruned {
            agent_id: "a1".into(),
            hostname: "node-1".into(),
            report: ImagePruneReport {
                removed: vec![image("r/old:1", false)],
                freed_bytes: 3 << 20,
                remaining_bytes: 0,
                failures: vec!["layer sha256:x: busy".into()],
            },
        };
        assert_eq!(
            prune_lines(&pruned, true),
            vec![
                "node-1 (a1): removed 1 image, freed 3.0 MiB; 0 B cached",
                "  removed r/old:1 (0123456789ab, 3.0 MiB)",
                "  could not remove layer sha256:x: busy (the next prune tries again)",
            ]
        );
        let kept = AgentImagesPruned {
            report: ImagePruneReport { remaining_bytes: 1024, ..ImagePruneReport::default() },
            ..pruned.clone()
        };
        assert!(
            prune_lines(&kept, false)[0]
                .ends_with("1.0 KiB cached (within the cache's size; --all removes every image not in use)")
        );
        assert!(prune_lines(&kept, true)[0].ends_with("1.0 KiB cached (every image left is in use)"));
    }

    #[test]
    fn sizes_are_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 30), "20.0 GiB");
    }
}
