//! A linearizability checker, in the manner of Knossos and Porcupine, for histories of
//! concurrent operations recorded against a real system (tests of the masters' Raft group).
//!
//! A history is a list of [`Operation`]s, each with the client that made it, the time it was
//! invoked and the time it completed (in any unit, as long as every client's times come from
//! one clock: [`Clock`] gives nanoseconds since it was made), and what was asked and answered.
//! An operation whose completion is unknown (the call failed in a way that may or may not have
//! taken effect, such as a broken connection) may take effect at any point after its invocation,
//! or never.
//!
//! [`check`] decides whether some total order of the operations (a *linearization*) both
//! respects real time (an operation that completed before another was invoked comes first) and
//! is a legal sequential run of a [`Model`]. It searches the way Wing & Gong proposed, with
//! Lowe's just-in-time linearization: walk the history's invocations and completions in time
//! order; at an invocation, try to take that operation effect now (the model accepts it in the
//! current state) and restart from the first event left; at a completion whose operation has not
//! taken effect, undo the last choice. Memoizing the pairs (set of operations linearized, model
//! state) already explored prunes the search to what the history's concurrency makes possible.
//! A model whose state is a product of independent parts (a map of keys) names the part each
//! operation touches ([`Model::partition`]), and each part's sub-history is checked alone: a
//! history is linearizable exactly when every part's is (P-compositionality), which keeps
//! histories of thousands of operations cheap.
//!
//! One model comes with it, [`RegisterMap`]: keys holding versions, with writes, reads and
//! deletes. Ties are generous: an operation that completes at the very time another is invoked
//! counts as concurrent with it.
//!
//! This module records nothing and talks to nothing: the caller runs the operations and hands
//! the history over.

mod register;

pub use register::{RegisterMap, RegisterOp};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::time::Instant;

/// A sequential specification of the object a history ran against: its state, and which
/// operations (with their results) are legal in which state.
pub trait Model: Clone + Eq + Hash + fmt::Debug {
    /// An operation together with its result (a read carries what it saw).
    type Op: Clone + fmt::Debug;

    /// The state after `op`, if `op` (with the result it carries) is legal in this state;
    /// `None` if no sequential run could have answered that here.
    fn step(&self, op: &Self::Op) -> Option<Self>;

    /// The independent part of the state `op` reads and changes (a key), if the model is a
    /// product of independent parts: every operation of one part leaves every other part as
    /// it is, and whether it is legal depends on its part alone. `None` (the default) for an
    /// operation that spans parts; a history with such an operation is checked as one.
    fn partition(op: &Self::Op) -> Option<&str> {
        let _ = op;
        None
    }
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<O> {
    /// The client (process, task, thread) that made it: one client makes one call at a time.
    pub client: u64,
    /// When it was invoked.
    pub invoke: u64,
    /// When it completed with a known result; `None` when its outcome is unknown: it may have
    /// taken effect at any time after `invoke`, or never. An operation whose result is not
    /// known and constrains nothing (a read that failed) is best left out of the history.
    pub complete: Option<u64>,
    /// What was asked, and what was answered.
    pub op: O,
}

impl<O: fmt::Debug> fmt::Display for Operation<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.complete {
            Some(complete) => write!(f, "client {} [{}, {}] {:?}", self.client, self.invoke, complete, self.op),
            None => write!(f, "client {} [{}, unknown) {:?}", self.client, self.invoke, self.op),
        }
    }
}

/// An operation of the history with its index in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed<O> {
    /// Its index in the history handed to [`check`].
    pub index: usize,
    /// The operation.
    pub operation: Operation<O>,
}

impl<O: fmt::Debug> fmt::Display for Indexed<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.index, self.operation)
    }
}

/// Timestamps for a history recorded in one process: nanoseconds since the clock was made, on
/// the monotonic clock, so that times taken on different threads compare.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock that reads 0 now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }

    /// Nanoseconds since the clock was made (saturating after some 584 years).
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A history that cannot have been recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// An operation completes before it is invoked.
    #[error("operation #{index} completes at {complete}, before it is invoked at {invoke}")]
    CompletesBeforeInvoked {
        /// Its index in the history.
        index: usize,
        /// When it was invoked.
        invoke: u64,
        /// When it completed.
        complete: u64,
    },
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub enum Verdict<M: Model> {
    /// Some order of the operations respects real time and the model.
    Linearizable,
    /// None does; here is how far the search got.
    Violation(Box<Violation<M>>),
}

impl<M: Model> Verdict<M> {
    /// Whether the history is linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Self::Linearizable)
    }
}

