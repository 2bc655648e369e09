//! The services framework as an allocator [`Framework`]: runs the pure reconciler for every app,
//! then turns offers into tasks with `gantry_scheduler::place`, and records why instances wait.
//! Rolling replacements follow the app's upgrade strategy and active deployment
//! ([`deployment::rollout`]).

use crate::allocator::{Accept, ClusterView, Framework, Kill, Offer};
use crate::services::reconcile::{ReconcileInput, reconcile};
use crate::services::{backoff, deployment};
use gantry_api::app::HealthProtocol;
use gantry_api::protocol::{LaunchTask, NamedPort, TaskHealthCheck, TaskHealthCheckKind};
use gantry_api::{AppDefinition, Millis, Resources, Task};
use gantry_scheduler::{AgentSlot, PlacedOn, PlacementRequest, place};
use std::collections::{BTreeMap, BTreeSet};

/// Why instances wait when no agent is active.
pub const NO_AGENTS: &str = "no agents are registered";

/// Why instances wait when every active agent is draining (no agent gets offers).
pub const ALL_DRAINING: &str = "every active agent is draining";

/// Why a task on a draining agent was stopped.
pub const MOVED_OFF_DRAINING_AGENT: &str = "replaced elsewhere: its agent is draining";

/// Ids of the agents being drained (their tasks are leaving; placement no longer counts them).
fn draining_agents(state: &crate::state::ClusterState) -> BTreeSet<String> {
    state.agents().filter(|e| e.agent.drain.is_some()).map(|e| e.agent.info.id.clone()).collect()
}

/// The built-in framework of long-running apps.
#[derive(Debug, Default)]
pub struct ServicesFramework {
    pending: BTreeMap<String, u32>,
}

impl ServicesFramework {
    /// A framework with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Framework for ServicesFramework {
    fn name(&self) -> &str {
        "services"
    }

    /// Every task but job runs' (see `crate::jobs`).
    fn owns(&self, task: &Task) -> bool {
        !crate::jobs::is_job_task(task)
    }

    fn reconcile(&mut self, view: &mut ClusterView<'_>) -> Vec<Kill> {
        self.pending.clear();
        let now = view.now();
        let mut kills = Vec::new();
        let mut runtime_updates = Vec::new();
        let draining = draining_agents(view.state());
        for entry in view.state().apps() {
            let definition = &entry.record.app.definition;
            let id = definition.id.clone();
            let has_checks = !definition.health_checks.is_empty();
            let mut tasks = view.state().tasks_of_app(&id);
            tasks.retain(|t| self.owns(t));
            let stable = entry.runtime.failures > 0 && tasks.iter().any(|t| backoff::is_stable(t, has_checks, now));
            let decisions = reconcile(&ReconcileInput {
                instances: definition.instances,
                config_version: entry.record.config_version,
                has_health_checks: has_checks,
                deleted: false,
                tasks: &tasks,
                draining: &draining,
                now,
                backoff_until: if stable { None } else { entry.runtime.backoff_until },
                rollout: deployment::rollout(definition, entry.history.active()),
            });
            kills.extend(decisions.kill.into_iter().map(|task_id| {
                let replaced = tasks.iter().any(|t| t.id == task_id && t.app_version < entry.record.config_version);
                let reason = if replaced {
                    format!("replaced by version {} of the app", entry.record.app.version)
                } else {
                    format!("scaled down to {} instances", definition.instances)
                };
                Kill { task_id, grace_period_secs: definition.kill_grace_period, reason: Some(reason) }
            }));
            kills.extend(decisions.drained.into_iter().map(|task_id| Kill {
                task_id,
                grace_period_secs: definition.kill_grace_period,
                reason: Some(MOVED_OFF_DRAINING_AGENT.to_string()),
            }));
            if decisions.launch > 0 {
                self.pending.insert(id.clone(), decisions.launch);
            }
            let clear_waiting = decisions.launch == 0 && entry.runtime.waiting.is_some();
            if stable || clear_waiting {
                runtime_updates.push((id, stable, clear_waiting));
            }
        }
        for (id, stable, clear_waiting) in runtime_updates {
            if let Some(runtime) = view.app_runtime_mut(&id) {
                if stable {
                    backoff::reset(runtime);
                }
                if clear_waiting {
                    runtime.waiting = None;
                }
            }
        }
        kills
    }

    fn has_demand(&self) -> bool {
        !self.pending.is_empty()
    }

