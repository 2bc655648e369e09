//! Dominant Resource Fairness: which framework is offered resources first.
//!
//! Owns the share arithmetic and the offer order only; it does not decide what a framework gets.

use gantry_api::Resources;

/// A framework's dominant share: the largest fraction of any cluster resource it holds.
/// Resources the cluster has none of are ignored.
pub fn dominant_share(allocated: &Resources, total: &Resources) -> f64 {
    [
        (allocated.cpus, total.cpus),
        (allocated.mem, total.mem),
        (allocated.disk, total.disk),
        (f64::from(allocated.gpus), f64::from(total.gpus)),
    ]
    .into_iter()
    .filter(|&(_, total)| total > 0.0)
    .map(|(allocated, total)| allocated / total)
    .fold(0.0, f64::max)
}

/// Framework indices ordered by ascending dominant share (ties by index): the order in which
/// the allocator offers resources.
pub fn drf_order(allocated: &[Resources], total: &Resources) -> Vec<usize> {
    let shares: Vec<f64> = allocated.iter().map(|a| dominant_share(a, total)).collect();
    let mut order: Vec<usize> = (0..allocated.len()).collect();
    // `sort_by` is stable, so equal shares keep index order.
    order.sort_by(|&a, &b| shares[a].total_cmp(&shares[b]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn share_is_the_largest_fraction() {
        let total = Resources::scalar(10.0, 1000.0, 0.0, 4);
        assert_eq!(dominant_share(&Resources::scalar(1.0, 500.0, 0.0, 0), &total), 0.5);
        assert_eq!(dominant_share(&Resources::scalar(3.0, 100.0, 0.0, 0), &total), 0.3);
        assert_eq!(dominant_share(&Resources::scalar(0.0, 0.0, 0.0, 3), &total), 0.75);
    }

    #[test]
    fn resources_the_cluster_lacks_are_ignored() {
        let total = Resources::scalar(10.0, 0.0, 0.0, 0);
        assert_eq!(dominant_share(&Resources::scalar(1.0, 500.0, 50.0, 2), &total), 0.1);
        assert_eq!(dominant_share(&Resources::scalar(1.0, 1.0, 1.0, 1), &Resources::default()), 0.0);
    }

    #[test]
    fn order_is_by_share_then_index() {
        let total = Resources::scalar(10.0, 100.0, 0.0, 0);
        let allocated = [
            Resources::scalar(5.0, 0.0, 0.0, 0),
            Resources::scalar(1.0, 10.0, 0.0, 0),
            Resources::scalar(0.0, 0.0, 0.0, 0),
            Resources::scalar(0.0, 10.0, 0.0, 0),
        ];
        assert_eq!(drf_order(&allocated, &total), vec![2, 1, 3, 0]);
        assert!(drf_order(&[], &total).is_empty());
    }

    fn resources_within(total: (f64, f64, f64, u32)) -> impl Strategy<Value = Resources> {
        (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 0..=total.3)
            .prop_map(move |(c, m, d, g)| Resources::scalar(c * total.0, m * total.1, d * total.2, g))
    }

    proptest! {
        #[test]
        fn order_sorts_by_share_and_shares_are_fractions(
            total in (0.0..64.0f64, 0.0..4096.0f64, 0.0..1e5f64, 0u32..8),
            fractions in proptest::collection::vec(resources_within((1.0, 1.0, 1.0, 0)), 0..40),
        ) {
            let cluster = Resources::scalar(total.0, total.1, total.2, total.3);
            let allocated: Vec<Resources> = fractions
                .iter()
                .enumerate()
                .map(|(i, f)| Resources::scalar(f.cpus * total.0, f.mem * total.1, f.disk * total.2, (i as u32) % (total.3 + 1)))
                .collect();
            let order = drf_order(&allocated, &cluster);
            let mut seen = order.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..allocated.len()).collect::<Vec<_>>());
            for pair in order.windows(2) {
                let (a, b) = (dominant_share(&allocated[pair[0]], &cluster), dominant_share(&allocated[pair[1]], &cluster));
                prop_assert!(a < b || (a == b && pair[0] < pair[1]), "{a} {b} {pair:?}");
            }
            for a in &allocated {
                let share = dominant_share(a, &cluster);
                prop_assert!((0.0..=1.0).contains(&share), "{share}");
            }
        }
    }
}
