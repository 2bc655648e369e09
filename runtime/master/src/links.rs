//! Command links to agents: one channel per connected command stream, and a bounded queue of
//! commands issued while an agent has no stream. A new stream replaces the old one and receives
//! the queue; a re-registration drops the queue (registration reconciliation supersedes it).
//!
//! This module only routes commands; it decides nothing about what to send.

use gantry_api::protocol::AgentCommand;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// At most this many commands wait for an agent without a stream; older ones are dropped.
const MAX_QUEUED: usize = 10_000;

#[derive(Debug, Default)]
struct Link {
    sender: Option<mpsc::UnboundedSender<AgentCommand>>,
    queue: Vec<AgentCommand>,
}

/// Every agent's command link.
#[derive(Debug, Default)]
pub struct AgentLinks {
    links: HashMap<String, Link>,
}

impl AgentLinks {
    /// Sends a command now, or queues it until the agent connects.
    pub fn send(&mut self, agent_id: &str, command: AgentCommand) {
        let link = self.links.entry(agent_id.to_string()).or_default();
        let command = match &link.sender {
            Some(sender) => match sender.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(command)) => command,
            },
            None => command,
        };
        link.sender = None;
        if matches!(command, AgentCommand::Ping) {
            return;
        }
        if link.queue.len() >= MAX_QUEUED {
            link.queue.remove(0);
        }
        link.queue.push(command);
    }

    /// Opens a new stream for an agent, replacing any previous one, and flushes its queue.
    pub fn connect(&mut self, agent_id: &str) -> mpsc::UnboundedReceiver<AgentCommand> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let link = self.links.entry(agent_id.to_string()).or_default();
        for command in link.queue.drain(..) {
            // The receiver is alive in this scope, so sending cannot fail.
            let _ = sender.send(command);
        }
        link.sender = Some(sender);
        receiver
    }

    /// Drops the commands queued for an agent (it re-registered).
    pub fn clear_queue(&mut self, agent_id: &str) {
        if let Some(link) = self.links.get_mut(agent_id) {
            link.queue.clear();
        }
    }

    /// Closes an agent's stream (it became unreachable).
    pub fn disconnect(&mut self, agent_id: &str) {
        if let Some(link) = self.links.get_mut(agent_id) {
            link.sender = None;
        }
    }

    /// Sends `ping` on every open stream.
    pub fn ping_all(&mut self) {
        for link in self.links.values_mut() {
            if let Some(sender) = &link.sender
                && sender.send(AgentCommand::Ping).is_err()
            {
                link.sender = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(id: &str) -> AgentCommand {
        AgentCommand::Kill { task_id: id.to_string(), grace_period_secs: 1.0 }
    }

    #[test]
    fn queues_until_connected_and_replaces_streams() {
        let mut links = AgentLinks::default();
        links.send("a", kill("t1"));
        links.send("a", AgentCommand::Ping);
        let mut first = links.connect("a");
        assert_eq!(first.try_recv().ok(), Some(kill("t1")));
        assert!(first.try_recv().is_err());
        let mut second = links.connect("a");
        links.send("a", kill("t2"));
        assert_eq!(second.try_recv().ok(), Some(kill("t2")));
        assert!(first.try_recv().is_err(), "the replaced stream is closed");
        drop(second);
        links.send("a", kill("t3"));
        links.clear_queue("a");
        let mut third = links.connect("a");
        assert!(third.try_recv().is_err(), "a re-registration drops the queue");
    }
}