/// A history that no order explains, told by the search's attempt that got furthest (to the
/// latest completion, with the most operations in order): the operations it could put in
/// order, the state they leave, the operation that had completed by then without any legal
/// place, and the operations that could have gone next (invoked by that completion) but that
/// the model refused too, or that led nowhere.
#[derive(Debug, Clone)]
pub struct Violation<M: Model> {
    /// The part of the state ([`Model::partition`]) whose sub-history is not linearizable,
    /// `None` when the history was checked as one.
    pub partition: Option<String>,
    /// The linearization of a part of the history the furthest attempt found, in its order.
    pub linearized: Vec<Indexed<M::Op>>,
    /// The model's state after `linearized`.
    pub state: M,
    /// The operation that completed before it could be placed after `linearized`.
    pub stuck: Indexed<M::Op>,
    /// The operations invoked before `stuck` completed and not in `linearized` (besides
    /// `stuck`): none of them could go next either, or going next led to no linearization.
    pub pending: Vec<Indexed<M::Op>>,
}

/// How many of the linearized operations a violation's message shows (the last ones).
const SHOWN_LINEARIZED: usize = 12;
/// How many pending operations a violation's message shows.
const SHOWN_PENDING: usize = 24;

impl<M: Model> fmt::Display for Violation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.partition {
            Some(part) => write!(f, "the history of `{part}` is not linearizable")?,
            None => write!(f, "the history is not linearizable")?,
        }
        let by = self.stuck.operation.complete.map_or_else(|| "the end".to_string(), |t| t.to_string());
        writeln!(f, ": no order of its operations explains what was seen by {by}.")?;
        writeln!(
            f,
            "The order that got furthest has {} operations and leaves the state {:?}; its last ones:",
            self.linearized.len(),
            self.state
        )?;
        let skip = self.linearized.len().saturating_sub(SHOWN_LINEARIZED);
        if skip > 0 {
            writeln!(f, "  ... {skip} more before")?;
        }
        for op in &self.linearized[skip..] {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "It cannot go on with {}, which had completed,", self.stuck)?;
        write!(f, "nor with any of the {} other operations pending then", self.pending.len())?;
        if self.pending.is_empty() {
            return writeln!(f, ".");
        }
        writeln!(f, ":")?;
        for op in self.pending.iter().take(SHOWN_PENDING) {
            writeln!(f, "  {op}")?;
        }
        if self.pending.len() > SHOWN_PENDING {
            writeln!(f, "  ... and {} more", self.pending.len() - SHOWN_PENDING)?;
        }
        Ok(())
    }
}

/// Whether `history` is linearizable with respect to `M`, starting from `initial`; see the
/// module documentation. The parts of a partitioned model are checked in the order of their
/// names, and the first violation found is answered.
pub fn check<M: Model>(initial: &M, history: &[Operation<M::Op>]) -> Result<Verdict<M>, HistoryError> {
    for (index, operation) in history.iter().enumerate() {
        if let Some(complete) = operation.complete
            && complete < operation.invoke
        {
            return Err(HistoryError::CompletesBeforeInvoked { index, invoke: operation.invoke, complete });
        }
    }
    let mut parts: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        parts.entry(M::partition(&operation.op)).or_default().push(index);
    }
    if parts.contains_key(&None) {
        parts = BTreeMap::from([(None, (0..history.len()).collect())]);
    }
    for (part, members) in parts {
        if let Some(mut violation) = Search::new(initial, history, &members).run() {
            violation.partition = part.map(str::to_string);
            return Ok(Verdict::Violation(Box::new(violation)));
        }
    }
    Ok(Verdict::Linearizable)
}

/// The end of the event list.
const END: usize = usize::MAX;
/// The list's head, before its first event.
const HEAD: usize = 0;

