//! Pure cron decisions: which schedule time is due between two instants, and whether a due time
//! starts a run (starting deadline, concurrency policy). Time is an argument; no clock, no I/O.
//!
//! Missed times are coalesced: of several times since the last check only the latest can start a
//! run (as in Metronome and Kubernetes CronJobs), and only within its starting deadline.

use gantry_api::Millis;
use gantry_api::job::{ConcurrencyPolicy, Schedule};

/// Why cron evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression or the time zone does not parse (definitions are validated, so only a
    /// definition stored by an older version can hit this).
    #[error("schedule `{schedule_id}`: {message}")]
    Invalid {
        /// The schedule.
        schedule_id: String,
        /// Why.
        message: String,
    },
}

/// A schedule ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    cron: croner::Cron,
    zone: jiff::tz::TimeZone,
}

impl Compiled {
    /// Parses a schedule's expression and time zone.
    pub fn new(schedule: &Schedule) -> Result<Self, CronError> {
        let invalid = |message| CronError::Invalid { schedule_id: schedule.id.clone(), message };
        let cron = gantry_api::job::parse_cron(&schedule.cron).map_err(invalid)?;
        let zone = gantry_api::job::parse_time_zone(&schedule.time_zone).map_err(invalid)?;
        Ok(Self { cron, zone })
    }

    fn zoned(&self, at: Millis) -> Option<jiff::Zoned> {
        let ms = i64::try_from(at).ok()?;
        Some(jiff::Timestamp::from_millisecond(ms).ok()?.to_zoned(self.zone.clone()))
    }

    fn millis(zoned: &jiff::Zoned) -> Option<Millis> {
        Millis::try_from(zoned.timestamp().as_millisecond()).ok()
    }

    /// The latest schedule time `t` with `after < t <= now`, if any.
    pub fn due(&self, after: Millis, now: Millis) -> Option<Millis> {
        if now <= after {
            return None;
        }
        let start = self.zoned(now)?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        Self::millis(&previous).filter(|t| *t > after && *t <= now)
    }

    /// The first schedule time strictly after `after`.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let start = self.zoned(after)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Self::millis(&next).filter(|t| *t > after)
    }
}

/// What a schedule does at one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fire {
    /// Nothing is due.
    Nothing,
    /// Start a run for the time `scheduled_at`.
    Start {
        /// The schedule time.
        scheduled_at: Millis,
    },
    /// A time was due but no run starts.
    Skip {
        /// The schedule time.
        scheduled_at: Millis,
        /// Why, in words.
        reason: String,
    },
}

