//! The sentence saying why fewer instances than requested were placed.
//!
//! Owns the wording only. It reads a finished search, in which every agent the search dropped
//! carries the cause that dropped it. Agents dropped for lack of room before any constraint was
//! looked at are checked against the constraints here, so that a constraint ruling out every agent
//! is named rather than their room. The cause shared by most agents is reported, with the numbers
//! a user needs to act (agents, values, instances, free resources).

use crate::constraints::{HOSTNAME, Rule};
use crate::placement::{Cause, Search, scalars};
use gantry_api::Resources;
use std::collections::BTreeMap;

pub(crate) fn explain(s: &Search<'_>) -> String {
    if let Some(r) = s.blocked {
        return group_minimum(s, r);
    }
    let n = s.agents.len();
    let causes: Vec<Option<Cause>> = (0..n).map(|i| final_cause(s, i)).collect();
    let mut agents_per_cause: BTreeMap<Cause, usize> = BTreeMap::new();
    for cause in causes.iter().flatten() {
        *agents_per_cause.entry(*cause).or_default() += 1;
    }
    let is_static = |c: &Cause| matches!(c, Cause::Static(_));
    let passed = n - agents_per_cause.iter().filter(|(c, _)| is_static(c)).map(|(_, k)| k).sum::<usize>();
    // The most common cause; on a tie the one earlier in `Cause`'s order.
    let top = |keep: &dyn Fn(&Cause) -> bool| {
        agents_per_cause
            .iter()
            .filter(|(c, _)| keep(c))
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, k)| (*c, *k))
    };
    if passed == 0
        && let Some((Cause::Static(r), k)) = top(&is_static)
    {
        return constraint_unmet(s, r, k, n);
    }
    let Some((cause, k)) = top(&|c| !is_static(c)) else {
        return format!("only {} of {} instances could be placed", s.placed.len(), s.request.count);
    };
    let offered = offered(passed, n);
    match cause {
        Cause::Unique(r) | Cause::MaxPer(r) => {
            let field = s.rules[r].field();
            let values = s.tally.values[s.rule_field[r].expect("UNIQUE and MAX_PER count")].len();
            let instances = counted(s.existing.len() + s.request.count, "instance", "instances");
            let (one, many) = nouns(field);
            if let Cause::Unique(_) = cause {
                format!("no agent satisfies UNIQUE {field}: {}, {instances}", counted(values, one, &many))
            } else {
                format!(
                    "{} reached on every {one} ({}, {instances})",
                    s.rules[r].constraint,
                    counted(values, one, &many)
                )
            }
        }
        Cause::Cluster(r) => {
            let field = s.rules[r].field();
            let f = s.rule_field[r].expect("CLUSTER without value counts");
            let value = s.pins[r].map_or("", |id| s.tally.values[f][id as usize]);
            format!(
                "CLUSTER {field} keeps instances on {field} {value}, and no agent with that value has room: {offered}"
            )
        }
        Cause::Resources => format!(
            "insufficient resources: needs {} per instance; {offered}, the largest free has {}",
            describe(s.request.resources, s.request.resources.gpus > 0),
            describe(&largest_free(s, &causes), s.request.resources.gpus > 0),
        ),
        Cause::Port(port) if k == passed && passed == n => {
            format!("port {port} is not free on any of {}", counted(n, "agent", "agents"))
        }
        Cause::Port(port) => format!("port {port} is not free on {k} of {offered}, and no other agent has room"),
        Cause::PortCount => {
            let most = (0..n)
                .filter(|&i| causes[i] == Some(Cause::PortCount))
                .map(|i| s.agents[i].free.port_count().saturating_sub(s.on_agent[i] as usize * s.dynamic))
                .max()
                .unwrap_or(0);
            format!(
                "not enough free ports: needs {} per instance; {offered}, the most free on one is {most}",
                s.request.ports.len()
            )
        }
        Cause::Static(_) => unreachable!("static causes were filtered out"),
    }
}

/// The cause to report for an agent: a failed constraint wins over a lack of room noticed first.
fn final_cause(s: &Search<'_>, agent: usize) -> Option<Cause> {
    match s.causes[agent] {
        Some(room @ (Cause::Resources | Cause::Port(_) | Cause::PortCount)) if s.on_agent[agent] == 0 => {
            Some(s.static_constraints(agent).err().unwrap_or(room))
        }
        other => other,
    }
}

fn constraint_unmet(s: &Search<'_>, r: usize, k: usize, n: usize) -> String {
    let c = s.rules[r].constraint;
    let mut text = match s.rules[r].rule {
        Rule::Like(_) | Rule::ClusterOn(_) => format!("no agent matches {c}: {}", offered(n, n)),
        Rule::Unlike(_) => format!("no agent satisfies {c}: {}", offered(n, n)),
        Rule::Unique | Rule::ClusterTogether | Rule::GroupBy { .. } | Rule::MaxPer(_) => {
            format!("no agent has the attribute {}, which {c} needs: {}", c.field, offered(n, n))
        }
    };
    if k < n {
        text.push_str(&format!(", {} of them fail other constraints", n - k));
    }
    text
}

fn group_minimum(s: &Search<'_>, r: usize) -> String {
    let c = s.rules[r].constraint;
    let Rule::GroupBy { min_values } = s.rules[r].rule else { unreachable!("only GROUP_BY blocks the search") };
    let occupied = s.tally.occupied[s.rule_field[r].expect("GROUP_BY counts")];
    let (_, many) = nouns(&c.field);
    format!("{c} needs {min_values} distinct {many} with room, but only {occupied} can take an instance")
}

/// The free scalars, after this call's instances, of the agent that comes closest to fitting one.
fn largest_free(s: &Search<'_>, causes: &[Option<Cause>]) -> Resources {
    let need = s.request.resources;
    let remaining = |i: usize| {
        let mut free = s.agents[i].free.clone();
        free.subtract(&scalars(need, s.on_agent[i]));
        free.ports.clear();
        free
    };
    let closeness = |free: &Resources| {
        [
            (free.cpus, need.cpus),
            (free.mem, need.mem),
            (free.disk, need.disk),
            (f64::from(free.gpus), f64::from(need.gpus)),
        ]
        .into_iter()
        .filter(|&(_, want)| want > 0.0)
        .map(|(have, want)| have / want)
        .fold(f64::INFINITY, f64::min)
    };
    (0..s.agents.len())
        .filter(|&i| causes[i] == Some(Cause::Resources))
        .map(remaining)
        .fold(None, |best: Option<Resources>, free| match best {
            Some(b) if closeness(&b) >= closeness(&free) => Some(b),
            _ => Some(free),
        })
        .unwrap_or_default()
}

fn describe(r: &Resources, with_gpus: bool) -> String {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut text = format!("cpus={} mem={} disk={}", round(r.cpus), round(r.mem), round(r.disk));
    if with_gpus {
        text.push_str(&format!(" gpus={}", r.gpus));
    }
    text
}

fn offered(passed: usize, n: usize) -> String {
    if passed == n {
        format!("{} offered", counted(n, "agent", "agents"))
    } else {
        let verb = if passed == 1 { "satisfies" } else { "satisfy" };
        format!("{passed} of {n} agents offered {verb} the constraints")
    }
}

/// What one value of a field is called in a sentence: agents for `hostname`, else the field.
fn nouns(field: &str) -> (&str, String) {
    if field == HOSTNAME { ("agent", "agents".to_string()) } else { (field, format!("{field}s")) }
}

fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}
