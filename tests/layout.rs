//! The dependency rules of DESIGN.md, checked against `cargo metadata`: the runtime never
//! depends on provisioning, providers never depend on each other, and the pure decision crates
//! stay free of async runtimes and network clients.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn workspace_dependencies() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let root = metadata["workspace_root"].as_str().expect("workspace_root").to_string();
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_string();
        let manifest = package["manifest_path"].as_str().expect("manifest_path");
        let relative = manifest.strip_prefix(&root).unwrap_or(manifest).trim_start_matches('/').to_string();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .collect();
        packages.insert(name, (relative, deps));
    }
    packages
}

#[test]
fn runtime_never_depends_on_provisioning_or_providers() {
    let packages = workspace_dependencies();
    let provisioning: BTreeSet<&String> = packages
        .iter()
        .filter(|(_, (path, _))| path.starts_with("provision/") || path.starts_with("providers/"))
        .map(|(name, _)| name)
        .collect();
    let runtime: Vec<_> = packages.iter().filter(|(_, (path, _))| path.starts_with("runtime/")).collect();
    assert!(runtime.len() >= 4, "expected the runtime crates, found {runtime:?}");
    for (name, (_, deps)) in runtime {
        for dep in deps {
            assert!(!provisioning.contains(dep), "runtime crate {name} depends on provisioning crate {dep}");
            assert!(!dep.starts_with("gantry-provider"), "runtime crate {name} depends on provider {dep}");
        }
    }
}

#[test]
fn providers_never_depend_on_each_other() {
    let packages = workspace_dependencies();
    let providers: BTreeSet<&String> =
        packages.iter().filter(|(_, (path, _))| path.starts_with("providers/")).map(|(name, _)| name).collect();
    for name in &providers {
        let (_, deps) = &packages[*name];
        for dep in deps {
            assert!(!providers.contains(dep), "provider {name} depends on provider {dep}");
        }
    }
}

#[test]
fn decision_crates_are_pure() {
    let packages = workspace_dependencies();
    let forbidden = ["tokio", "reqwest", "axum", "hyper", "redb", "ssh2", "gantry-master", "gantry-agent"];
    let (_, deps) = packages.get("gantry-scheduler").expect("the scheduler crate exists");
    for dep in deps {
        assert!(!forbidden.contains(&dep.as_str()), "gantry-scheduler must stay free of I/O but depends on {dep}");
    }
}
