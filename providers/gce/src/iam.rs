//! The custom IAM role gantry needs on Compute Engine, for `gcloud iam roles create gantry
//! --project PROJECT --file role.json`: exactly the permissions of the calls the provider makes
//! (a test checks the list against the source, both ways), and those Compute checks on what an
//! instance insert carries.

/// The permissions of the calls the provider and `gantry sweep gce` make.
pub const CALLED: &[&str] = &[
    "compute.firewalls.create",
    "compute.firewalls.delete",
    "compute.firewalls.get",
    "compute.firewalls.list",
    "compute.globalOperations.get",
    "compute.images.get",
    "compute.images.getFromFamily",
    "compute.instances.create",
    "compute.instances.delete",
    "compute.instances.get",
    "compute.instances.list",
    "compute.instances.start",
    "compute.networks.create",
    "compute.networks.delete",
    "compute.networks.get",
    "compute.networks.list",
    "compute.regionOperations.get",
    "compute.regions.get",
    "compute.subnetworks.create",
    "compute.subnetworks.delete",
    "compute.subnetworks.get",
    "compute.subnetworks.list",
    "compute.zoneOperations.get",
    "compute.zones.list",
];

/// What Compute checks beside the call's own permission: an instance insert with a boot disk
/// from an image, labels, tags, metadata and a subnetwork (with an external address under
/// `connect_via = "public"`); a firewall rule insert changes its network's policy.
pub const IMPLIED: &[&str] = &[
    "compute.disks.create",
    "compute.disks.setLabels",
    "compute.images.useReadOnly",
    "compute.instances.setLabels",
    "compute.instances.setMetadata",
    "compute.instances.setTags",
    "compute.networks.updatePolicy",
    "compute.subnetworks.use",
    "compute.subnetworks.useExternalIp",
];

/// The role definition, as JSON (`gcloud iam roles create --file` takes it as YAML or JSON).
pub fn policy() -> serde_json::Value {
    let mut permissions: Vec<&str> = CALLED.iter().chain(IMPLIED).copied().collect();
    permissions.sort_unstable();
    serde_json::json!({
        "title": "gantry",
        "description": "What gantry needs to make a cluster's network, firewall rules and instances on Compute Engine, and to delete them.",
        "stage": "GA",
        "includedPermissions": permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::{CALLED, IMPLIED, policy};
    use std::collections::BTreeSet;

    /// Every `"compute.…"` permission named in the provider's source is in the role, and every
    /// called permission of the role is named somewhere.
    #[test]
    fn the_role_lists_exactly_the_permissions_the_source_uses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "iam.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for part in text.split("\"compute.").skip(1) {
                let permission: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                // Quota metric names (`compute.googleapis.com/cpus`) in tests are no permissions.
                if !permission.starts_with("googleapis") {
                    used.insert(format!("compute.{permission}"));
                }
            }
        }
        let listed: BTreeSet<String> = CALLED.iter().map(|p| p.to_string()).collect();
        let missing: Vec<_> = used.difference(&listed).collect();
        assert!(missing.is_empty(), "used but not in the role: {missing:?}");
        let unused: Vec<_> = listed.difference(&used).collect();
        assert!(unused.is_empty(), "in the role but never used: {unused:?}");
        let role = policy();
        let all = role["includedPermissions"].as_array().expect("a list");
        assert_eq!(all.len(), CALLED.len() + IMPLIED.len());
        assert_eq!(role["stage"], "GA");
    }
}
