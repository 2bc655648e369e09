//! Apps: the definition of a long-running service (what a user writes) and its status (what the
//! master reports). Field names match the TOML and JSON workload files in `configs/apps/`.

use crate::Millis;
use crate::command::TaskCommand;
use crate::container::{ContainerSpec, Volume};
use crate::error::ValidationError;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A service definition. Every field but `id` and one of `cmd`/`args` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDefinition {
    /// Unique name: lowercase letters, digits, `-` and `.`, starting with a letter or digit.
    pub id: String,
    /// A shell command line, run with `/bin/sh -c`. Exactly one of `cmd` and `args` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// A program and its arguments, executed directly without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables added to every task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values come from secrets: `{ DB_PASSWORD = "db/password" }`.
    /// Deploying it needs read access to those secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Files of the task's sandbox (mode 0400) whose content is a secret:
    /// `{ "db.pass" = "db/password" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<String, String>,
    /// The user the task runs as; default: the agent's (`nobody` when the agent runs as root),
    /// or in a container the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The OCI image the instances run from; without it they run on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// Host directories mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// CPU shares per instance.
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory per instance in MiB.
    #[serde(default = "default_mem")]
    pub mem: f64,
    /// Disk per instance in MiB.
    #[serde(default)]
    pub disk: f64,
    /// Whole GPUs per instance.
    #[serde(default)]
    pub gpus: u32,
    /// How many instances to keep running.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// Named ports each instance listens on; `port = 0` (the default) picks a free one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortDefinition>,
    /// Health checks; an instance failing one `max_consecutive_failures` times is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Placement constraints, e.g. `[["hostname", "UNIQUE"], ["zone", "GROUP_BY", "3"]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Delay between relaunches of failing instances.
    #[serde(default)]
    pub backoff: Backoff,
    /// Seconds between SIGTERM and SIGKILL when an instance is stopped.
    #[serde(default = "default_kill_grace_period")]
    pub kill_grace_period: f64,
    /// Free-form labels, shown by the API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How a change of the definition rolls out over the running instances (a deployment).
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
}

fn default_cpus() -> f64 {
    0.1
}
fn default_mem() -> f64 {
    32.0
}
fn default_instances() -> u32 {
    1
}
fn default_kill_grace_period() -> f64 {
    5.0
}

/// How a deployment replaces an app's instances (Marathon's upgrade strategy with Nomad's
/// deadline, auto-revert and canaries). The defaults keep every instance serving and allow a
/// full second set of instances during the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStrategy {
    /// Share of `instances` (0.0–1.0) that must stay ready (running and healthy) during a change;
    /// at least `ceil(minimum_health_capacity × instances)` ready instances are kept.
    #[serde(default = "default_minimum_health_capacity")]
    pub minimum_health_capacity: f64,
    /// Share of `instances` (0.0–1.0) that may run in addition during a change: at most
    /// `instances + floor(maximum_over_capacity × instances)` instances run at once (one more
    /// when that bound and the minimum health capacity would leave no room to move).
    #[serde(default = "default_maximum_over_capacity")]
    pub maximum_over_capacity: f64,
    /// Seconds a deployment may go without progress (one more new instance ready) before it
    /// fails; 0 disables the deadline.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: f64,
    /// Whether a failed deployment rolls back to the previous version by itself.
    #[serde(default)]
    pub auto_rollback: bool,
    /// New instances started first (canaries); the deployment then pauses until promoted.
    #[serde(default)]
    pub canary: u32,
    /// Whether healthy canaries promote themselves (no `gantry deployment promote`).
    #[serde(default)]
    pub auto_promote: bool,
}

fn default_minimum_health_capacity() -> f64 {
    1.0
}
fn default_maximum_over_capacity() -> f64 {
    1.0
}
fn default_progress_deadline() -> f64 {
    600.0
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self {
            minimum_health_capacity: default_minimum_health_capacity(),
            maximum_over_capacity: default_maximum_over_capacity(),
            progress_deadline: default_progress_deadline(),
            auto_rollback: false,
            canary: 0,
            auto_promote: false,
        }
    }
}

