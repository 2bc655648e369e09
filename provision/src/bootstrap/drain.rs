//! `drain`: the first step of removing an agent. Asks the master to drain the agent registered
//! with this host's name — it gets no new tasks, its service tasks are replaced elsewhere first
//! and stopped only once their replacements are ready (within each app's minimum health
//! capacity), its job runs may finish — and waits, polling with backoff, until nothing is left
//! on it, the drain's deadline passed (the master has then killed what was left), or the master
//! says the tasks cannot move (no other agent takes tasks, as when the whole cluster is taken
//! down). The phases after it stop the agent and kill what may still run.
//!
//! Skipped on a master, without a master, when the master cannot be asked, and when no agent of
//! that name is registered: the agent is then removed as before, without moving anything first.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome};
use crate::cluster_api::DrainView;
use crate::cluster_file::Role;
use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio::time::Instant;

/// How long a removed agent's tasks get: after this the master kills what is left on it.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(300);

/// See the module docs. The defaults are the production settings; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// The drain's deadline, from when it is asked for.
    pub deadline: Duration,
    /// The first wait between two polls of the drain; it doubles up to `max_poll`.
    pub first_poll: Duration,
    /// The longest wait between two polls.
    pub max_poll: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self { deadline: DRAIN_DEADLINE, first_poll: Duration::from_millis(50), max_poll: Duration::from_secs(2) }
    }
}

impl Drain {
    /// The wait after `poll`: doubled, at most `max_poll`.
    fn next_poll(&self, poll: Duration) -> Duration {
        (poll * 2).min(self.max_poll)
    }
}

/// How the drain ended, if it did: nothing left, the deadline passed, or the tasks cannot move.
/// `moved` is how many tasks the agent had when the drain began.
pub(crate) fn finished(view: &DrainView, moved: u32) -> Option<String> {
    let n = view.tasks_left;
    if n == 0 {
        return Some(match moved {
            0 => "drained: it ran no tasks".to_string(),
            m => format!("drained: {m} tasks moved or finished"),
        });
    }
    if view.deadline_passed {
        return Some(format!("the deadline passed with {n} tasks left; the master killed them"));
    }
    view.stuck.as_ref().map(|why| format!("{n} tasks cannot move ({why}); they stop with the agent"))
}

