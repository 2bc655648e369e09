//! Whom a task runs as: the app's or job's `user`, else the agent's default (`--task-user`),
//! else `nobody` when the agent runs as root (else the agent's own user). Looked up in the
//! host's user database; the executor switches to it (groups dropped) before it runs the task.

use nix::unistd::{Uid, User};

/// The user a task runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// The user name tasks run as when neither the launch nor the agent names one.
pub const ROOT_DEFAULT: &str = "nobody";

/// Resolves the user of a task: `requested` (the launch's), else `default` (the agent's), else
/// `nobody` when the agent is root. `None`: the task runs as the agent's own user.
pub fn resolve(requested: Option<&str>, default: Option<&str>) -> Result<Option<RunAs>, String> {
    let root = Uid::effective().is_root();
    let Some(name) = requested.or(default).or(root.then_some(ROOT_DEFAULT)) else {
        return Ok(None);
    };
    let user = User::from_name(name)
        .map_err(|e| format!("cannot look up user `{name}`: {e}"))?
        .ok_or_else(|| format!("user `{name}` does not exist on this host"))?;
    let run_as = RunAs { name: name.to_string(), uid: user.uid.as_raw(), gid: user.gid.as_raw() };
    if !root && run_as.uid != Uid::effective().as_raw() {
        return Err(format!(
            "the agent runs as uid {} and cannot start tasks as user `{name}`: run the agent as root, or leave `user` unset",
            Uid::effective()
        ));
    }
    Ok(Some(run_as))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_precedence_and_unknown_ones_are_named() {
        let me = User::from_uid(Uid::effective()).expect("lookup").expect("this user exists");
        let resolved = resolve(Some(&me.name), Some("nobody")).expect("own user").expect("some");
        assert_eq!(resolved.uid, Uid::effective().as_raw());
        let err = resolve(Some("no-such-user-gantry"), None).expect_err("unknown");
        assert!(err.contains("does not exist"), "{err}");
        let default = resolve(None, None).expect("default");
        if Uid::effective().is_root() {
            assert_eq!(default.expect("root runs tasks as nobody").name, ROOT_DEFAULT);
        } else {
            assert_eq!(default, None, "a non-root agent runs tasks as itself");
        }
    }
}
