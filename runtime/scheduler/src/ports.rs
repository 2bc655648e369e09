//! Host ports for one instance on one agent.
//!
//! Owns whether an agent can give the next instance its ports and which ones it gets: fixed ports
//! as requested, and for each `0` the lowest free port not otherwise used. It reads free ranges and
//! never changes them; the caller subtracts what was chosen.

use gantry_api::{PortRange, Resources};

/// Why an agent cannot give one more instance its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortage {
    /// This fixed port is not free (or already taken by an instance placed in this call).
    Taken(u16),
    /// Too few free ports for the dynamic ones.
    TooFew,
}

/// Whether `port` is in the sorted, non-overlapping `ranges`.
pub(crate) fn is_free(ranges: &[PortRange], port: u16) -> bool {
    let idx = ranges.partition_point(|r| r.end < port);
    ranges.get(idx).is_some_and(|r| r.contains(port))
}

/// A fixed port requested more than once per instance, which no agent can satisfy.
pub(crate) fn duplicate_fixed(requested: &[u16]) -> Option<u16> {
    let mut fixed: Vec<u16> = requested.iter().copied().filter(|&p| p != 0).collect();
    fixed.sort_unstable();
    fixed.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Whether an agent that already received `already` instances in this call can give one more its
/// ports. `fixed` are distinct; `dynamic` is the number of `0` entries.
pub(crate) fn check(free: &Resources, fixed: &[u16], dynamic: usize, already: usize) -> Result<(), Shortage> {
    if already > 0
        && let Some(&port) = fixed.first()
    {
        return Err(Shortage::Taken(port));
    }
    if let Some(&port) = fixed.iter().find(|&&p| !is_free(&free.ports, p)) {
        return Err(Shortage::Taken(port));
    }
    if dynamic > 0 && free.port_count() - fixed.len() < dynamic * (already + 1) {
        return Err(Shortage::TooFew);
    }
    Ok(())
}

/// The host ports of the next instance, one per requested entry, after `check` passed. Instances
/// placed earlier in this call took the lowest `already * dynamic` free ports (fixed ports allow
/// only one instance per agent, so they are never combined with `already > 0`).
pub(crate) fn choose(free: &[PortRange], requested: &[u16], fixed: &[u16], dynamic: usize, already: usize) -> Vec<u16> {
    let mut lowest = lowest_free(free, fixed, already * dynamic, dynamic).into_iter();
    requested
        .iter()
        .map(|&p| if p == 0 { lowest.next().expect("check counted enough free ports") } else { p })
        .collect()
}

/// `take` free ports in ascending order, leaving out `exclude` and the first `skip` others.
fn lowest_free(ranges: &[PortRange], exclude: &[u16], mut skip: usize, take: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(take);
    for range in ranges {
        if out.len() == take {
            break;
        }
        let mut port = u32::from(range.begin);
        if exclude.is_empty() {
            let jump = skip.min(range.len());
            port += u32::try_from(jump).expect("a range holds at most 65536 ports");
            skip -= jump;
        }
        while port <= u32::from(range.end) && out.len() < take {
            let p = u16::try_from(port).expect("port is at most the range end");
            port += 1;
            if exclude.contains(&p) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(ports: &[(u16, u16)]) -> Resources {
        Resources {
            ports: ports.iter().map(|&(begin, end)| PortRange { begin, end }).collect(),
            ..Resources::default()
        }
    }

    #[test]
    fn fixed_ports_must_be_free_and_once_per_agent() {
        let f = free(&[(8000, 8010)]);
        assert_eq!(check(&f, &[8005], 0, 0), Ok(()));
        assert_eq!(check(&f, &[9000], 0, 0), Err(Shortage::Taken(9000)));
        assert_eq!(check(&f, &[8005], 0, 1), Err(Shortage::Taken(8005)));
        assert!(is_free(&f.ports, 8010) && !is_free(&f.ports, 8011) && !is_free(&f.ports, 7999));
    }

    #[test]
    fn dynamic_ports_count_earlier_instances() {
        let f = free(&[(1, 2), (10, 12)]);
        assert_eq!(check(&f, &[], 2, 1), Ok(()));
        assert_eq!(check(&f, &[], 2, 2), Err(Shortage::TooFew));
        assert_eq!(check(&f, &[10], 4, 0), Ok(()));
        assert_eq!(check(&f, &[10], 5, 0), Err(Shortage::TooFew));
    }

    #[test]
    fn dynamic_ports_are_the_lowest_unused() {
        let f = free(&[(1, 2), (10, 12)]);
        assert_eq!(choose(&f.ports, &[0, 1, 0], &[1], 2, 0), vec![2, 1, 10]);
        assert_eq!(choose(&f.ports, &[0, 0], &[], 2, 1), vec![10, 11]);
        assert_eq!(choose(&f.ports, &[0], &[], 1, 4), vec![12]);
        assert_eq!(choose(&free(&[(65535, 65535)]).ports, &[0], &[], 1, 0), vec![65535]);
    }

    #[test]
    fn duplicates_among_fixed_ports_are_found() {
        assert_eq!(duplicate_fixed(&[0, 80, 0, 443]), None);
        assert_eq!(duplicate_fixed(&[443, 80, 443]), Some(443));
    }
}