impl UpgradeStrategy {
    /// Ready instances a deployment of `instances` keeps: `ceil(minimum_health_capacity × n)`.
    pub fn min_ready(&self, instances: u32) -> u32 {
        let n = f64::from(instances) * self.minimum_health_capacity.clamp(0.0, 1.0);
        // Tolerate float noise such as 0.7 × 10 = 7.000000000000001.
        (n - 1e-9).ceil().max(0.0) as u32
    }

    /// Instances a deployment of `instances` may run at once: `n + floor(maximum_over_capacity × n)`,
    /// one more when that equals [`Self::min_ready`] (otherwise nothing could move).
    pub fn max_active(&self, instances: u32) -> u32 {
        let surge = (f64::from(instances) * self.maximum_over_capacity.clamp(0.0, 1.0) + 1e-9).floor() as u32;
        let max = instances.saturating_add(surge);
        if instances > 0 && max <= self.min_ready(instances) { max.saturating_add(1) } else { max }
    }

    /// Checks ranges; `field` prefixes are `upgrade_strategy.*`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (name, value) in [
            ("minimum_health_capacity", self.minimum_health_capacity),
            ("maximum_over_capacity", self.maximum_over_capacity),
        ] {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(ValidationError::new(
                    format!("upgrade_strategy.{name}"),
                    format!("`{name}` is a share of the instances between 0.0 and 1.0, got {value}"),
                ));
            }
        }
        if !self.progress_deadline.is_finite() || self.progress_deadline < 0.0 {
            return Err(ValidationError::new(
                "upgrade_strategy.progress_deadline",
                "`progress_deadline` is a non-negative number of seconds (0 disables it)",
            ));
        }
        if self.auto_promote && self.canary == 0 {
            return Err(ValidationError::new(
                "upgrade_strategy.auto_promote",
                "`auto_promote` needs `canary` (the number of canary instances) to be at least 1",
            ));
        }
        Ok(())
    }
}

/// A named port of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDefinition {
    /// Name, exported to the task as `PORT_<NAME>` (upper-cased, `-` becomes `_`).
    pub name: String,
    /// A fixed host port, or 0 for any free port of the agent.
    #[serde(default)]
    pub port: u16,
}

/// How a health check reaches the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthProtocol {
    /// `GET http://127.0.0.1:<port><path>`; 2xx and 3xx are healthy.
    Http,
    /// A TCP connection to `127.0.0.1:<port>` succeeds.
    Tcp,
    /// `/bin/sh -c <command>` in the task's sandbox exits 0.
    Command,
}

/// A health check of an app's instances, run by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP, TCP or COMMAND.
    pub protocol: HealthProtocol,
    /// The app port to check (HTTP, TCP); defaults to the first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Path of the HTTP request.
    #[serde(default = "default_path")]
    pub path: String,
    /// The command of a COMMAND check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Seconds after start during which failures are not counted (until the first success).
    #[serde(default = "default_grace_period")]
    pub grace_period: f64,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval: f64,
    /// Seconds before one check counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Consecutive failures after which the instance is killed and replaced.
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u32,
}

fn default_path() -> String {
    "/".to_string()
}
fn default_grace_period() -> f64 {
    15.0
}
fn default_interval() -> f64 {
    2.0
}
fn default_timeout() -> f64 {
    2.0
}
fn default_max_failures() -> u32 {
    3
}

/// Relaunch delay for failing instances: `seconds * factor^(failures-1)`, at most `max_delay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failure, in seconds.
    #[serde(default = "default_backoff_seconds")]
    pub seconds: f64,
    /// Multiplier applied per further consecutive failure.
    #[serde(default = "default_backoff_factor")]
    pub factor: f64,
    /// Upper bound of the delay, in seconds.
    #[serde(default = "default_backoff_max")]
    pub max_delay: f64,
}

fn default_backoff_seconds() -> f64 {
    1.0
}
fn default_backoff_factor() -> f64 {
    1.15
}
fn default_backoff_max() -> f64 {
    300.0
}

impl Default for Backoff {
    fn default() -> Self {
        Self { seconds: default_backoff_seconds(), factor: default_backoff_factor(), max_delay: default_backoff_max() }
    }
}

