//! Which task holds which GPU on this agent. Pure bookkeeping: callers persist a task's uuids
//! (for [`GpuAllocator::restore`] after an agent restart) and share the allocator behind a lock.

use super::{Gpu, GpuError};
use std::collections::BTreeMap;

/// The agent's GPUs and the tasks holding them; each device is held by at most one task.
#[derive(Debug, Clone, Default)]
pub struct GpuAllocator {
    gpus: Vec<Gpu>,
    /// Task id → positions in `gpus`, in the order the task was given them.
    held: BTreeMap<String, Vec<usize>>,
}

impl GpuAllocator {
    /// An allocator of `gpus` (as [`super::detect`] found them), none held.
    pub fn new(gpus: Vec<Gpu>) -> Self {
        Self { gpus, held: BTreeMap::new() }
    }

    /// Every GPU of the agent.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// How many GPUs no task holds.
    pub fn free(&self) -> usize {
        self.gpus.len() - self.held.values().map(Vec::len).sum::<usize>()
    }

    /// The GPUs `task_id` holds, none if it holds none.
    pub fn held(&self, task_id: &str) -> Vec<Gpu> {
        self.held.get(task_id).map(|positions| self.at(positions)).unwrap_or_default()
    }

    /// Gives `task_id` exactly `n` free GPUs, lowest index first; `n = 0` gives none and records
    /// nothing. Errors when fewer are free (naming how many are) or when the task already holds
    /// GPUs.
    pub fn assign(&mut self, task_id: &str, n: u32) -> Result<Vec<Gpu>, GpuError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.check_not_holding(task_id)?;
        let free: Vec<usize> = (0..self.gpus.len()).filter(|&position| self.holder(position).is_none()).collect();
        let wanted = usize::try_from(n).unwrap_or(usize::MAX);
        if free.len() < wanted {
            return Err(GpuError::NotEnough {
                task_id: task_id.to_string(),
                wanted: n,
                free: free.len(),
                total: self.gpus.len(),
            });
        }
        let mut positions = free;
        positions.truncate(wanted);
        let given = self.at(&positions);
        self.held.insert(task_id.to_string(), positions);
        Ok(given)
    }

    /// Frees the GPUs `task_id` holds and returns them; none if it holds none.
    pub fn release(&mut self, task_id: &str) -> Vec<Gpu> {
        self.held.remove(task_id).map(|positions| self.at(&positions)).unwrap_or_default()
    }

    /// Records that `task_id` holds the GPUs `uuids` (as persisted before an agent restart) and
    /// returns them. Idempotent for the same uuids; errors, recording nothing, when a uuid is not
    /// on this host, is held by another task, or the task holds other GPUs.
    pub fn restore(&mut self, task_id: &str, uuids: &[impl AsRef<str>]) -> Result<Vec<Gpu>, GpuError> {
        let mut positions = Vec::with_capacity(uuids.len());
        for uuid in uuids {
            let uuid = uuid.as_ref();
            let position = self
                .gpus
                .iter()
                .position(|gpu| gpu.uuid == uuid)
                .ok_or_else(|| GpuError::UnknownDevice { task_id: task_id.to_string(), uuid: uuid.to_string() })?;
            if let Some(holder) = self.holder(position).filter(|holder| *holder != task_id) {
                return Err(GpuError::Busy {
                    task_id: task_id.to_string(),
                    uuid: uuid.to_string(),
                    holder: holder.to_string(),
                });
            }
            positions.push(position);
        }
        if self.held.get(task_id).is_some_and(|held| *held == positions) {
            return Ok(self.at(&positions));
        }
        self.check_not_holding(task_id)?;
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let given = self.at(&positions);
        self.held.insert(task_id.to_string(), positions);
        Ok(given)
    }

    fn check_not_holding(&self, task_id: &str) -> Result<(), GpuError> {
        match self.held.get(task_id) {
            Some(positions) => Err(GpuError::AlreadyAssigned {
                task_id: task_id.to_string(),
                uuids: self.at(positions).iter().map(|gpu| gpu.uuid.as_str()).collect::<Vec<_>>().join(","),
            }),
            None => Ok(()),
        }
    }

    fn holder(&self, position: usize) -> Option<&str> {
        self.held.iter().find(|(_, positions)| positions.contains(&position)).map(|(task, _)| task.as_str())
    }

    fn at(&self, positions: &[usize]) -> Vec<Gpu> {
        positions.iter().filter_map(|&position| self.gpus.get(position).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn allocator(n: u32) -> GpuAllocator {
        GpuAllocator::new(
            (0..n)
                .map(|index| Gpu {
                    index,
                    uuid: format!("GPU-{index}"),
                    name: "Test".into(),
                    memory_mib: 1024,
                    minor: index,
                })
                .collect(),
        )
    }

    fn uuids(gpus: &[Gpu]) -> Vec<&str> {
        gpus.iter().map(|gpu| gpu.uuid.as_str()).collect()
    }

    #[test]
    fn gives_disjoint_devices_and_refuses_an_over_ask() {
        let mut gpus = allocator(4);
        let a = gpus.assign("a", 1).expect("a");
        let b = gpus.assign("b", 2).expect("b");
        assert_eq!(uuids(&a), ["GPU-0"]);
        assert_eq!(uuids(&b), ["GPU-1", "GPU-2"]);
        assert_eq!(gpus.free(), 1);
        let error = gpus.assign("c", 2).expect_err("only 1 free");
        assert_eq!(
            error.to_string(),
            "task c asks for 2 GPU(s) but 1 of this agent's 4 are free; lower the task's `gpus` or wait until a \
             task holding GPUs ends"
        );
        assert!(gpus.held("c").is_empty());
        assert!(gpus.assign("none", 0).expect("zero").is_empty());
        assert!(matches!(gpus.assign("a", 1), Err(GpuError::AlreadyAssigned { .. })));
        assert_eq!(uuids(&gpus.release("b")), ["GPU-1", "GPU-2"]);
        assert_eq!(gpus.free(), 3);
        assert_eq!(uuids(&gpus.assign("c", 3).expect("c")), ["GPU-1", "GPU-2", "GPU-3"]);
        assert!(gpus.release("nobody").is_empty());
    }

    #[test]
    fn every_sequence_keeps_devices_disjoint() {
        let mut gpus = allocator(8);
        let mut live: Vec<String> = Vec::new();
        // A fixed pseudo-random walk of assigns and releases.
        let mut seed: u32 = 7;
        for step in 0..500 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if seed.is_multiple_of(3) && !live.is_empty() {
                let task = live.remove((seed as usize / 3) % live.len());
                gpus.release(&task);
            } else {
                let task = format!("t{step}");
                let n = (seed >> 8) % 4;
                let free = gpus.free();
                match gpus.assign(&task, n) {
                    Ok(given) => {
                        assert_eq!(given.len(), n as usize);
                        if n > 0 {
                            live.push(task);
                        }
                    }
                    Err(GpuError::NotEnough { free: said, .. }) => assert!(said == free && free < n as usize),
                    Err(other) => panic!("unexpected {other}"),
                }
            }
            let held: Vec<String> = live.iter().flat_map(|task| gpus.held(task)).map(|gpu| gpu.uuid).collect();
            let distinct: BTreeSet<&String> = held.iter().collect();
            assert_eq!(distinct.len(), held.len(), "a device held twice at step {step}");
            assert_eq!(gpus.free() + held.len(), 8);
        }
    }

    #[test]
    fn restores_after_a_restart() {
        let mut before = allocator(3);
        let given = before.assign("a", 2).expect("a");
        let persisted: Vec<String> = given.iter().map(|gpu| gpu.uuid.clone()).collect();

        let mut after = allocator(3);
        assert_eq!(after.restore("a", &persisted).expect("restore"), given);
        assert_eq!(after.restore("a", &persisted).expect("again"), given);
        assert_eq!(after.free(), 1);
        assert_eq!(uuids(&after.assign("b", 1).expect("b")), ["GPU-2"]);

        let busy = after.restore("c", &["GPU-2"]).expect_err("held by b");
        assert_eq!(busy.to_string(), "task c held GPU GPU-2, which task b holds now");
        let gone = after.restore("d", &["GPU-9"]).expect_err("not here");
        assert!(gone.to_string().contains("GPU-9, which this agent no longer finds"), "{gone}");
        assert!(matches!(after.restore("a", &["GPU-0"]), Err(GpuError::AlreadyAssigned { .. })));
        assert!(after.held("c").is_empty() && after.held("d").is_empty());
        assert!(after.restore("e", &[] as &[&str]).expect("none").is_empty());
    }
}
