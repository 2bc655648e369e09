//! What a task may use ([`Limits`], computed from its launch and the agent's settings) and what
//! the executor made of it ([`LimitsRecord`], the sandbox's `limits.json`): each limit with
//! how it is enforced, or why it is not. Pure.

use gantry_api::Resources;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Bytes in a MiB: `mem` and `disk` of [`Resources`] are in MiB.
pub const MIB: u64 = 1024 * 1024;

/// Name of the sandbox file holding the [`LimitsRecord`].
pub const LIMITS_FILE: &str = "limits.json";

/// The limits of one task; `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs: a quota of `cpus` × the period, and a weight proportional to it.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory (and memory + swap) in bytes.
    #[serde(default)]
    pub mem_bytes: Option<u64>,
    /// Processes and threads at once.
    #[serde(default)]
    pub pids: Option<u64>,
    /// Disk used by the sandbox, in bytes.
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// Device nodes the task may not open, as cgroup v1 `devices.deny` rules (`c 195:1 rwm`):
    /// the agent's GPUs it was not given (see [`Limits::deny_devices`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_devices: Vec<String>,
}

impl Limits {
    /// The limits of a task reserving `resources` (a zero amount is no limit), with the agent's
    /// per-task `pids` limit.
    pub fn from_resources(resources: &Resources, pids: Option<u64>) -> Self {
        let bytes = |mib: f64| (mib > 0.0 && mib.is_finite()).then(|| (mib * MIB as f64).round() as u64);
        Self {
            cpus: (resources.cpus > 0.0 && resources.cpus.is_finite()).then_some(resources.cpus),
            mem_bytes: bytes(resources.mem),
            pids: pids.filter(|&p| p > 0),
            disk_bytes: bytes(resources.disk),
            denied_devices: Vec::new(),
        }
    }

    /// These limits, and the task may not open `rules` (cgroup v1 `devices.deny` lines).
    pub fn deny_devices(mut self, rules: Vec<String>) -> Self {
        self.denied_devices = rules;
        self
    }

    /// Limit `kind` in words (`0.5`, `128 MiB`, `4096`), when the task has it.
    pub fn value(&self, kind: LimitKind) -> Option<String> {
        match kind {
            LimitKind::Cpus => self.cpus.map(cpus),
            LimitKind::Mem => self.mem_bytes.map(mib),
            LimitKind::Pids => self.pids.map(|p| p.to_string()),
            LimitKind::Disk => self.disk_bytes.map(mib),
            LimitKind::Devices => {
                (!self.denied_devices.is_empty()).then(|| format!("deny {}", self.denied_devices.join(", ")))
            }
        }
    }

    /// The cgroup limits (cpus, mem, pids, devices) the task has, each recorded as not enforced
    /// for `reason`.
    pub fn not_enforced(&self, reason: &str) -> Vec<AppliedLimit> {
        [LimitKind::Cpus, LimitKind::Mem, LimitKind::Pids, LimitKind::Devices]
            .into_iter()
            .filter_map(|kind| {
                let enforcement = Enforcement::NotEnforced { reason: reason.to_string() };
                self.value(kind).map(|value| AppliedLimit { kind, value, enforcement })
            })
            .collect()
    }
}

/// The agent's settings for the limits of every task (`AgentConfig::task_limits`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Processes and threads a task may have at once; `None`: no limit.
    pub pids_per_task: Option<u64>,
    /// How often the executor measures a sandbox's disk usage against its `disk` limit.
    pub disk_check_interval: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { pids_per_task: Some(DEFAULT_PIDS_PER_TASK), disk_check_interval: DEFAULT_DISK_CHECK_INTERVAL }
    }
}

/// The default pids limit of a task.
pub const DEFAULT_PIDS_PER_TASK: u64 = 4096;
/// The default interval of the disk usage check.
pub const DEFAULT_DISK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// `cpus`.
    Cpus,
    /// `mem`.
    Mem,
    /// The pids limit.
    Pids,
    /// `disk`.
    Disk,
    /// The device nodes denied: the agent's GPUs the task was not given.
    Devices,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpus => "cpus",
            Self::Mem => "mem",
            Self::Pids => "pids",
            Self::Disk => "disk",
            Self::Devices => "devices",
        })
    }
}

/// How a limit is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Enforcement {
    /// By cgroup v1 files, e.g. `cpu.cfs_quota_us`.
    CgroupV1 {
        /// The files written.
        files: Vec<String>,
    },
    /// By cgroup v2 files, e.g. `memory.max`.
    CgroupV2 {
        /// The files written.
        files: Vec<String>,
    },
    /// By the executor measuring the sandbox's usage and killing the task above the limit.
    DiskWatch {
        /// The interval between two measurements, in milliseconds.
        interval_ms: u64,
    },
    /// Not at all.
    NotEnforced {
        /// Why, and how to get it enforced.
        reason: String,
    },
}