impl Backoff {
    /// The delay in seconds after `failures` consecutive failures (0 failures: no delay).
    pub fn delay_seconds(&self, failures: u32) -> f64 {
        if failures == 0 {
            return 0.0;
        }
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        (self.seconds * self.factor.powi(exponent)).min(self.max_delay)
    }
}

/// A placement rule on `hostname` or any agent attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Constraint {
    /// `hostname` or an attribute name.
    pub field: String,
    /// The rule.
    pub operator: ConstraintOperator,
    /// The operator's argument, where it takes one.
    pub value: Option<String>,
}

/// Marathon's constraint operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConstraintOperator {
    /// At most one instance per distinct value of the field.
    Unique,
    /// Every instance on agents whose field equals the value (or all on one value, if none given).
    Cluster,
    /// Spread instances evenly across the field's values (optionally at least N values).
    GroupBy,
    /// Only agents whose field matches the regular expression value.
    Like,
    /// Only agents whose field does not match the regular expression value.
    Unlike,
    /// At most N instances per distinct value of the field.
    MaxPer,
}

impl ConstraintOperator {
    /// Parses an operator name as written in workload files.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "UNIQUE" => Self::Unique,
            "CLUSTER" => Self::Cluster,
            "GROUP_BY" => Self::GroupBy,
            "LIKE" => Self::Like,
            "UNLIKE" => Self::Unlike,
            "MAX_PER" => Self::MaxPer,
            _ => return None,
        })
    }

    /// The name as written in workload files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unique => "UNIQUE",
            Self::Cluster => "CLUSTER",
            Self::GroupBy => "GROUP_BY",
            Self::Like => "LIKE",
            Self::Unlike => "UNLIKE",
            Self::MaxPer => "MAX_PER",
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {} {}", self.operator.name(), self.field, v),
            None => write!(f, "{} {}", self.operator.name(), self.field),
        }
    }
}

impl TryFrom<Vec<String>> for Constraint {
    type Error = String;

    fn try_from(parts: Vec<String>) -> Result<Self, Self::Error> {
        let (field, op, value) = match parts.as_slice() {
            [field, op] => (field, op, None),
            [field, op, value] => (field, op, Some(value.clone())),
            _ => {
                return Err(format!(
                    "a constraint is [field, OPERATOR] or [field, OPERATOR, value], got {} items",
                    parts.len()
                ));
            }
        };
        let operator = ConstraintOperator::parse(op).ok_or_else(|| {
            format!("unknown constraint operator `{op}`; use UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE or MAX_PER")
        })?;
        Ok(Constraint { field: field.clone(), operator, value })
    }
}

impl From<Constraint> for Vec<String> {
    fn from(c: Constraint) -> Self {
        let mut v = vec![c.field, c.operator.name().to_string()];
        v.extend(c.value);
        v
    }
}

impl AppDefinition {
    /// The resources one instance needs, without ports.
    pub fn resources(&self) -> Resources {
        Resources::scalar(self.cpus, self.mem, self.disk, self.gpus)
    }

    /// The name of every secret the app's tasks read (environment, files, registry).
    pub fn secret_names(&self) -> impl Iterator<Item = &String> {
        let registry = self.container.as_ref().and_then(|c| c.registry_auth.as_ref());
        self.secrets.values().chain(self.secret_files.values()).chain(registry)
    }

