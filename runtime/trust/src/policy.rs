//! API-token policies: per resource [`Kind`], the [`Level`] of access a token is granted, either
//! one level for the whole kind or levels by id prefix. This module owns the policy format (JSON
//! over the API, TOML in files), its validation, the built-in policies and the decision whether a
//! set of policies allows a request.
//!
//! It is pure: it reads no file and knows nothing of tokens or HTTP; callers hand it the text and
//! the policies attached to a token.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest id prefix a rule may name (the length of a DNS name).
const MAX_PREFIX_LEN: usize = 253;

/// The longest policy name.
const MAX_NAME_LEN: usize = 64;

/// An error parsing or validating a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a policy; `location` is `file:line:column` for TOML and
    /// `line L, column C` for JSON.
    #[error("{location}: {message}")]
    Parse {
        /// Where in the text the error is.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// A policy name breaks the naming rules.
    #[error("invalid policy name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An id prefix in a rule breaks the prefix rules.
    #[error("invalid prefix {prefix:?} in the rule for {kind}: {reason}")]
    InvalidPrefix {
        /// The kind whose rule holds the prefix.
        kind: Kind,
        /// The prefix as given.
        prefix: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A policy file parsed but holds an invalid policy.
    #[error("{file}: {source}")]
    InFile {
        /// The file as named to [`parse_toml`].
        file: String,
        /// What is invalid.
        source: Box<PolicyError>,
    },
    /// A string that is not a level.
    #[error("unknown level `{value}`: use deny, read or write")]
    UnknownLevel {
        /// The string as given.
        value: String,
    },
    /// A string that is not a resource kind.
    #[error("unknown kind `{value}`: use one of {}", kind_list())]
    UnknownKind {
        /// The string as given.
        value: String,
    },
}

/// How much a token may do with a kind of resource; ordered `Deny < Read < Write`, and each
/// level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing.
    Deny,
    /// Get and list.
    Read,
    /// Read, plus create, change and delete.
    Write,
}

impl Level {
    /// The level's name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Read => "read",
            Level::Write => "write",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deny" => Ok(Level::Deny),
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            _ => Err(PolicyError::UnknownLevel { value: s.to_owned() }),
        }
    }
}

// By hand rather than derived so that a bad value says which values are allowed.
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;

        impl serde::de::Visitor<'_> for LevelVisitor {
            type Value = Level;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a level: deny, read or write")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Level, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(LevelVisitor)
    }
}

/// A kind of resource that policies grant access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Applications.
    Apps,
    /// Jobs.
    Jobs,
    /// Tasks (the running instances of jobs and apps).
    Tasks,
    /// Task logs.
    Logs,
    /// Agents (the machines in the cluster).
    Agents,
    /// Secrets.
    Secrets,
    /// API tokens.
    Tokens,
    /// Policies.
    Policies,
    /// Deployments.
    Deployments,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 9] = [
        Kind::Apps,
        Kind::Jobs,
        Kind::Tasks,
        Kind::Logs,
        Kind::Agents,
        Kind::Secrets,
        Kind::Tokens,
        Kind::Policies,
        Kind::Deployments,
    ];

    /// The kind's name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Apps => "apps",
            Kind::Jobs => "jobs",
            Kind::Tasks => "tasks",
            Kind::Logs => "logs",
            Kind::Agents => "agents",
            Kind::Secrets => "secrets",
            Kind::Tokens => "tokens",
            Kind::Policies => "policies",
            Kind::Deployments => "deployments",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| PolicyError::UnknownKind { value: s.to_owned() })
    }
}

fn kind_list() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

/// What a policy grants for one kind: one level for every object, or levels by id prefix.
///
/// In TOML, `apps = "write"` or `apps = { "team-a-" = "write", "" = "read" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    /// The same level for every object of the kind.
    Level(Level),
    /// Levels by id prefix; the longest prefix of an id decides, and `""` matches every id.
    Prefixes(BTreeMap<String, Level>),
}

// By hand rather than `untagged` so that a bad level inside a rule is reported as such, not as
// "data did not match any variant".
impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;

        impl<'de> serde::de::Visitor<'de> for RuleVisitor {
            type Value = Rule;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a level (deny, read or write) or a table of id prefixes to levels")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rule, E> {
                v.parse().map(Rule::Level).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Rule, A::Error> {
                let mut prefixes = BTreeMap::new();
                while let Some((prefix, level)) = map.next_entry::<String, Level>()? {
                    prefixes.insert(prefix, level);
                }
                Ok(Rule::Prefixes(prefixes))
            }
        }

        deserializer.deserialize_any(RuleVisitor)
    }
}

/// A named set of grants, attached to API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name, unique in the cluster; see [`validate_name`].
    pub name: String,
    /// What the policy is for, shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The grant for each kind; a kind without a rule is denied.
    #[serde(default)]
    pub rules: BTreeMap<Kind, Rule>,
}

