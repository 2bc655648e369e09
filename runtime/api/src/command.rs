//! What every task runs — a command and the resources it needs — and the checks on it that
//! apps and jobs share. Field paths in errors carry the caller's prefix (`""` for an app,
//! `"run."` for a job), so they point at the key the user wrote.

use crate::container::{ContainerSpec, Volume};
use crate::error::ValidationError;
use std::collections::BTreeMap;

/// The command and resources of one task, borrowed from an app or a job definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskCommand<'a> {
    /// A shell command line.
    pub cmd: &'a Option<String>,
    /// A program and its arguments.
    pub args: &'a Option<Vec<String>>,
    /// Environment variables.
    pub env: &'a BTreeMap<String, String>,
    /// CPU shares.
    pub cpus: f64,
    /// Memory in MiB.
    pub mem: f64,
    /// Disk in MiB.
    pub disk: f64,
    /// The image, when the task runs in a container.
    pub container: Option<&'a ContainerSpec>,
    /// Host directories mounted into the container.
    pub volumes: &'a [Volume],
}

impl TaskCommand<'_> {
    /// Exactly one of `cmd` and `args`, non-empty (in a container: at most one, and not with
    /// `container.cmd`); positive cpus and mem; non-negative disk; environment names without `=`.
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let at = |field: &str| format!("{prefix}{field}");
        if let Some(container) = self.container {
            container.validate(prefix)?;
            if container.cmd.is_some() && (self.cmd.is_some() || self.args.is_some()) {
                let field = if self.cmd.is_some() { "cmd" } else { "args" };
                return Err(ValidationError::new(
                    at(field),
                    format!("set the container's command once: `{}` or `{}`, not both", at(field), at("container.cmd")),
                ));
            }
        }
        crate::container::validate_volumes(prefix, self.volumes, self.container.is_some())?;
        match (self.cmd, self.args) {
            (None, None) if self.container.is_some() => {}
            (None, None) => {
                return Err(ValidationError::new(
                    at("cmd"),
                    format!("set `{}` (a shell command) or `{}` (a program and its arguments)", at("cmd"), at("args")),
                ));
            }
            (Some(_), Some(_)) => return Err(ValidationError::new(at("args"), "set only one of `cmd` and `args`")),
            (Some(cmd), None) if cmd.trim().is_empty() => {
                return Err(ValidationError::new(at("cmd"), "`cmd` is empty"));
            }
            (None, Some(args)) if args.is_empty() || args[0].is_empty() => {
                return Err(ValidationError::new(at("args"), "`args` needs at least the program to run"));
            }
            _ => {}
        }
        for (field, value) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if !value.is_finite() || value < 0.0 {
                return Err(ValidationError::new(
                    at(field),
                    format!("`{field}` must be a non-negative number, got {value}"),
                ));
            }
        }
        if self.cpus <= 0.0 {
            return Err(ValidationError::new(at("cpus"), "`cpus` must be greater than 0 (e.g. 0.1)"));
        }
        if self.mem <= 0.0 {
            return Err(ValidationError::new(at("mem"), "`mem` must be greater than 0 MiB (e.g. 32)"));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ValidationError::new(
                    at(&format!("env.{key}")),
                    "environment names must be non-empty and contain no `=`",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_name_the_key_under_the_callers_prefix() {
        let env = BTreeMap::from([("A=B".to_string(), "x".to_string())]);
        let none: Option<Vec<String>> = None;
        let cmd = Some("true".to_string());
        let ok = TaskCommand {
            cmd: &cmd,
            args: &none,
            env: &BTreeMap::new(),
            cpus: 0.1,
            mem: 16.0,
            disk: 0.0,
            container: None,
            volumes: &[],
        };
        assert_eq!(ok.validate("run."), Ok(()));
        let no_command = TaskCommand { cmd: &None, ..ok };
        let err = no_command.validate("run.").expect_err("no command");
        assert_eq!(err.field, "run.cmd");
        assert!(err.message.contains("set `run.cmd`") && err.message.contains("`run.args`"), "{err}");
        assert_eq!(no_command.validate("").expect_err("no command").field, "cmd");
        assert_eq!(TaskCommand { cpus: 0.0, ..ok }.validate("").expect_err("cpus").field, "cpus");
        assert_eq!(TaskCommand { disk: -1.0, ..ok }.validate("run.").expect_err("disk").field, "run.disk");
        assert_eq!(TaskCommand { env: &env, ..ok }.validate("run.").expect_err("env").field, "run.env.A=B");
        let both = Some(vec!["true".to_string()]);
        assert_eq!(TaskCommand { args: &both, ..ok }.validate("").expect_err("both").field, "args");
    }

    #[test]
    fn a_container_may_bring_its_own_command_but_only_one() {
        let image = ContainerSpec {
            image: "team/web:1.4".into(),
            entrypoint: None,
            cmd: None,
            pull: Default::default(),
            registry_auth: None,
            working_dir: None,
        };
        let none: Option<Vec<String>> = None;
        let env = BTreeMap::new();
        let bare = TaskCommand {
            cmd: &None,
            args: &none,
            env: &env,
            cpus: 0.1,
            mem: 16.0,
            disk: 0.0,
            container: Some(&image),
            volumes: &[],
        };
        assert_eq!(bare.validate(""), Ok(()), "the image's entrypoint and cmd run");
        let with_cmd = ContainerSpec { cmd: Some(vec!["/bin/httpd".into()]), ..image.clone() };
        let shell = Some("httpd -f".to_string());
        let twice = TaskCommand { cmd: &shell, container: Some(&with_cmd), ..bare };
        let error = twice.validate("run.").expect_err("two commands");
        assert_eq!(error.field, "run.cmd");
        assert!(error.message.contains("`run.container.cmd`"), "{error}");
        let bad_image = ContainerSpec { image: "Web".into(), ..image.clone() };
        let error = TaskCommand { container: Some(&bad_image), ..bare }.validate("").expect_err("bad image");
        assert_eq!(error.field, "container.image");
    }
}
