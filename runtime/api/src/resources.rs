//! Resources: scalar amounts (cpus, mem, disk, gpus) and port ranges, their arithmetic, and the
//! `cpus=2;mem=2048;disk=10000;ports=[31000-31999]` text form used on the command line.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of resources on an agent or needed by a task. `mem` and `disk` are in MiB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU shares; fractions allowed.
    #[serde(default)]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(default)]
    pub mem: f64,
    /// Disk in MiB.
    #[serde(default)]
    pub disk: f64,
    /// Whole GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// Port ranges, inclusive, sorted and non-overlapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// An inclusive range of TCP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port of the range.
    pub begin: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

/// Tolerance for floating point comparisons of scalar resources.
const EPSILON: f64 = 1e-9;

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end) - usize::from(self.begin) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.begin <= port && port <= self.end
    }
}

impl Resources {
    /// Scalar resources only, no ports.
    pub fn scalar(cpus: f64, mem: f64, disk: f64, gpus: u32) -> Self {
        Self { cpus, mem, disk, gpus, ports: Vec::new() }
    }

    /// Whether `need` fits in `self` (scalars only; ports are checked by placement).
    pub fn fits(&self, need: &Resources) -> bool {
        need.cpus <= self.cpus + EPSILON
            && need.mem <= self.mem + EPSILON
            && need.disk <= self.disk + EPSILON
            && need.gpus <= self.gpus
    }

    /// Adds the scalars and ports of `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        self.gpus += other.gpus;
        for port_range in &other.ports {
            for port in port_range.begin..=port_range.end {
                insert_port(&mut self.ports, port);
            }
        }
    }

    /// Subtracts the scalars and ports of `other` from `self`, saturating at zero.
    pub fn subtract(&mut self, other: &Resources) {
        self.cpus = (self.cpus - other.cpus).max(0.0);
        self.mem = (self.mem - other.mem).max(0.0);
        self.disk = (self.disk - other.disk).max(0.0);
        self.gpus = self.gpus.saturating_sub(other.gpus);
        for port_range in &other.ports {
            for port in port_range.begin..=port_range.end {
                remove_port(&mut self.ports, port);
            }
        }
    }

    /// The number of ports in all ranges.
    pub fn port_count(&self) -> usize {
        self.ports.iter().map(PortRange::len).sum()
    }

    /// Whether `port` is among the ranges.
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.iter().any(|r| r.contains(port))
    }

    /// Ports as single-port ranges, merged where adjacent.
    pub fn from_ports(ports: &[u16]) -> Vec<PortRange> {
        let mut ranges = Vec::new();
        for &port in ports {
            insert_port(&mut ranges, port);
        }
        ranges
    }

    /// Parses the text form `cpus=2;mem=2048;disk=10000;gpus=0;ports=[31000-31999,32005]`.
    pub fn parse(text: &str) -> Result<Self, ResourcesParseError> {
        let mut resources = Resources::default();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) =
                part.split_once('=').ok_or_else(|| ResourcesParseError(format!("`{part}` is not `name=value`")))?;
            let (key, value) = (key.trim(), value.trim());
            let scalar =
                || {
                    value.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                        ResourcesParseError(format!("`{key}` must be a non-negative number, got `{value}`"))
                    })
                };
            match key {
                "cpus" => resources.cpus = scalar()?,
                "mem" => resources.mem = scalar()?,
                "disk" => resources.disk = scalar()?,
                "gpus" => {
                    resources.gpus = value
                        .parse()
                        .map_err(|_| ResourcesParseError(format!("`gpus` must be a whole number, got `{value}`")))?
                }
                "ports" => resources.ports = parse_port_ranges(value)?,
                other => {
                    return Err(ResourcesParseError(format!(
                        "unknown resource `{other}`; known: cpus, mem, disk, gpus, ports"
                    )));
                }
            }
        }
        Ok(resources)
    }
}

