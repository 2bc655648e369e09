//! Placement of an app's instances on offered agents.
//!
//! Owns the search: which agent each new instance goes to, honouring resources, ports and
//! constraints, spreading instances over agents, and deterministic for the same input. Operator
//! meaning lives in `constraints`, port choice in `ports`, and the user-facing reason for a
//! shortfall in `reason`. Nothing here does I/O or reads a clock.
//!
//! The search runs in O(agents · log agents + count · log agents) for one call. Each instance
//! takes the agent with the fewest instances of the app (ties to the lower index), rechecking the
//! counting constraints and the agent's room as it pops; an agent that fails a recheck can never
//! pass again in this call, so it is dropped for good. Without GROUP_BY, agents are looked at
//! lazily in index order, so a call that fits on the first agents stops there. With GROUP_BY,
//! every agent is looked at first and grouped by its GROUP_BY values; each instance then goes to
//! the least-loaded group that still has an agent with room.

use crate::constraints::{self, Compiled, Rule};
use crate::ports::{self, Shortage};
use crate::reason;
use gantry_api::{Constraint, Resources};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// An agent as offered to a framework: who it is and what is free on it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSlot {
    /// Agent id.
    pub agent_id: String,
    /// Hostname (the `hostname` constraint field).
    pub hostname: String,
    /// Attributes (every other constraint field).
    pub attributes: BTreeMap<String, String>,
    /// Free scalars and free port ranges. `place` subtracts what it places.
    pub free: Resources,
}

/// Where an existing (active) instance of the app runs, for constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedOn {
    /// Hostname of its agent.
    pub hostname: String,
    /// Attributes of its agent.
    pub attributes: BTreeMap<String, String>,
}

/// What to place.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRequest<'a> {
    /// The app (for messages).
    pub app_id: &'a str,
    /// Scalars one instance needs (ports are in `ports`).
    pub resources: &'a Resources,
    /// Host ports per instance, in the app's order; 0 means any free port of the agent.
    pub ports: &'a [u16],
    /// The app's constraints.
    pub constraints: &'a [Constraint],
    /// How many new instances to place.
    pub count: usize,
}

/// One placed instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Index into the `agents` slice.
    pub agent_index: usize,
    /// Host ports chosen, one per requested port, in order.
    pub ports: Vec<u16>,
}

/// The result of one placement call.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementOutcome {
    /// Instances placed, at most `count`.
    pub placed: Vec<Placed>,
    /// Why fewer than `count` were placed, in words a user acts on, e.g.
    /// "no agent satisfies UNIQUE hostname: 3 agents, 4 instances".
    pub reason: Option<String>,
}

/// Places up to `request.count` instances on `agents`, honouring resources, ports and
/// constraints given the instances already running (`existing`). Subtracts what it places from
/// the agents' `free` so several apps can be placed against one snapshot.
pub fn place(request: &PlacementRequest<'_>, agents: &mut [AgentSlot], existing: &[PlacedOn]) -> PlacementOutcome {
    let outcome = decide(request, agents, existing);
    let need = scalars(request.resources, 1);
    for placed in &outcome.placed {
        let free = &mut agents[placed.agent_index].free;
        free.subtract(&need);
        free.subtract(&Resources { ports: Resources::from_ports(&placed.ports), ..Resources::default() });
    }
    outcome
}

fn decide(request: &PlacementRequest<'_>, agents: &[AgentSlot], existing: &[PlacedOn]) -> PlacementOutcome {
    let refuse = |reason: String| PlacementOutcome { placed: Vec::new(), reason: Some(reason) };
    if request.count == 0 {
        return PlacementOutcome { placed: Vec::new(), reason: None };
    }
    if agents.is_empty() {
        return refuse("no agents are offered".to_string());
    }
    if let Some(port) = ports::duplicate_fixed(request.ports) {
        return refuse(format!("port {port} is requested twice per instance; a fixed host port can serve only one"));
    }
    let rules = match constraints::compile(request.constraints) {
        Ok(rules) => rules,
        Err(reason) => return refuse(reason),
    };
    let mut search = Search::new(request, agents, existing, &rules);
    search.run();
    let reason = (search.placed.len() < request.count).then(|| reason::explain(&search));
    PlacementOutcome { placed: search.placed, reason }
}

