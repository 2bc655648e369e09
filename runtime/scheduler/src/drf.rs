//! Dominant Resource Fairness: which framework is offered resources first.

use gantry_api::Resources;

/// A framework's dominant share: the largest fraction of any cluster resource it holds.
/// Resources the cluster has none of are ignored.
pub fn dominant_share(allocated: &Resources, total: &Resources) -> f64 {
    let _ = (allocated, total);
    unreachable!("implemented by the scheduler work")
}

/// Framework indices ordered by ascending dominant share (ties by index): the order in which
/// the allocator offers resources.
pub fn drf_order(allocated: &[Resources], total: &Resources) -> Vec<usize> {
    let _ = (allocated, total);
    unreachable!("implemented by the scheduler work")
}
