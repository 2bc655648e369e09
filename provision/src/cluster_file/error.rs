//! Errors of cluster files, each pointing at `file:line:column`, naming the key and the fix.

use gantry_api::workload::WorkloadError;
use std::ops::Range;

/// A cluster file that could not be read, parsed or validated. Lines and columns are 1-based;
/// `key` is a dotted path such as `runtime.masters` or `pool[1].count`.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The cluster file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key or value the schema does not allow (unknown key, wrong type,
    /// unknown variant, missing key).
    #[error("{path}:{line}:{column}: {key}: {message} (hint: {hint})")]
    Syntax {
        /// The cluster file.
        path: String,
        /// Line of the fault.
        line: usize,
        /// Column of the fault.
        column: usize,
        /// The offending key.
        key: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Well-formed, but a value is impossible (e.g. 2 masters, duplicate pool names).
    #[error("{path}:{line}:{column}: {key}: {message} (hint: {hint})")]
    Invalid {
        /// The cluster file.
        path: String,
        /// Line of the offending value.
        line: usize,
        /// Column of the offending value.
        column: usize,
        /// The offending key.
        key: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A workload file named by `[[workload]]` is missing or invalid.
    #[error("{path}:{line}:{column}: {key}: {source} (hint: {hint})")]
    Workload {
        /// The cluster file.
        path: String,
        /// Line of the `app = …` value.
        line: usize,
        /// Column of the `app = …` value.
        column: usize,
        /// The offending key.
        key: String,
        /// The workload file's own error (it names that file, line and column).
        source: Box<WorkloadError>,
        /// How to fix it.
        hint: String,
    },
}

impl ClusterFileError {
    /// Line and column of the fault, when the error has a position.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Io { .. } => None,
            Self::Syntax { line, column, .. }
            | Self::Invalid { line, column, .. }
            | Self::Workload { line, column, .. } => Some((*line, *column)),
        }
    }

    /// The offending key, when the error names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Io { .. } => None,
            Self::Syntax { key, .. } | Self::Invalid { key, .. } | Self::Workload { key, .. } => Some(key),
        }
    }

    /// An error from the TOML deserializer: its span gives the position, the text around it the key.
    pub(crate) fn from_toml(path: &str, text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_string();
        let offset = error.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        let mut key = key_path_at(text, offset);
        if let Some(missing) = backticked_after(&message, "missing field ") {
            key =
                if key.is_empty() || error.span().is_none() { missing.to_string() } else { format!("{key}.{missing}") };
        }
        let leaf = key.rsplit('.').next().unwrap_or(&key).split('[').next().unwrap_or_default().to_string();
        let hint = if message.starts_with("unknown field") {
            "remove the key or fix its spelling; the keys allowed here are listed above".to_string()
        } else if message.starts_with("missing field") {
            format!("add `{leaf} = …`; {}", hint_for(&leaf))
        } else {
            hint_for(&leaf).to_string()
        };
        let key = if key.is_empty() { "(file)".to_string() } else { key };
        Self::Syntax { path: path.to_string(), line, column, key, message, hint }
    }
}

/// The usual fix for a key's value.
pub(crate) fn hint_for(key: &str) -> &'static str {
    match key {
        "version" => "write `version = 1` at the top of the file",
        "name" => "a DNS label: lowercase letters, digits and `-`, starting with a letter",
        "provider" => "one of local, onprem, aws, gce, azure",
        "masters" => "use 1, or 3 or 5 for high availability",
        "count" => "a whole number, 0 or more",
        "role" => "`agent` (default) or `master`",
        "resources" => "the agent form, e.g. \"cpus=2;mem=2048;disk=10000;ports=[31000-31999]\"",
        "attributes" => "a table of strings, e.g. attributes = { zone = \"a\" }",
        "heartbeat_interval" | "agent_unreachable_timeout" | "connect_timeout" => {
            "a duration such as \"1s\", \"500ms\" or \"2m\""
        }
        "known_hosts" => "`strict` or `accept-new`",
        "port_base" | "ports_per_agent" | "api_port" | "port" => "a port number from 0 to 65535",
        "parallelism" => "a whole number, 1 or more",
        "task_pids" => "a whole number of processes per task, 0 for no limit (the agent's default is 4096)",
        "image_cache_gib" => "a number of GiB above 0, e.g. image_cache_gib = 20",
        "insecure_registries" => "a list of registries, e.g. insecure_registries = [\"registry.lab:5000\"]",
        "cgroup_favordynmods" => "`true` or `false`",
        "app" | "job" => "a path relative to the cluster file, e.g. \"apps/hello.toml\"",
        "cluster" => "add a [cluster] section with `name` and `provider`",
        _ => "see the documented example in configs/local.toml",
    }
}

/// The first backticked word after `prefix` in `message`.
fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next()
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, column)
}

/// Position of a span's start.
pub(crate) fn span_pos(text: &str, span: &Range<usize>) -> (usize, usize) {
    line_col(text, span.start)
}

/// Dotted key path at a byte offset: the enclosing table header (with the index of an array of
/// tables, e.g. `pool[1]`) and the key assigned on that line.
pub(crate) fn key_path_at(text: &str, offset: usize) -> String {
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut line_key = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let index = counts.entry(name.clone()).and_modify(|c| *c += 1).or_insert(0);
            table = format!("{name}[{index}]");
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let name = name.trim();
            let parent = name.split('.').next().unwrap_or(name);
            table = match counts.get(parent) {
                Some(i) if name.contains('.') => format!("{parent}[{i}]{}", &name[parent.len()..]),
                _ => name.to_string(),
            };
        }
        if offset < end || end == text.len() {
            if !trimmed.starts_with('[')
                && let Some((key, _)) = line.split_once('=')
            {
                line_key = key.trim().trim_matches('"').to_string();
            } else if trimmed.starts_with('[') {
                line_key.clear();
            } else {
                let word: String = text[offset.min(text.len())..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                line_key = word;
            }
            break;
        }
        start = end;
    }
    match (table.is_empty(), line_key.is_empty()) {
        (true, _) => line_key,
        (false, true) => table,
        (false, false) => format!("{table}.{line_key}"),
    }
}