impl Policy {
    /// The level this policy grants for the object `id` of `kind`, or, when `id` is `None` (a
    /// request about no one object, such as a create without an id), the level for any object:
    /// the `""` prefix's level when the rule is by prefix.
    pub fn level(&self, kind: Kind, id: Option<&str>) -> Level {
        match self.rules.get(&kind) {
            None => Level::Deny,
            Some(Rule::Level(level)) => *level,
            Some(Rule::Prefixes(prefixes)) => match id {
                Some(id) => prefixes
                    .iter()
                    .filter(|(prefix, _)| id.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .map_or(Level::Deny, |(_, level)| *level),
                None => prefixes.get("").copied().unwrap_or(Level::Deny),
            },
        }
    }

    /// The highest level this policy grants for any object of `kind`; lets a list request
    /// through whose answer is then filtered by [`Policy::level`] per id.
    pub fn most(&self, kind: Kind) -> Level {
        match self.rules.get(&kind) {
            None => Level::Deny,
            Some(Rule::Level(level)) => *level,
            Some(Rule::Prefixes(prefixes)) => prefixes.values().copied().max().unwrap_or(Level::Deny),
        }
    }
}

/// Whether `policies` grant `level` on the object `id` of `kind` (see [`Policy::level`] for
/// `id == None`). Policies are a union of grants: one policy granting enough is enough, and none
/// takes away what another grants. Asking for [`Level::Deny`] is always allowed.
pub fn allows(policies: &[Policy], kind: Kind, level: Level, id: Option<&str>) -> bool {
    level == Level::Deny || policies.iter().any(|p| p.level(kind, id) >= level)
}

/// Whether `policies` grant `level` on at least some object of `kind` (see [`Policy::most`]);
/// for list requests whose answers are then filtered with [`allows`].
pub fn allows_some(policies: &[Policy], kind: Kind, level: Level) -> bool {
    level == Level::Deny || policies.iter().any(|p| p.most(kind) >= level)
}

/// Checks a policy name: 1 to 64 lowercase letters, digits, `-` and `_`, starting with a letter
/// or a digit.
pub fn validate_name(name: &str) -> Result<(), PolicyError> {
    let invalid = |reason| Err(PolicyError::InvalidName { name: name.to_owned(), reason });
    let Some(first) = name.chars().next() else {
        return invalid("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return invalid("use only lowercase letters, digits, `-` and `_`");
    }
    if !first.is_ascii_alphanumeric() {
        return invalid("it must start with a letter or a digit");
    }
    Ok(())
}

/// Checks a whole policy: its name ([`validate_name`]) and every id prefix (at most 253
/// characters, no control characters).
pub fn validate(policy: &Policy) -> Result<(), PolicyError> {
    validate_name(&policy.name)?;
    for (kind, rule) in &policy.rules {
        let Rule::Prefixes(prefixes) = rule else { continue };
        for prefix in prefixes.keys() {
            let invalid = |reason| Err(PolicyError::InvalidPrefix { kind: *kind, prefix: prefix.clone(), reason });
            if prefix.chars().count() > MAX_PREFIX_LEN {
                return invalid("it is longer than 253 characters");
            }
            if prefix.chars().any(char::is_control) {
                return invalid("it holds a control character");
            }
        }
    }
    Ok(())
}

/// The names of the built-in policies, which every cluster has and which cannot be changed.
pub const BUILTIN: [&str; 3] = ["admin", "deployer", "read-only"];

/// The built-in policy called `name`, if there is one.
pub fn builtin(name: &str) -> Option<Policy> {
    let (description, levels): (&str, fn(Kind) -> Level) = match name {
        "admin" => ("Everything: every kind of resource, read and write.", |_| Level::Write),
        "deployer" => {
            ("Deploys workloads: writes apps, jobs, tasks and deployments; reads logs and agents.", |kind| match kind {
                Kind::Apps | Kind::Jobs | Kind::Tasks | Kind::Deployments => Level::Write,
                Kind::Logs | Kind::Agents => Level::Read,
                Kind::Secrets | Kind::Tokens | Kind::Policies => Level::Deny,
            })
        }
        "read-only" => ("Looks at everything except secrets and tokens, changes nothing.", |kind| match kind {
            Kind::Secrets | Kind::Tokens => Level::Deny,
            _ => Level::Read,
        }),
        _ => return None,
    };
    Some(Policy {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        rules: Kind::ALL.into_iter().map(|kind| (kind, Rule::Level(levels(kind)))).collect(),
    })
}

/// Every built-in policy, in the order of [`BUILTIN`].
pub fn builtins() -> Vec<Policy> {
    BUILTIN.into_iter().filter_map(builtin).collect()
}

/// Parses and validates a policy written in TOML; parse errors name `file:line:column`, and
/// validation errors come wrapped in [`PolicyError::InFile`].
pub fn parse_toml(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let location = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{file}:{line}:{column}")
            }
            None => file.to_owned(),
        };
        PolicyError::Parse { location, message: e.message().trim_end().to_owned() }
    })?;
    validate(&policy).map_err(|e| PolicyError::InFile { file: file.to_owned(), source: Box::new(e) })?;
    Ok(policy)
}

/// Parses and validates a policy sent as JSON.
pub fn parse_json(text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).map_or_else(|| message.clone(), str::to_owned);
        PolicyError::Parse { location: format!("line {}, column {}", e.line(), e.column()), message }
    })?;
    validate(&policy)?;
    Ok(policy)
}

/// The 1-based line and column (in characters) of the byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