fn parse_port_ranges(value: &str) -> Result<Vec<PortRange>, ResourcesParseError> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| ResourcesParseError(format!("ports must look like `[31000-31999]`, got `{value}`")))?;
    let mut ranges = Vec::new();
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || {
            ResourcesParseError(format!(
                "bad port range `{item}`: use `BEGIN-END` or `PORT` with 1 ≤ BEGIN ≤ END ≤ 65535"
            ))
        };
        let (begin, end) = match item.split_once('-') {
            Some((b, e)) => (b.trim().parse::<u16>().map_err(|_| bad())?, e.trim().parse::<u16>().map_err(|_| bad())?),
            None => {
                let p = item.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if begin == 0 || begin > end {
            return Err(bad());
        }
        for port in begin..=end {
            insert_port(&mut ranges, port);
        }
    }
    Ok(ranges)
}

fn insert_port(ranges: &mut Vec<PortRange>, port: u16) {
    let idx = ranges.partition_point(|r| r.end < port);
    if idx < ranges.len() && ranges[idx].contains(port) {
        return;
    }
    let joins_prev = idx > 0 && ranges[idx - 1].end.checked_add(1) == Some(port);
    let joins_next = idx < ranges.len() && port.checked_add(1) == Some(ranges[idx].begin);
    match (joins_prev, joins_next) {
        (true, true) => {
            ranges[idx - 1].end = ranges[idx].end;
            ranges.remove(idx);
        }
        (true, false) => ranges[idx - 1].end = port,
        (false, true) => ranges[idx].begin = port,
        (false, false) => ranges.insert(idx, PortRange { begin: port, end: port }),
    }
}

fn remove_port(ranges: &mut Vec<PortRange>, port: u16) {
    let idx = ranges.partition_point(|r| r.end < port);
    if idx >= ranges.len() || !ranges[idx].contains(port) {
        return;
    }
    let range = ranges[idx];
    match (range.begin == port, range.end == port) {
        (true, true) => {
            ranges.remove(idx);
        }
        (true, false) => ranges[idx].begin = port + 1,
        (false, true) => ranges[idx].end = port - 1,
        (false, false) => {
            ranges[idx].end = port - 1;
            ranges.insert(idx + 1, PortRange { begin: port + 1, end: range.end });
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus={};mem={};disk={}", self.cpus, self.mem, self.disk)?;
        if self.gpus > 0 {
            write!(f, ";gpus={}", self.gpus)?;
        }
        if !self.ports.is_empty() {
            let ranges: Vec<String> = self
                .ports
                .iter()
                .map(|r| if r.begin == r.end { r.begin.to_string() } else { format!("{}-{}", r.begin, r.end) })
                .collect();
            write!(f, ";ports=[{}]", ranges.join(","))?;
        }
        Ok(())
    }
}

/// A malformed resources string; the message says which part and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid resources: {0}")]
pub struct ResourcesParseError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_form() {
        let r = Resources::parse("cpus=2;mem=2048;disk=10000;ports=[31000-31999]").expect("valid");
        assert_eq!(r.cpus, 2.0);
        assert_eq!(r.mem, 2048.0);
        assert_eq!(r.disk, 10000.0);
        assert_eq!(r.ports, vec![PortRange { begin: 31000, end: 31999 }]);
        assert_eq!(r.port_count(), 1000);
        assert_eq!(Resources::parse(&r.to_string()).expect("round trip"), r);
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for bad in ["cpus", "cpus=-1", "mem=abc", "ports=31000-31999", "ports=[9-3]", "foo=1", "gpus=1.5"] {
            let err = Resources::parse(bad).expect_err(bad);
            assert!(!err.0.is_empty(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn add_then_subtract_ports_is_identity(ports in proptest::collection::vec(1u16..2000, 0..200), extra in proptest::collection::vec(2000u16..4000, 0..50)) {
            let base = Resources { ports: Resources::from_ports(&ports), ..Resources::default() };
            let other = Resources { ports: Resources::from_ports(&extra), ..Resources::default() };
            let mut sum = base.clone();
            sum.add(&other);
            for p in ports.iter().chain(&extra) {
                prop_assert!(sum.has_port(*p));
            }
            sum.subtract(&other);
            prop_assert_eq!(sum.ports, base.ports.clone());
            let mut distinct = ports.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(base.port_count(), distinct.len());
            for w in base.ports.windows(2) {
                prop_assert!(u32::from(w[0].end) + 1 < u32::from(w[1].begin));
            }
        }
    }
}
