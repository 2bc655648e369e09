//! A plan as a readable diff, one line per host:
//! `+` hosts created, `~` hosts changed in place, `-` hosts destroyed.

use super::{Action, ActionKind, Plan, Reason};
use crate::cluster_file::Role;
use std::fmt;

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::New => f.write_str("new"),
            Self::Missing => f.write_str("in the journal but missing at the provider"),
            Self::Stopped => f.write_str("stopped at the provider"),
            Self::Adopt => f.write_str("running but not in the journal: adopted"),
            Self::NotBootstrapped => f.write_str("not bootstrapped yet"),
            Self::Drained => f.write_str("drained earlier, wanted again"),
            Self::Resume(kind) => write!(f, "resuming an interrupted {}", kind.verb()),
            Self::Changed(keys) => write!(f, "{} changed", keys.join(", ")),
            Self::Removed => f.write_str("no longer in the cluster file"),
            Self::Teardown => f.write_str("the cluster is taken down"),
            Self::Unknown => f.write_str("at the provider but not in the journal: nothing may leak"),
            Self::Gone => f.write_str("already gone at the provider: forget it"),
            Self::Unhealthy(why) => write!(f, "{why}: bootstrap again"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "No changes: the cluster matches {}.", self.source)?;
        } else {
            let hosts = group_by_host(&self.actions);
            let count = |sign: char| hosts.iter().filter(|h| h.sign() == sign).count();
            writeln!(
                f,
                "Plan for cluster `{}` ({}): {} to create, {} to change, {} to destroy.",
                self.cluster,
                self.source,
                count('+'),
                count('~'),
                count('-')
            )?;
            let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
            for h in &hosts {
                let verbs: Vec<&str> = h.kinds.iter().map(|k| k.verb()).collect();
                let what = match h.role {
                    Role::Master if h.pool == "master" => "master".to_string(),
                    role => format!("{role}, pool {}", h.pool),
                };
                writeln!(f, "{} {:<18} {:<width$}  ({what}: {})", h.sign(), verbs.join("+"), h.name, h.reason)?;
            }
        }
        for name in &self.ignored {
            writeln!(f, "? ignore {name} (not named like this cluster's hosts)")?;
        }
        Ok(())
    }
}

/// The actions on one host, in plan order.
struct HostLine<'a> {
    name: &'a str,
    role: Role,
    pool: &'a str,
    kinds: Vec<ActionKind>,
    reason: &'a Reason,
}

impl HostLine<'_> {
    fn sign(&self) -> char {
        if self.kinds.contains(&ActionKind::Destroy) {
            '-'
        } else if self.kinds.contains(&ActionKind::Create) {
            '+'
        } else {
            '~'
        }
    }
}

fn group_by_host(actions: &[Action]) -> Vec<HostLine<'_>> {
    let mut lines: Vec<HostLine<'_>> = Vec::new();
    for action in actions {
        match lines.iter_mut().find(|l| l.name == action.host_name()) {
            Some(line) => {
                line.kinds.push(action.kind());
                line.reason = action.reason();
            }
            None => lines.push(HostLine {
                name: action.host_name(),
                role: action.role(),
                pool: action.pool(),
                kinds: vec![action.kind()],
                reason: action.reason(),
            }),
        }
    }
    lines
}
