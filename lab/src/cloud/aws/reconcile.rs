//! The watcher's decisions, pure: from what the lab did so far and what one DescribeInstances
//! poll shows, the actions that make the lab's hosts follow the instances. No I/O here.

use crate::testhosts::{Ipv4Cidr, valid_host_name};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// An instance: its region and id.
pub(super) type Key = (String, String);

/// An EC2 instance state, as far as the lab cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl State {
    /// The state of an EC2 state name; `None` for one the lab does not know.
    pub(super) fn parse(name: &str) -> Option<State> {
        Some(match name {
            "pending" => State::Pending,
            "running" => State::Running,
            "stopping" => State::Stopping,
            "stopped" => State::Stopped,
            "shutting-down" => State::ShuttingDown,
            "terminated" => State::Terminated,
            _ => return None,
        })
    }
}

/// One instance as one poll shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Observed {
    pub region: String,
    pub id: String,
    pub state: State,
    pub private_ip: Option<Ipv4Addr>,
    /// The `Name` tag.
    pub name: Option<String>,
    /// The key pair the instance was launched with.
    pub key_name: Option<String>,
}

impl Observed {
    fn key(&self) -> Key {
        (self.region.clone(), self.id.clone())
    }

    /// The hostname the instance's host gets: its `Name` tag when that is a valid hostname,
    /// else its id.
    pub(super) fn hostname(&self) -> String {
        match &self.name {
            Some(name) if valid_host_name(name) => name.clone(),
            _ => self.id.clone(),
        }
    }
}

/// What the lab did about an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tracked {
    /// It has a host of this name, running or stopped.
    Host { name: String, running: bool },
    /// It runs outside the lab network (logged once).
    Ignored,
    /// Creating its host failed (logged once; not retried).
    Failed,
}

/// One step the watcher takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Give a running instance a host.
    Create { key: Key, address: Ipv4Addr, hostname: String, key_name: Option<String> },
    /// Boot the stopped host of an instance running again.
    Start { key: Key, host: String },
    /// Stop the host of an instance stopping or stopped.
    Stop { key: Key, host: String },
    /// Remove the host of a terminated (or vanished) instance.
    Remove { key: Key, host: String },
    /// Leave a running instance alone, saying why once.
    Ignore { key: Key, reason: String },
    /// Drop the record of an ignored or failed instance that is gone.
    Forget { key: Key },
}