/// One limit of a task as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedLimit {
    /// Which limit.
    pub kind: LimitKind,
    /// The limit, in words: `0.5`, `128 MiB`, `4096`.
    pub value: String,
    /// How it is enforced.
    pub enforcement: Enforcement,
}

impl AppliedLimit {
    /// Whether the limit is enforced.
    pub fn is_enforced(&self) -> bool {
        !matches!(self.enforcement, Enforcement::NotEnforced { .. })
    }
}

impl fmt::Display for AppliedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.kind, self.value)?;
        match &self.enforcement {
            Enforcement::CgroupV1 { files } => write!(f, "cgroup v1 ({})", files.join(", ")),
            Enforcement::CgroupV2 { files } => write!(f, "cgroup v2 ({})", files.join(", ")),
            Enforcement::DiskWatch { interval_ms } => write!(f, "sandbox usage checked every {interval_ms} ms"),
            Enforcement::NotEnforced { reason } => write!(f, "NOT enforced: {reason}"),
        }
    }
}

/// What the executor applied to a task (`limits.json`), for the agent to report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitsRecord {
    /// The task's cgroup directories (one per hierarchy).
    pub cgroups: Vec<PathBuf>,
    /// Every limit the task has, enforced or not.
    pub limits: Vec<AppliedLimit>,
}

impl LimitsRecord {
    /// The limits that are not enforced.
    pub fn not_enforced(&self) -> impl Iterator<Item = &AppliedLimit> {
        self.limits.iter().filter(|l| !l.is_enforced())
    }
}

/// A limit the task went over; the executor stopped it for that (`exit.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "snake_case")]
pub enum LimitExceeded {
    /// The kernel's OOM killer killed a process of the task at its memory limit.
    Memory {
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The sandbox used more disk than allowed.
    Disk {
        /// The usage measured, in bytes.
        used_bytes: u64,
        /// The limit, in bytes.
        limit_bytes: u64,
    },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Memory { limit_bytes } => write!(f, "out of memory (limit {})", mib(limit_bytes)),
            Self::Disk { used_bytes, limit_bytes } => {
                write!(f, "disk usage {} exceeds its limit of {}", mib(used_bytes), mib(limit_bytes))
            }
        }
    }
}

/// `bytes` as MiB in words: `128 MiB`, `10.5 MiB`.
pub fn mib(bytes: u64) -> String {
    let text = format!("{:.1}", bytes as f64 / MIB as f64);
    format!("{} MiB", text.strip_suffix(".0").unwrap_or(&text))
}

/// `cpus` in words: `0.5`, `2`.
pub fn cpus(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_resources_are_no_limits() {
        let resources = Resources::scalar(0.5, 128.0, 0.0, 0);
        let limits = Limits::from_resources(&resources, Some(64));
        let expected = Limits { cpus: Some(0.5), mem_bytes: Some(128 * MIB), pids: Some(64), ..Limits::default() };
        assert_eq!(limits, expected);
        assert_eq!(Limits::from_resources(&Resources::default(), Some(0)), Limits::default());
    }

    #[test]
    fn exceeded_limits_read_as_the_issue_says() {
        assert_eq!(LimitExceeded::Memory { limit_bytes: 128 * MIB }.to_string(), "out of memory (limit 128 MiB)");
        let disk = LimitExceeded::Disk { used_bytes: 21 * MIB + MIB / 2, limit_bytes: 10 * MIB };
        assert_eq!(disk.to_string(), "disk usage 21.5 MiB exceeds its limit of 10 MiB");
        assert_eq!(cpus(0.5), "0.5");
        assert_eq!(cpus(2.0), "2");
    }

    #[test]
    fn the_record_says_what_is_not_enforced() {
        let record = LimitsRecord {
            cgroups: Vec::new(),
            limits: vec![
                AppliedLimit {
                    kind: LimitKind::Cpus,
                    value: "0.5".into(),
                    enforcement: Enforcement::CgroupV1 { files: vec!["cpu.cfs_quota_us".into()] },
                },
                AppliedLimit {
                    kind: LimitKind::Mem,
                    value: "32 MiB".into(),
                    enforcement: Enforcement::NotEnforced { reason: "no memory controller".into() },
                },
            ],
        };
        let missing: Vec<String> = record.not_enforced().map(ToString::to_string).collect();
        assert_eq!(missing, ["mem 32 MiB: NOT enforced: no memory controller"]);
        let json = serde_json::to_string(&record).expect("json");
        assert_eq!(serde_json::from_str::<LimitsRecord>(&json).expect("parse"), record);
    }
}