    /// Checks everything the types cannot: names, amounts, references between fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id(&self.id).map_err(|m| ValidationError::new("id", m))?;
        let command = TaskCommand {
            cmd: &self.cmd,
            args: &self.args,
            env: &self.env,
            cpus: self.cpus,
            mem: self.mem,
            disk: self.disk,
            container: self.container.as_ref(),
            volumes: &self.volumes,
        };
        command.validate("")?;
        crate::security::validate_secret_refs("", &self.env, &self.secrets, &self.secret_files)?;
        if let Some(user) = &self.user {
            crate::security::validate_user("user", user)?;
        }
        let mut names = std::collections::BTreeSet::new();
        let mut fixed = std::collections::BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            if port.name.is_empty() || !port.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ValidationError::new(
                    format!("ports[{i}].name"),
                    "port names use letters, digits, `-` and `_`",
                ));
            }
            if !names.insert(port.name.as_str()) {
                return Err(ValidationError::new(
                    format!("ports[{i}].name"),
                    format!("port name `{}` is used twice", port.name),
                ));
            }
            if port.port != 0 && !fixed.insert(port.port) {
                return Err(ValidationError::new(
                    format!("ports[{i}].port"),
                    format!("port {} is used twice", port.port),
                ));
            }
        }
        for (i, hc) in self.health_checks.iter().enumerate() {
            let at = |f: &str| format!("health_checks[{i}].{f}");
            match hc.protocol {
                HealthProtocol::Http | HealthProtocol::Tcp => {
                    if self.ports.is_empty() {
                        return Err(ValidationError::new(
                            at("protocol"),
                            "HTTP and TCP health checks need the app to declare a port in `ports`",
                        ));
                    }
                    if let Some(name) = &hc.port_name
                        && !names.contains(name.as_str())
                    {
                        return Err(ValidationError::new(
                            at("port_name"),
                            format!("no port named `{name}` in `ports`"),
                        ));
                    }
                    if hc.protocol == HealthProtocol::Http && !hc.path.starts_with('/') {
                        return Err(ValidationError::new(at("path"), "the path must start with `/`"));
                    }
                }
                HealthProtocol::Command => {
                    if hc.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return Err(ValidationError::new(at("command"), "a COMMAND health check needs `command`"));
                    }
                }
            }
            for (name, value) in [("grace_period", hc.grace_period), ("interval", hc.interval), ("timeout", hc.timeout)]
            {
                if !value.is_finite() || value < 0.0 || (name != "grace_period" && value == 0.0) {
                    return Err(ValidationError::new(
                        at(name),
                        format!("`{name}` must be a positive number of seconds"),
                    ));
                }
            }
            if hc.max_consecutive_failures == 0 {
                return Err(ValidationError::new(at("max_consecutive_failures"), "must be at least 1"));
            }
        }
        for (i, c) in self.constraints.iter().enumerate() {
            let at = format!("constraints[{i}]");
            if c.field.is_empty() {
                return Err(ValidationError::new(
                    at,
                    "the constraint field is empty; use `hostname` or an attribute name",
                ));
            }
            match c.operator {
                ConstraintOperator::Unique if c.value.is_some() => {
                    return Err(ValidationError::new(at, "UNIQUE takes no value"));
                }
                ConstraintOperator::Like | ConstraintOperator::Unlike => {
                    let pattern = c.value.as_deref().ok_or_else(|| {
                        ValidationError::new(at.clone(), format!("{} needs a pattern", c.operator.name()))
                    })?;
                    pattern_is_valid(pattern).map_err(|e| ValidationError::new(at.clone(), e))?;
                }
                ConstraintOperator::MaxPer => {
                    let ok = c.value.as_deref().and_then(|v| v.parse::<u32>().ok()).is_some_and(|n| n > 0);
                    if !ok {
                        return Err(ValidationError::new(
                            at,
                            "MAX_PER needs a positive whole number, e.g. [\"zone\", \"MAX_PER\", \"2\"]",
                        ));
                    }
                }
                ConstraintOperator::GroupBy => {
                    if let Some(v) = &c.value
                        && v.parse::<u32>().map_or(true, |n| n == 0)
                    {
                        return Err(ValidationError::new(at, "GROUP_BY takes an optional positive whole number"));
                    }
                }
                _ => {}
            }
        }
        let b = &self.backoff;
        let valid = b.seconds.is_finite()
            && b.seconds >= 0.0
            && b.factor.is_finite()
            && b.factor >= 1.0
            && b.max_delay.is_finite()
            && b.max_delay >= 0.0;
        if !valid {
            return Err(ValidationError::new("backoff", "seconds and max_delay must be ≥ 0 and factor ≥ 1"));
        }
        if !self.kill_grace_period.is_finite() || self.kill_grace_period < 0.0 {
            return Err(ValidationError::new("kill_grace_period", "must be a non-negative number of seconds"));
        }
        self.upgrade_strategy.validate()?;
        if self.upgrade_strategy.canary > self.instances && self.instances > 0 {
            return Err(ValidationError::new(
                "upgrade_strategy.canary",
                format!("{} canaries exceed the {} instances", self.upgrade_strategy.canary, self.instances),
            ));
        }
        Ok(())
    }

    /// The environment name of a port: `PORT_<NAME>` upper-cased with `-` as `_`.
    pub fn port_env_name(name: &str) -> String {
        format!("PORT_{}", name.to_ascii_uppercase().replace('-', "_"))
    }
}