/// The scalars of `n` instances (ports are handled separately).
pub(crate) fn scalars(one: &Resources, n: u32) -> Resources {
    let times = f64::from(n);
    Resources::scalar(one.cpus * times, one.mem * times, one.disk * times, one.gpus.saturating_mul(n))
}

/// Why an agent cannot take (another) instance. Ordered by how much a user should hear about it
/// first when counts tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Cause {
    /// Constraint `.0` (UNIQUE) already has an instance on this agent's value.
    Unique(usize),
    /// Constraint `.0` (MAX_PER) is full on this agent's value.
    MaxPer(usize),
    /// Constraint `.0` (CLUSTER without value) pinned instances to another value.
    Cluster(usize),
    /// The scalars of one more instance do not fit.
    Resources,
    /// A fixed port is not free.
    Port(u16),
    /// Too few free ports.
    PortCount,
    /// Constraint `.0` rejects the agent's field value (or its absence) whatever else runs.
    Static(usize),
}

/// Marks an agent value that is absent (only for agents the search never considers).
const NO_VALUE: u32 = u32::MAX;

/// Instance counts per value of each field a counting constraint reads.
#[derive(Debug)]
pub(crate) struct Tally<'a> {
    /// Distinct fields of the counting constraints.
    pub(crate) fields: Vec<&'a str>,
    ids: Vec<HashMap<&'a str, u32>>,
    /// Per field, the value of each id.
    pub(crate) values: Vec<Vec<&'a str>>,
    /// Per field, instances (existing and placed) per value id.
    pub(crate) counts: Vec<Vec<u32>>,
    /// Per field, how many values hold at least one instance.
    pub(crate) occupied: Vec<u32>,
    /// `agent * fields.len() + field` → value id.
    agent_values: Vec<u32>,
}

impl<'a> Tally<'a> {
    fn intern(&mut self, field: usize, value: &'a str) -> u32 {
        if let Some(&id) = self.ids[field].get(value) {
            return id;
        }
        let id = u32::try_from(self.values[field].len()).expect("fewer than 2^32 distinct values");
        self.ids[field].insert(value, id);
        self.values[field].push(value);
        self.counts[field].push(0);
        id
    }

    fn count_one(&mut self, field: usize, id: u32) {
        let count = &mut self.counts[field][id as usize];
        *count += 1;
        if *count == 1 {
            self.occupied[field] += 1;
        }
    }

    pub(crate) fn agent_value(&self, agent: usize, field: usize) -> u32 {
        self.agent_values[agent * self.fields.len() + field]
    }
}

/// The state of one placement call.
#[derive(Debug)]
pub(crate) struct Search<'a> {
    pub(crate) request: &'a PlacementRequest<'a>,
    pub(crate) agents: &'a [AgentSlot],
    pub(crate) existing: &'a [PlacedOn],
    pub(crate) rules: &'a [Compiled<'a>],
    /// Distinct fixed host ports of one instance.
    pub(crate) fixed: Vec<u16>,
    /// How many `0` (any free) ports one instance needs.
    pub(crate) dynamic: usize,
    pub(crate) tally: Tally<'a>,
    /// Per rule, its field's index in `tally.fields` if it counts instances.
    pub(crate) rule_field: Vec<Option<usize>>,
    /// Per CLUSTER-without-value rule, the value id every instance must share, once known.
    pub(crate) pins: Vec<Option<u32>>,
    /// Existing instances per hostname.
    on_host: HashMap<&'a str, u32>,
    /// Instances of the app on the agent's hostname before this call.
    base: Vec<u32>,
    /// Instances placed on each agent in this call.
    pub(crate) on_agent: Vec<u32>,
    /// Why each agent was dropped from the search (none while it is still a candidate).
    pub(crate) causes: Vec<Option<Cause>>,
    /// The GROUP_BY rule whose minimum number of values stopped the search.
    pub(crate) blocked: Option<usize>,
    pub(crate) placed: Vec<Placed>,
}

