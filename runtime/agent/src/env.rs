//! The environment of a task: the app's variables, its secrets' values, plus what the agent adds
//! (ports, host, ids, sandbox). Pure; the executor applies the result on top of its own environment.

use gantry_api::AppDefinition;
use gantry_api::protocol::LaunchTask;
use std::collections::BTreeMap;
use std::path::Path;

/// The variables a task gets beyond the executor's own environment. The agent's variables win
/// over the app's.
pub fn task_env(launch: &LaunchTask, host: &str, sandbox: &Path) -> BTreeMap<String, String> {
    let mut env = launch.env.clone();
    for (variable, name) in &launch.secrets {
        if let Some(value) = launch.secret_values.get(name) {
            env.insert(variable.clone(), value.to_string());
        }
    }
    let ports: Vec<(Option<&str>, u16)> = if launch.ports.is_empty() {
        launch.resources.ports.iter().flat_map(|r| r.begin..=r.end).map(|p| (None, p)).collect()
    } else {
        launch.ports.iter().map(|p| (Some(p.name.as_str()), p.port)).collect()
    };
    for (index, (name, port)) in ports.iter().enumerate() {
        env.insert(format!("PORT{index}"), port.to_string());
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            env.insert(AppDefinition::port_env_name(name), port.to_string());
        }
    }
    if let Some((_, first)) = ports.first() {
        env.insert("PORT".to_string(), first.to_string());
    }
    env.insert("HOST".to_string(), host.to_string());
    env.insert("GANTRY_TASK_ID".to_string(), launch.task_id.clone());
    env.insert("GANTRY_APP_ID".to_string(), launch.app_id.clone());
    env.insert("GANTRY_SANDBOX".to_string(), sandbox.display().to_string());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::Resources;
    use gantry_api::protocol::NamedPort;

    fn launch(ports: Vec<NamedPort>, resource_ports: &[u16]) -> LaunchTask {
        LaunchTask {
            task_id: "web.1".into(),
            app_id: "web".into(),
            cmd: Some("true".into()),
            args: None,
            env: BTreeMap::from([("PORT".to_string(), "1".to_string()), ("MODE".to_string(), "x".to_string())]),
            resources: Resources { ports: Resources::from_ports(resource_ports), ..Resources::default() },
            ports,
            health_checks: Vec::new(),
            kill_grace_period_secs: 1.0,
            secrets: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            secret_values: Default::default(),
            user: None,
            container: None,
            volumes: Vec::new(),
        }
    }

    #[test]
    fn named_ports_become_indexed_and_named_variables() {
        let ports =
            vec![NamedPort { name: "http".into(), port: 31002 }, NamedPort { name: "admin-api".into(), port: 31005 }];
        let env = task_env(&launch(ports, &[31002, 31005]), "node-1", Path::new("/w/tasks/web.1"));
        assert_eq!(env["PORT0"], "31002");
        assert_eq!(env["PORT1"], "31005");
        assert_eq!(env["PORT"], "31002", "the agent's PORT wins over the app's");
        assert_eq!(env["PORT_HTTP"], "31002");
        assert_eq!(env["PORT_ADMIN_API"], "31005");
        assert_eq!(env["HOST"], "node-1");
        assert_eq!(env["GANTRY_TASK_ID"], "web.1");
        assert_eq!(env["GANTRY_APP_ID"], "web");
        assert_eq!(env["GANTRY_SANDBOX"], "/w/tasks/web.1");
        assert_eq!(env["MODE"], "x");
    }

    #[test]
    fn unnamed_ports_come_from_the_resources() {
        let env = task_env(&launch(Vec::new(), &[31000, 31001]), "h", Path::new("/s"));
        assert_eq!(env["PORT0"], "31000");
        assert_eq!(env["PORT1"], "31001");
        assert!(!env.keys().any(|k| k.starts_with("PORT_")));
    }

    #[test]
    fn no_ports_means_no_port_variables_except_the_apps() {
        let env = task_env(&launch(Vec::new(), &[]), "h", Path::new("/s"));
        assert!(!env.contains_key("PORT0"));
        assert_eq!(env["PORT"], "1");
    }
}