/// Checks an app id.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok_chars = id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_edges = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && !id.ends_with(['.', '-']);
    if id.is_empty() || id.len() > 63 || !ok_chars || !ok_edges {
        return Err(format!(
            "`{id}` is not a valid id: use 1 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a LIKE/UNLIKE pattern: a regular expression matched against the whole value.
pub fn pattern_is_valid(pattern: &str) -> Result<(), String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map(|_| ()).map_err(|e| format!("bad pattern `{pattern}`: {e}"))
}

/// An app as the master reports it: the definition, its version and live status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// The current definition.
    pub definition: AppDefinition,
    /// Increases with every change of the definition (and every restart).
    pub version: u64,
    /// When the app was first created.
    pub created_at: Millis,
    /// When the definition last changed.
    pub updated_at: Millis,
    /// Live counts, filled in by the master when it answers.
    #[serde(default)]
    pub status: AppStatus,
}

/// Live counts of an app's instances and why any are waiting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Instances wanted.
    pub instances: u32,
    /// Tasks launched but not yet running.
    pub staged: u32,
    /// Tasks running.
    pub running: u32,
    /// Running tasks whose health checks pass (equals `running` when there are none).
    pub healthy: u32,
    /// Running tasks whose health checks fail.
    pub unhealthy: u32,
    /// Why instances are not being placed, if any are waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// When the next launch is allowed, while the app backs off after failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<Millis>,
    /// The id of the app's active deployment, if a change is rolling out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(min: f64, over: f64) -> UpgradeStrategy {
        UpgradeStrategy { minimum_health_capacity: min, maximum_over_capacity: over, ..UpgradeStrategy::default() }
    }

    #[test]
    fn upgrade_strategy_bounds_and_defaults() {
        let d = UpgradeStrategy::default();
        assert_eq!((d.min_ready(3), d.max_active(3)), (3, 6));
        assert_eq!((strategy(0.5, 0.0).min_ready(3), strategy(0.5, 0.0).max_active(3)), (2, 3));
        assert_eq!(strategy(0.7, 0.0).min_ready(10), 7, "no float noise");
        // Nothing could move: one extra instance is allowed (as Marathon does).
        assert_eq!(strategy(1.0, 0.0).max_active(3), 4);
        assert_eq!(strategy(0.6, 0.5).max_active(1), 2);
        assert_eq!(strategy(0.0, 0.0).max_active(0), 0);
    }

    #[test]
    fn upgrade_strategy_is_validated() {
        let mut app: AppDefinition =
            toml::from_str("id = \"a\"\ncmd = \"true\"\n[upgrade_strategy]\ncanary = 1\n").expect("parses");
        assert_eq!(app.upgrade_strategy.canary, 1);
        assert!(app.validate().is_ok());
        app.upgrade_strategy.minimum_health_capacity = 1.5;
        assert_eq!(app.validate().expect_err("range").field, "upgrade_strategy.minimum_health_capacity");
        app.upgrade_strategy = UpgradeStrategy { canary: 2, ..UpgradeStrategy::default() };
        assert_eq!(app.validate().expect_err("too many").field, "upgrade_strategy.canary");
        app.upgrade_strategy = UpgradeStrategy { auto_promote: true, ..UpgradeStrategy::default() };
        assert_eq!(app.validate().expect_err("no canary").field, "upgrade_strategy.auto_promote");
        assert!(
            toml::from_str::<AppDefinition>("id = \"a\"\ncmd = \"x\"\n[upgrade_strategy]\ncanaries = 1\n").is_err()
        );
    }
}