/// The candidate agents of one GROUP_BY group (or of all agents without GROUP_BY), in the order
/// (instances of the app on the agent, agent index).
#[derive(Debug)]
struct Pool {
    /// Agents looked at, keyed by (instances of the app on the agent, agent index).
    heap: BinaryHeap<Reverse<(u32, usize)>>,
    /// Agents from this index on were not looked at yet (all of them are with GROUP_BY).
    unseen: usize,
}

impl<'a> Search<'a> {
    fn new(
        request: &'a PlacementRequest<'a>,
        agents: &'a [AgentSlot],
        existing: &'a [PlacedOn],
        rules: &'a [Compiled<'a>],
    ) -> Self {
        let mut fields: Vec<&'a str> = Vec::new();
        let rule_field = rules
            .iter()
            .map(|rule| {
                rule.counts_instances().then(|| match fields.iter().position(|&f| f == rule.field()) {
                    Some(f) => f,
                    None => {
                        fields.push(rule.field());
                        fields.len() - 1
                    }
                })
            })
            .collect();
        let n = fields.len();
        let tally = Tally {
            ids: vec![HashMap::new(); n],
            values: vec![Vec::new(); n],
            counts: vec![Vec::new(); n],
            occupied: vec![0; n],
            agent_values: vec![NO_VALUE; agents.len() * n],
            fields,
        };
        Search {
            request,
            agents,
            existing,
            rules,
            fixed: request.ports.iter().copied().filter(|&p| p != 0).collect(),
            dynamic: request.ports.iter().filter(|&&p| p == 0).count(),
            tally,
            rule_field,
            pins: vec![None; rules.len()],
            on_host: HashMap::new(),
            base: vec![0; agents.len()],
            on_agent: vec![0; agents.len()],
            causes: vec![None; agents.len()],
            blocked: None,
            placed: Vec::new(),
        }
    }

    fn run(&mut self) {
        self.count_existing();
        for e in self.existing {
            *self.on_host.entry(e.hostname.as_str()).or_default() += 1;
        }
        let group_rules: Vec<usize> =
            (0..self.rules.len()).filter(|&r| matches!(self.rules[r].rule, Rule::GroupBy { .. })).collect();
        if group_rules.is_empty() {
            // One pool, looked at lazily: a call usually needs only the first few agents.
            let mut pool = Pool { heap: BinaryHeap::new(), unseen: 0 };
            while self.placed.len() < self.request.count {
                let Some(i) = self.next_agent(&mut pool) else { break };
                self.commit(i);
                pool.heap.push(Reverse((self.base[i] + self.on_agent[i], i)));
            }
            return;
        }

        // GROUP_BY must know every value before the first instance, so every agent is looked at.
        let single = group_rules.len() == 1;
        let mut group_ids: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut group_keys: Vec<Vec<u32>> = Vec::new();
        let mut members: Vec<Vec<Reverse<(u32, usize)>>> = Vec::new();
        for i in 0..self.agents.len() {
            if !self.look_at(i) {
                continue;
            }
            let group = if single {
                // One GROUP_BY: its value id is the group.
                self.value_for_rule(i, group_rules[0]) as usize
            } else {
                let key: Vec<u32> = group_rules.iter().map(|&r| self.value_for_rule(i, r)).collect();
                *group_ids.entry(key).or_insert_with_key(|key| {
                    group_keys.push(key.clone());
                    group_keys.len() - 1
                })
            };
            if members.len() <= group {
                members.resize_with(group + 1, Vec::new);
            }
            members[group].push(Reverse((self.base[i], i)));
        }
        if single {
            group_keys = (0..members.len()).map(|id| vec![u32::try_from(id).expect("ids are u32")]).collect();
        }
        let mut groups: BinaryHeap<Reverse<(Vec<u32>, usize)>> = (0..members.len())
            .filter(|&g| !members[g].is_empty())
            .map(|g| Reverse((self.group_load(&group_rules, &group_keys[g]), g)))
            .collect();
        let unseen = self.agents.len();
        let mut pools: Vec<Pool> = members.into_iter().map(|m| Pool { heap: BinaryHeap::from(m), unseen }).collect();
        while self.placed.len() < self.request.count {
            let Some(Reverse((load, g))) = groups.pop() else { break };
            let now = self.group_load(&group_rules, &group_keys[g]);
            if now != load {
                groups.push(Reverse((now, g)));
                continue;
            }
            if let Some(r) = self.group_minimum_unmet(&group_rules, &group_keys[g]) {
                self.blocked = Some(r);
                break;
            }
            let Some(i) = self.next_agent(&mut pools[g]) else { continue };
            self.commit(i);
            pools[g].heap.push(Reverse((self.base[i] + self.on_agent[i], i)));
            groups.push(Reverse((self.group_load(&group_rules, &group_keys[g]), g)));
        }
    }

    /// First look at an agent: whether it can ever take an instance in this call. Records its
    /// field values and its instances before this call if so, and why not otherwise.
    fn look_at(&mut self, agent: usize) -> bool {
        if let Err(cause) = self.admits_initially(agent) {
            self.causes[agent] = Some(cause);
            return false;
        }
        self.record_values(agent);
        self.base[agent] = self.on_host.get(self.agents[agent].hostname.as_str()).copied().unwrap_or(0);
        true
    }

    /// Counts the existing instances per value and pins CLUSTER-without-value to theirs.
    fn count_existing(&mut self) {
        for e in self.existing {
            for f in 0..self.tally.fields.len() {
                if let Some(value) = constraints::field_value(self.tally.fields[f], &e.hostname, &e.attributes) {
                    let id = self.tally.intern(f, value);
                    self.tally.count_one(f, id);
                }
            }
        }
        for (r, rule) in self.rules.iter().enumerate() {
            if let (Rule::ClusterTogether, Some(f)) = (&rule.rule, self.rule_field[r]) {
                self.pins[r] = self
                    .existing
                    .iter()
                    .find_map(|e| constraints::field_value(rule.field(), &e.hostname, &e.attributes))
                    .map(|value| self.tally.intern(f, value));
            }
        }
    }

    fn record_values(&mut self, agent: usize) {
        let slot = &self.agents[agent];
        for f in 0..self.tally.fields.len() {
            if let Some(value) = constraints::field_value(self.tally.fields[f], &slot.hostname, &slot.attributes) {
                let id = self.tally.intern(f, value);
                self.tally.agent_values[agent * self.tally.fields.len() + f] = id;
            }
        }
    }

    fn value_for_rule(&self, agent: usize, rule: usize) -> u32 {
        let f = self.rule_field[rule].expect("only counting rules are asked for their value");
        self.tally.agent_value(agent, f)
    }

    /// Per GROUP_BY rule, the instances on the group's value: the group with the least goes next.
    fn group_load(&self, group_rules: &[usize], key: &[u32]) -> Vec<u32> {
        group_rules
            .iter()
            .zip(key)
            .map(|(&r, &id)| self.tally.counts[self.rule_field[r].expect("GROUP_BY counts")][id as usize])
            .collect()
    }

    /// A GROUP_BY rule that forbids a second instance on this group's value because fewer than its
    /// minimum number of values hold one (Marathon's semantics of `GROUP_BY field n`).
    fn group_minimum_unmet(&self, group_rules: &[usize], key: &[u32]) -> Option<usize> {
        group_rules.iter().zip(key).find_map(|(&r, &id)| {
            let Rule::GroupBy { min_values } = self.rules[r].rule else { return None };
            let f = self.rule_field[r].expect("GROUP_BY counts");
            (self.tally.counts[f][id as usize] > 0 && self.tally.occupied[f] < min_values).then_some(r)
        })
    }

    /// The next agent of the pool that can take an instance now; the ones passed over can never
    /// take one again in this call.
    fn next_agent(&mut self, pool: &mut Pool) -> Option<usize> {
        loop {
            let i = if pool.unseen < self.agents.len() {
                // Unseen agents without instances of the app have key (0, index): they come
                // before every agent in the heap, whose keys are at least 1.
                let i = pool.unseen;
                pool.unseen += 1;
                if !self.look_at(i) {
                    continue;
                }
                if self.base[i] > 0 {
                    pool.heap.push(Reverse((self.base[i], i)));
                    continue;
                }
                i
            } else {
                let Reverse((_, i)) = pool.heap.pop()?;
                i
            };
            match self.admits_now(i) {
                Ok(()) => return Some(i),
                Err(cause) => self.causes[i] = Some(cause),
            }
        }
    }

    /// Room and the constraints that do not depend on other instances, before anything is placed.
    /// Room is checked first because it is cheap and most often what excludes an agent.
    fn admits_initially(&self, agent: usize) -> Result<(), Cause> {
        self.has_room(agent)?;
        self.static_constraints(agent)
    }

    pub(crate) fn static_constraints(&self, agent: usize) -> Result<(), Cause> {
        let slot = &self.agents[agent];
        match self
            .rules
            .iter()
            .position(|rule| !rule.admits(constraints::field_value(rule.field(), &slot.hostname, &slot.attributes)))
        {
            Some(r) => Err(Cause::Static(r)),
            None => Ok(()),
        }
    }

    /// Whether the agent has the scalars and ports of one more instance after this call's.
    fn has_room(&self, agent: usize) -> Result<(), Cause> {
        let free = &self.agents[agent].free;
        let already = self.on_agent[agent];
        if !free.fits(&scalars(self.request.resources, already + 1)) {
            return Err(Cause::Resources);
        }
        ports::check(free, &self.fixed, self.dynamic, already as usize).map_err(|shortage| match shortage {
            Shortage::Taken(port) => Cause::Port(port),
            Shortage::TooFew => Cause::PortCount,
        })
    }

    /// The counting constraints given every instance so far, then room.
    fn admits_now(&self, agent: usize) -> Result<(), Cause> {
        for (r, rule) in self.rules.iter().enumerate() {
            let Some(f) = self.rule_field[r] else { continue };
            let id = self.tally.agent_value(agent, f);
            let count = self.tally.counts[f][id as usize];
            match rule.rule {
                Rule::Unique if count > 0 => return Err(Cause::Unique(r)),
                Rule::MaxPer(max) if count >= max => return Err(Cause::MaxPer(r)),
                Rule::ClusterTogether if self.pins[r].is_some_and(|pin| pin != id) => return Err(Cause::Cluster(r)),
                _ => {}
            }
        }
        self.has_room(agent)
    }

    fn commit(&mut self, agent: usize) {
        let ports = ports::choose(
            &self.agents[agent].free.ports,
            self.request.ports,
            &self.fixed,
            self.dynamic,
            self.on_agent[agent] as usize,
        );
        for f in 0..self.tally.fields.len() {
            let id = self.tally.agent_value(agent, f);
            self.tally.count_one(f, id);
        }
        for r in 0..self.rules.len() {
            if matches!(self.rules[r].rule, Rule::ClusterTogether) && self.pins[r].is_none() {
                self.pins[r] = Some(self.value_for_rule(agent, r));
            }
        }
        self.on_agent[agent] += 1;
        self.placed.push(Placed { agent_index: agent, ports });
    }
}

#[cfg(test)]
mod tests;