/// A set of operations (by position in the sub-history), as bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn with(&self, i: usize) -> Self {
        let mut bits = self.clone();
        bits.0[i / 64] |= 1 << (i % 64);
        bits
    }

    fn without(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// How far an attempt got: the completion it met, the known operations and all operations it
/// had placed (compared in that order).
type Reach = (Option<u64>, usize, usize);

/// One sub-history's search: its invocation and completion events in a doubly linked list
/// (node 0 is the head), from which linearized operations are lifted and put back.
struct Search<'a, M: Model> {
    initial: &'a M,
    history: &'a [Operation<M::Op>],
    /// The sub-history: indexes into `history`.
    members: &'a [usize],
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation (position in `members`) of each node.
    op: Vec<usize>,
    /// For an invocation node, its operation's completion node, if it has one; `None` for a
    /// completion node.
    call: Vec<Option<Option<usize>>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(initial: &'a M, history: &'a [Operation<M::Op>], members: &'a [usize]) -> Self {
        // (time, whether it is a completion: invocations first at one time, operation)
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(members.len() * 2);
        for (i, &index) in members.iter().enumerate() {
            let operation = &history[index];
            events.push((operation.invoke, false, i));
            if let Some(complete) = operation.complete {
                events.push((complete, true, i));
            }
        }
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut search = Self {
            initial,
            history,
            members,
            next: (1..=nodes).map(|n| if n == nodes { END } else { n }).collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![0; nodes],
            call: vec![None; nodes],
        };
        let mut call_node = vec![0; members.len()];
        for (position, &(_, is_completion, i)) in events.iter().enumerate() {
            let node = position + 1;
            search.op[node] = i;
            if is_completion {
                search.call[call_node[i]] = Some(Some(node));
            } else {
                call_node[i] = node;
                search.call[node] = Some(None);
            }
        }
        search
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != END {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != END {
            self.prev[next] = node;
        }
    }

    /// Takes an invocation node and its completion out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(Some(completion)) = self.call[call] {
            self.unlink(completion);
        }
    }

    /// Puts back what [`Search::lift`] took out (the last lifted first).
    fn unlift(&mut self, call: usize) {
        if let Some(Some(completion)) = self.call[call] {
            self.relink(completion);
        }
        self.relink(call);
    }

    fn indexed(&self, i: usize) -> Indexed<M::Op> {
        let index = self.members[i];
        Indexed { index, operation: self.history[index].clone() }
    }

    /// `None` if the sub-history is linearizable, else the violation of the attempt that got
    /// furthest (its partition left for the caller).
    fn run(mut self) -> Option<Violation<M>> {
        let known = self.members.iter().filter(|&&index| self.history[index].complete.is_some()).count();
        let mut placed_known = 0;
        let mut linearized = Bits::new(self.members.len());
        let mut state = self.initial.clone();
        let mut explored: HashSet<(Bits, M)> = HashSet::new();
        // The invocation nodes lifted, in order, with the state before each.
        let mut stack: Vec<(usize, M)> = Vec::new();
        // The attempt that got furthest: to the latest completion, with the most known
        // operations placed, then the most operations.
        let mut best: Option<(Reach, Violation<M>)> = None;
        let mut node = self.next[HEAD];
        loop {
            if placed_known == known {
                return None;
            }
            if node != END
                && let Some(completion) = self.call[node]
            {
                let i = self.op[node];
                if let Some(after) = state.step(&self.history[self.members[i]].op) {
                    let set = linearized.with(i);
                    if explored.insert((set.clone(), after.clone())) {
                        stack.push((node, std::mem::replace(&mut state, after)));
                        linearized = set;
                        placed_known += usize::from(completion.is_some());
                        self.lift(node);
                        node = self.next[HEAD];
                        continue;
                    }
                }
                node = self.next[node];
                continue;
            }
            // A completion whose operation has not taken effect: undo the last choice. (The
            // scan never reaches the end while a known operation is left: it passes
            // invocations only, and that operation's completion lies ahead.)
            if node != END {
                let reach = (self.history[self.members[self.op[node]]].complete, placed_known, stack.len());
                if best.as_ref().is_none_or(|(furthest, _)| reach > *furthest) {
                    best = Some((reach, self.attempt(&stack, &state, node)));
                }
            }
            let Some((call, before)) = stack.pop() else { return best.map(|(_, violation)| violation) };
            state = before;
            linearized.without(self.op[call]);
            placed_known -= usize::from(matches!(self.call[call], Some(Some(_))));
            self.unlift(call);
            node = self.next[call];
        }
    }

    /// The violation told by the attempt that linearized `stack` and then met the completion
    /// `stuck`.
    fn attempt(&self, stack: &[(usize, M)], state: &M, stuck: usize) -> Violation<M> {
        let mut pending = Vec::new();
        let mut node = self.next[HEAD];
        while node != stuck && node != END {
            if self.call[node].is_some() {
                pending.push(self.indexed(self.op[node]));
            }
            node = self.next[node];
        }
        Violation {
            partition: None,
            linearized: stack.iter().map(|(call, _)| self.indexed(self.op[*call])).collect(),
            state: state.clone(),
            stuck: self.indexed(self.op[stuck]),
            pending: pending.into_iter().filter(|p| p.index != self.members[self.op[stuck]]).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