/// The actions that bring the lab in line with `observed`, the instances of the regions in
/// `described` (a region whose poll failed is absent: its hosts stay as they are).
pub(super) fn plan(
    tracked: &BTreeMap<Key, Tracked>,
    observed: &[Observed],
    described: &BTreeSet<String>,
    cidr: Ipv4Cidr,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut seen = BTreeSet::new();
    for instance in observed {
        let key = instance.key();
        seen.insert(key.clone());
        let gone = matches!(instance.state, State::ShuttingDown | State::Terminated);
        match (tracked.get(&key), instance.state) {
            (None, State::Running) => match instance.private_ip {
                Some(address) if cidr.contains(address) => actions.push(Action::Create {
                    key,
                    address,
                    hostname: instance.hostname(),
                    key_name: instance.key_name.clone(),
                }),
                Some(address) => actions.push(Action::Ignore {
                    key,
                    reason: format!("its private address {address} is outside the lab network {cidr}"),
                }),
                None => actions.push(Action::Ignore { key, reason: "it has no private IPv4 address".into() }),
            },
            (Some(Tracked::Host { name, running: false }), State::Running) => {
                actions.push(Action::Start { key, host: name.clone() })
            }
            (Some(Tracked::Host { name, running: true }), State::Stopping | State::Stopped) => {
                actions.push(Action::Stop { key, host: name.clone() })
            }
            (Some(Tracked::Host { name, .. }), _) if gone => actions.push(Action::Remove { key, host: name.clone() }),
            (Some(Tracked::Ignored | Tracked::Failed), _) if gone => actions.push(Action::Forget { key }),
            _ => {}
        }
    }
    for (key, record) in tracked {
        if seen.contains(key) || !described.contains(&key.0) {
            continue;
        }
        actions.push(match record {
            Tracked::Host { name, .. } => Action::Remove { key: key.clone(), host: name.clone() },
            Tracked::Ignored | Tracked::Failed => Action::Forget { key: key.clone() },
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "eu-west-1";

    fn cidr() -> Ipv4Cidr {
        Ipv4Cidr { network: Ipv4Addr::new(10, 77, 9, 0), prefix_len: 24 }
    }

    fn key(id: &str) -> Key {
        (REGION.to_string(), id.to_string())
    }

    fn instance(id: &str, state: State, ip: Option<[u8; 4]>) -> Observed {
        Observed {
            region: REGION.into(),
            id: id.into(),
            state,
            private_ip: ip.map(Ipv4Addr::from),
            name: None,
            key_name: Some("lab-key".into()),
        }
    }

    fn described() -> BTreeSet<String> {
        [REGION.to_string()].into()
    }

    fn host(name: &str, running: bool) -> Tracked {
        Tracked::Host { name: name.into(), running }
    }

    #[test]
    fn a_running_instance_in_the_lab_network_gets_a_host_named_by_its_tag() {
        let mut named = instance("i-1", State::Running, Some([10, 77, 9, 4]));
        named.name = Some("master-0".into());
        let plain = instance("i-2", State::Running, Some([10, 77, 9, 5]));
        let actions = plan(&BTreeMap::new(), &[named, plain], &described(), cidr());
        assert_eq!(
            actions,
            vec![
                Action::Create {
                    key: key("i-1"),
                    address: Ipv4Addr::new(10, 77, 9, 4),
                    hostname: "master-0".into(),
                    key_name: Some("lab-key".into())
                },
                Action::Create {
                    key: key("i-2"),
                    address: Ipv4Addr::new(10, 77, 9, 5),
                    hostname: "i-2".into(),
                    key_name: Some("lab-key".into())
                },
            ]
        );
    }

    #[test]
    fn a_name_tag_that_is_no_hostname_gives_way_to_the_id() {
        let mut odd = instance("i-1", State::Running, Some([10, 77, 9, 4]));
        odd.name = Some("my web server".into());
        assert_eq!(odd.hostname(), "i-1");
    }

    #[test]
    fn pending_and_stopped_instances_without_a_host_wait() {
        let observed = [
            instance("i-1", State::Pending, Some([10, 77, 9, 4])),
            instance("i-2", State::Stopped, Some([10, 77, 9, 5])),
            instance("i-3", State::Terminated, Some([10, 77, 9, 6])),
        ];
        assert_eq!(plan(&BTreeMap::new(), &observed, &described(), cidr()), vec![]);
    }

    #[test]
    fn instances_outside_the_lab_network_are_ignored_once() {
        let observed = [instance("i-1", State::Running, Some([10, 0, 0, 4])), instance("i-2", State::Running, None)];
        let actions = plan(&BTreeMap::new(), &observed, &described(), cidr());
        assert!(
            matches!(&actions[0], Action::Ignore { key: k, reason } if *k == key("i-1") && reason.contains("10.0.0.4"))
        );
        assert!(matches!(&actions[1], Action::Ignore { key: k, .. } if *k == key("i-2")));
        let tracked: BTreeMap<Key, Tracked> = [(key("i-1"), Tracked::Ignored), (key("i-2"), Tracked::Ignored)].into();
        assert_eq!(plan(&tracked, &observed, &described(), cidr()), vec![]);
    }

    #[test]
    fn hosts_follow_stop_start_and_terminate() {
        let tracked: BTreeMap<Key, Tracked> = [
            (key("i-1"), host("a", true)),
            (key("i-2"), host("b", true)),
            (key("i-3"), host("c", false)),
            (key("i-4"), host("d", true)),
            (key("i-5"), host("e", false)),
            (key("i-6"), host("f", true)),
        ]
        .into();
        let ip = Some([10, 77, 9, 4]);
        let observed = [
            instance("i-1", State::Stopping, ip),
            instance("i-2", State::Stopped, ip),
            instance("i-3", State::Running, ip),
            instance("i-4", State::ShuttingDown, ip),
            instance("i-5", State::Terminated, ip),
            instance("i-6", State::Running, ip),
        ];
        assert_eq!(
            plan(&tracked, &observed, &described(), cidr()),
            vec![
                Action::Stop { key: key("i-1"), host: "a".into() },
                Action::Stop { key: key("i-2"), host: "b".into() },
                Action::Start { key: key("i-3"), host: "c".into() },
                Action::Remove { key: key("i-4"), host: "d".into() },
                Action::Remove { key: key("i-5"), host: "e".into() },
            ]
        );
    }

    #[test]
    fn a_stopped_host_stays_stopped_while_its_instance_is() {
        let tracked: BTreeMap<Key, Tracked> = [(key("i-1"), host("a", false))].into();
        let observed = [instance("i-1", State::Stopped, Some([10, 77, 9, 4]))];
        assert_eq!(plan(&tracked, &observed, &described(), cidr()), vec![]);
    }

    #[test]
    fn vanished_instances_go_only_when_their_region_was_described() {
        let tracked: BTreeMap<Key, Tracked> = [
            (key("i-1"), host("a", true)),
            (key("i-2"), Tracked::Failed),
            (("us-east-1".to_string(), "i-3".to_string()), host("c", true)),
        ]
        .into();
        assert_eq!(
            plan(&tracked, &[], &described(), cidr()),
            vec![Action::Remove { key: key("i-1"), host: "a".into() }, Action::Forget { key: key("i-2") }]
        );
        assert_eq!(plan(&tracked, &[], &BTreeSet::new(), cidr()), vec![]);
    }

    #[test]
    fn failed_instances_are_not_retried_and_forgotten_when_terminated() {
        let tracked: BTreeMap<Key, Tracked> = [(key("i-1"), Tracked::Failed)].into();
        let running = [instance("i-1", State::Running, Some([10, 77, 9, 4]))];
        assert_eq!(plan(&tracked, &running, &described(), cidr()), vec![]);
        let terminated = [instance("i-1", State::Terminated, Some([10, 77, 9, 4]))];
        assert_eq!(plan(&tracked, &terminated, &described(), cidr()), vec![Action::Forget { key: key("i-1") }]);
    }

    #[test]
    fn state_names_parse() {
        assert_eq!(State::parse("running"), Some(State::Running));
        assert_eq!(State::parse("shutting-down"), Some(State::ShuttingDown));
        assert_eq!(State::parse("hibernating"), None);
    }
}