    fn resource_offers(&mut self, offers: &[Offer], view: &mut ClusterView<'_>) -> Vec<Accept> {
        let pending = std::mem::take(&mut self.pending);
        if view.active_agents() == 0 {
            for id in pending.keys() {
                if let Some(runtime) = view.app_runtime_mut(id) {
                    runtime.waiting = Some(NO_AGENTS.to_string());
                }
            }
            return Vec::new();
        }
        let mut slots: Vec<AgentSlot> = offers
            .iter()
            .map(|o| AgentSlot {
                agent_id: o.agent_id.clone(),
                hostname: o.hostname.clone(),
                attributes: o.attributes.clone(),
                free: o.free.clone(),
            })
            .collect();
        let now = view.now();
        let mut accepts = Vec::new();
        let mut waiting = Vec::new();
        let draining = draining_agents(view.state());
        for (id, count) in pending {
            let Some(entry) = view.state().app(&id) else { continue };
            let app = &entry.record.app;
            let definition = &app.definition;
            let existing: Vec<PlacedOn> = view
                .state()
                .tasks_of_app(&id)
                .into_iter()
                .filter(|t| t.state.is_active() && !draining.contains(&t.agent_id))
                .filter_map(|t| view.state().agent(&t.agent_id))
                .map(|a| PlacedOn {
                    hostname: a.agent.info.hostname.clone(),
                    attributes: a.agent.info.attributes.clone(),
                })
                .collect();
            let resources = definition.resources();
            let ports: Vec<u16> = definition.ports.iter().map(|p| p.port).collect();
            let request = PlacementRequest {
                app_id: &id,
                resources: &resources,
                ports: &ports,
                constraints: &definition.constraints,
                count: count as usize,
            };
            let outcome = if slots.is_empty() {
                gantry_scheduler::PlacementOutcome { placed: Vec::new(), reason: Some(ALL_DRAINING.to_string()) }
            } else {
                place(&request, &mut slots, &existing)
            };
            for placed in &outcome.placed {
                let Some(offer) = offers.get(placed.agent_index) else { continue };
                accepts.push(build_accept(definition, app.version, offer, &placed.ports, now));
            }
            let reason = if outcome.placed.len() < count as usize {
                Some(outcome.reason.unwrap_or_else(|| "not enough free resources on any agent".to_string()))
            } else {
                None
            };
            waiting.push((id, reason));
        }
        for (id, reason) in waiting {
            if let Some(runtime) = view.app_runtime_mut(&id) {
                runtime.waiting = reason;
            }
        }
        accepts
    }
}

/// A new STAGING task of `definition` on `offer`'s agent with the chosen host ports, and its
/// launch command.
pub fn build_accept(definition: &AppDefinition, version: u64, offer: &Offer, ports: &[u16], now: Millis) -> Accept {
    let task_id = format!("{}.{}", definition.id, uuid::Uuid::new_v4());
    let mut resources = definition.resources();
    resources.ports = Resources::from_ports(ports);
    let named: Vec<NamedPort> =
        definition.ports.iter().zip(ports).map(|(d, p)| NamedPort { name: d.name.clone(), port: *p }).collect();
    let health_checks = definition
        .health_checks
        .iter()
        .map(|hc| {
            let port = hc
                .port_name
                .as_ref()
                .and_then(|name| named.iter().find(|p| &p.name == name))
                .or_else(|| named.first())
                .map_or(0, |p| p.port);
            let kind = match hc.protocol {
                HealthProtocol::Http => TaskHealthCheckKind::Http { port, path: hc.path.clone() },
                HealthProtocol::Tcp => TaskHealthCheckKind::Tcp { port },
                HealthProtocol::Command => {
                    TaskHealthCheckKind::Command { command: hc.command.clone().unwrap_or_default() }
                }
            };
            TaskHealthCheck {
                kind,
                grace_period_secs: hc.grace_period,
                interval_secs: hc.interval,
                timeout_secs: hc.timeout,
                max_consecutive_failures: hc.max_consecutive_failures,
            }
        })
        .collect();
    let launch = LaunchTask {
        task_id: task_id.clone(),
        app_id: definition.id.clone(),
        cmd: definition.cmd.clone(),
        args: definition.args.clone(),
        env: definition.env.clone(),
        resources: resources.clone(),
        ports: named,
        health_checks,
        kill_grace_period_secs: definition.kill_grace_period,
        secrets: definition.secrets.clone(),
        secret_files: definition.secret_files.clone(),
        secret_values: Default::default(),
        user: definition.user.clone(),
        container: definition.container.clone(),
        volumes: definition.volumes.clone(),
    };
    let task = Task {
        app_version: version,
        ports: ports.to_vec(),
        resources,
        ..crate::allocator::staging_task(offer, task_id, &definition.id, now)
    };
    Accept { offer_id: offer.id, task, launch }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_resolve_ports_and_health_checks() {
        let definition: AppDefinition = serde_json::from_str(
            r#"{"id":"web","cmd":"serve","env":{"A":"1"},"ports":[{"name":"http"},{"name":"admin","port":9000}],
                "health_checks":[{"protocol":"HTTP","port_name":"admin","path":"/ok"},{"protocol":"TCP"}]}"#,
        )
        .expect("valid");
        let offer = Offer {
            id: 3,
            agent_id: "a1".into(),
            hostname: "h1".into(),
            attributes: BTreeMap::new(),
            free: Resources::default(),
        };
        let accept = build_accept(&definition, 4, &offer, &[31000, 9000], 77);
        assert!(accept.task.id.starts_with("web."));
        assert_eq!(accept.offer_id, 3);
        assert_eq!(accept.task.app_version, 4);
        assert!(accept.task.resources.has_port(31000) && accept.task.resources.has_port(9000));
        assert_eq!(accept.launch.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(accept.launch.ports[1], NamedPort { name: "admin".into(), port: 9000 });
        assert_eq!(accept.launch.health_checks[0].kind, TaskHealthCheckKind::Http { port: 9000, path: "/ok".into() });
        assert_eq!(accept.launch.health_checks[1].kind, TaskHealthCheckKind::Tcp { port: 31000 });
    }
}