impl Phase for Drain {
    fn name(&self) -> &'static str {
        "drain"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            if host.role == Role::Master {
                return Ok(PhaseOutcome::Skipped("a master runs no tasks".to_string()));
            }
            let Some(url) = host.api_url.clone().or_else(|| host.master_url.clone()) else {
                return Ok(PhaseOutcome::Skipped("no master".to_string()));
            };
            let mut view = match host.api.drain_agent(&url, &host.name, self.deadline).await {
                Err(e) => return Ok(PhaseOutcome::Skipped(format!("master not reachable: {e}"))),
                Ok(None) => return Ok(PhaseOutcome::Skipped("not registered".to_string())),
                Ok(Some(view)) => view,
            };
            let moved = view.tasks_left;
            // The master ends the drain at its deadline; this bounds the wait for a master that
            // stops answering or whose clock is off.
            let give_up = self.deadline + host.ready_timeout;
            let started = Instant::now();
            let mut failing_since: Option<(Instant, String)> = None;
            let mut poll = self.first_poll;
            loop {
                if let Some(done) = finished(&view, moved) {
                    return Ok(PhaseOutcome::Done(done));
                }
                if started.elapsed() >= give_up {
                    return Err(BootstrapError::NotReady {
                        host: host.name.clone(),
                        what: "the agent to drain".to_string(),
                        waited: give_up,
                        last: format!("{} tasks left", view.tasks_left),
                        log_tail: String::new(),
                    });
                }
                tokio::time::sleep(poll).await;
                poll = self.next_poll(poll);
                match host.api.drain_progress(&url, &host.name).await {
                    Ok(Some(next)) => {
                        view = next;
                        failing_since = None;
                    }
                    Ok(None) => return Ok(PhaseOutcome::Done("the agent is no longer registered".to_string())),
                    Err(e) => match &failing_since {
                        Some((since, _)) if since.elapsed() >= host.ready_timeout => {
                            return Ok(PhaseOutcome::Done(format!(
                                "gave up: the master stopped answering ({e}); the agent is stopped as it is"
                            )));
                        }
                        Some(_) => {}
                        None => failing_since = Some((Instant::now(), e.to_string())),
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{HostAccess, HostLayout};
    use crate::bootstrap::RuntimeSettings;
    use crate::cluster_api::{AgentView, FakeClusterApi};
    use crate::transport::FakeTransport;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn quick() -> Drain {
        Drain {
            deadline: Duration::from_secs(60),
            first_poll: Duration::from_millis(1),
            max_poll: Duration::from_millis(4),
        }
    }

    fn agent_host(api: Arc<FakeClusterApi>, role: Role) -> HostContext {
        HostContext {
            name: "w-2".to_string(),
            role,
            desired: None,
            provider_attributes: BTreeMap::new(),
            access: HostAccess {
                transport: Arc::new(FakeTransport::new("w-2")),
                layout: HostLayout::new("/opt/gantry"),
                address: "10.0.0.7".to_string(),
                public_address: None,
                api_port: 5050,
                use_systemd: false,
            },
            master_url: Some("https://10.0.0.5:5050".to_string()),
            api_url: None,
            masters: Vec::new(),
            runtime: RuntimeSettings::default(),
            binary: PathBuf::from("/nonexistent"),
            api,
            ready_timeout: Duration::from_millis(50),
            facts: None,
            binary_sha256: None,
        }
    }

    fn view(tasks_left: u32) -> DrainView {
        DrainView { agent_ids: vec!["a-2".into()], tasks_left, deadline_passed: false, stuck: None }
    }

    #[test]
    fn removing_an_agent_drains_it_before_anything_stops_it() {
        let names: Vec<&str> = crate::bootstrap::drain_phases().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["drain", "inspect", "stop", "kill-tasks", "wait-unreachable", "revoke-agent"]);
    }

    #[test]
    fn polls_back_off_to_their_ceiling() {
        let drain = Drain::default();
        let mut poll = drain.first_poll;
        let waits: Vec<u128> = (0..8)
            .map(|_| {
                let wait = poll;
                poll = drain.next_poll(poll);
                wait.as_millis()
            })
            .collect();
        assert_eq!(waits, vec![50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn a_drain_ends_when_nothing_is_left_at_the_deadline_or_when_nothing_can_move() {
        assert_eq!(finished(&view(2), 2), None);
        assert_eq!(finished(&view(0), 3).as_deref(), Some("drained: 3 tasks moved or finished"));
        assert_eq!(finished(&view(0), 0).as_deref(), Some("drained: it ran no tasks"));
        let late = DrainView { deadline_passed: true, ..view(1) };
        assert!(finished(&late, 2).is_some_and(|d| d.contains("deadline passed with 1 tasks left")));
        let stuck = DrainView { stuck: Some("no other agent accepts tasks".into()), ..view(2) };
        assert!(finished(&stuck, 2).is_some_and(|d| d.contains("cannot move (no other agent accepts tasks)")));
    }

    #[tokio::test]
    async fn asks_the_master_to_drain_and_waits_until_the_agent_is_empty() {
        let api = Arc::new(FakeClusterApi::new());
        api.script_drain("w-2", vec![view(3), view(2), view(2), view(0)]);
        let mut host = agent_host(api.clone(), Role::Agent);
        let outcome = quick().run(&mut host).await.expect("drain");
        assert_eq!(outcome, PhaseOutcome::Done("drained: 3 tasks moved or finished".to_string()));
        assert_eq!(api.drained(), vec![("w-2".to_string(), Duration::from_secs(60))]);
        assert_eq!(api.drain_polls("w-2"), 3, "polled until the agent was empty, and no more");
    }

    #[tokio::test]
    async fn skips_masters_unregistered_agents_and_an_unreachable_master() {
        let api = Arc::new(FakeClusterApi::new());
        let outcome = quick().run(&mut agent_host(api.clone(), Role::Master)).await.expect("master");
        assert!(matches!(outcome, PhaseOutcome::Skipped(_)));
        assert!(api.drained().is_empty(), "a master is not drained");
        api.set_agent("w-2", None);
        let outcome = quick().run(&mut agent_host(api.clone(), Role::Agent)).await.expect("not registered");
        assert_eq!(outcome, PhaseOutcome::Skipped("not registered".to_string()));
        let down = Arc::new(FakeClusterApi::new());
        down.fail_drains("connection refused");
        let outcome = quick().run(&mut agent_host(down.clone(), Role::Agent)).await.expect("no master");
        assert!(matches!(&outcome, PhaseOutcome::Skipped(m) if m.contains("connection refused")), "{outcome:?}");
    }

    #[tokio::test]
    async fn gives_up_waiting_when_the_master_stops_answering() {
        let api = Arc::new(FakeClusterApi::new());
        api.set_agent("w-2", Some(AgentView { state: gantry_api::AgentState::Active, tasks: 2 }));
        api.script_drain("w-2", vec![view(2)]);
        api.fail_drain_polls("connection refused");
        let outcome = quick().run(&mut agent_host(api.clone(), Role::Agent)).await.expect("gives up");
        assert!(matches!(&outcome, PhaseOutcome::Done(m) if m.contains("stopped answering")), "{outcome:?}");
    }
}