/// Decides a schedule's check over `(after, now]`, given how many runs of the job are active.
pub fn fire(schedule: &Schedule, compiled: &Compiled, after: Millis, now: Millis, active_runs: usize) -> Fire {
    if !schedule.enabled {
        return Fire::Nothing;
    }
    let Some(scheduled_at) = compiled.due(after, now) else { return Fire::Nothing };
    let deadline_ms = (schedule.starting_deadline * 1000.0) as u64;
    if now.saturating_sub(scheduled_at) > deadline_ms {
        return Fire::Skip {
            scheduled_at,
            reason: format!("missed its starting deadline of {}s", schedule.starting_deadline),
        };
    }
    if schedule.concurrency_policy == ConcurrencyPolicy::Forbid && active_runs > 0 {
        return Fire::Skip {
            scheduled_at,
            reason: format!("{active_runs} run(s) still active and the concurrency policy is FORBID"),
        };
    }
    Fire::Start { scheduled_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule(cron: &str, zone: &str, policy: ConcurrencyPolicy) -> Schedule {
        Schedule {
            id: "s".into(),
            cron: cron.into(),
            time_zone: zone.into(),
            concurrency_policy: policy,
            starting_deadline: 30.0,
            enabled: true,
        }
    }

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: Millis = 1_767_225_600_000;

    #[test]
    fn every_five_seconds_and_daily_in_a_time_zone() {
        let s = schedule("*/5 * * * * *", "UTC", ConcurrencyPolicy::Allow);
        let c = Compiled::new(&s).expect("valid");
        assert_eq!(c.due(NEW_YEAR + 1, NEW_YEAR + 4_999), None);
        assert_eq!(c.due(NEW_YEAR + 1, NEW_YEAR + 5_000), Some(NEW_YEAR + 5_000));
        assert_eq!(c.due(NEW_YEAR + 1, NEW_YEAR + 12_300), Some(NEW_YEAR + 10_000), "missed times coalesce");
        assert_eq!(c.next_after(NEW_YEAR + 5_000), Some(NEW_YEAR + 10_000));
        // 02:00 in Berlin is 01:00 UTC in winter.
        let berlin = Compiled::new(&schedule("0 2 * * *", "Europe/Berlin", ConcurrencyPolicy::Allow)).expect("valid");
        assert_eq!(berlin.next_after(NEW_YEAR), Some(NEW_YEAR + 3_600_000));
    }

    #[test]
    fn starting_deadline_and_forbid_skip() {
        let s = schedule("*/5 * * * * *", "UTC", ConcurrencyPolicy::Forbid);
        let c = Compiled::new(&s).expect("valid");
        assert_eq!(fire(&s, &c, NEW_YEAR + 1, NEW_YEAR + 5_000, 0), Fire::Start { scheduled_at: NEW_YEAR + 5_000 });
        assert!(matches!(fire(&s, &c, NEW_YEAR + 1, NEW_YEAR + 5_000, 1), Fire::Skip { .. }));
        let late = fire(&s, &c, NEW_YEAR - 60_000, NEW_YEAR + 31_000 + 4_000, 0);
        assert_eq!(late, Fire::Start { scheduled_at: NEW_YEAR + 35_000 });
        let hourly = schedule("0 * * * *", "UTC", ConcurrencyPolicy::Allow);
        let c = Compiled::new(&hourly).expect("valid");
        assert!(matches!(fire(&hourly, &c, NEW_YEAR - 1, NEW_YEAR + 31_000, 0), Fire::Skip { .. }));
        let off = Schedule { enabled: false, ..hourly.clone() };
        assert_eq!(fire(&off, &c, NEW_YEAR - 1, NEW_YEAR + 1, 0), Fire::Nothing);
    }

    proptest! {
        /// `due` returns a schedule time in `(after, now]` with none later up to `now`, and
        /// checking consecutive windows fires each time exactly once.
        #[test]
        fn due_is_the_latest_time_in_the_window(
            step in prop_oneof![Just("*/5 * * * * *"), Just("*/7 * * * * *"), Just("30 * * * * *"), Just("*/2 * * * *")],
            start in 0u64..86_400_000,
            windows in proptest::collection::vec(1u64..20_000, 1..40),
        ) {
            let c = Compiled::new(&schedule(step, "America/New_York", ConcurrencyPolicy::Allow)).expect("valid");
            let mut after = NEW_YEAR + start;
            for width in windows {
                let now = after + width;
                match c.due(after, now) {
                    Some(t) => {
                        prop_assert!(t > after && t <= now);
                        prop_assert!(c.next_after(t).is_none_or(|n| n > now));
                    }
                    None => prop_assert!(c.next_after(after).is_none_or(|n| n > now)),
                }
                after = now;
            }
        }

        /// FORBID never starts a run while one is active.
        #[test]
        fn forbid_never_starts_beside_an_active_run(after in 0u64..100_000, width in 1u64..100_000, active in 1usize..4) {
            let s = schedule("*/3 * * * * *", "UTC", ConcurrencyPolicy::Forbid);
            let c = Compiled::new(&s).expect("valid");
            let fired = fire(&s, &c, NEW_YEAR + after, NEW_YEAR + after + width, active);
            prop_assert!(!matches!(fired, Fire::Start { .. }), "{:?}", fired);
        }
    }
}
