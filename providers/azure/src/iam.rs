//! The custom role gantry needs on Azure: exactly the Resource Manager actions the provider and
//! `gantry sweep azure` perform (a test checks the list against the source, both ways), as a
//! role definition for `az role definition create --role-definition @role.json`.

/// Every action the provider and `gantry sweep azure` need.
pub const ACTIONS: &[&str] = &[
    "Microsoft.Compute/disks/delete",
    "Microsoft.Compute/disks/read",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/locations/operations/read",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/start/action",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Network/locations/operationResults/read",
    "Microsoft.Network/locations/operations/read",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkSecurityGroups/delete",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/networkSecurityGroups/write",
    "Microsoft.Network/publicIPAddresses/delete",
    "Microsoft.Network/publicIPAddresses/join/action",
    "Microsoft.Network/publicIPAddresses/read",
    "Microsoft.Network/publicIPAddresses/write",
    "Microsoft.Network/virtualNetworks/delete",
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/virtualNetworks/write",
    "Microsoft.Resources/subscriptions/operationresults/read",
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Resources/subscriptions/resourceGroups/write",
];

/// The role definition, as JSON. `AssignableScopes` names a placeholder subscription to replace
/// (`az account show --query id -o tsv`) before creating it.
pub fn policy() -> serde_json::Value {
    serde_json::json!({
        "Name": "gantry",
        "IsCustom": true,
        "Description": "What gantry needs to make and delete a cluster's resource group, virtual network, \
                        network security group, NICs, public IPs and virtual machines, and to sweep expired ones.",
        "Actions": ACTIONS,
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/00000000-0000-0000-0000-000000000000"]
    })
}

#[cfg(test)]
mod tests {
    use super::ACTIONS;

    /// Every `"Microsoft.…"` action named in the provider's source is in the role, and every
    /// action of the role is named somewhere.
    #[test]
    fn the_role_lists_exactly_the_actions_the_source_performs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "iam.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for part in text.split("\"Microsoft.").skip(1) {
                let action: String = part.chars().take_while(|c| *c != '"').collect();
                used.insert(format!("Microsoft.{action}"));
            }
        }
        let listed: std::collections::BTreeSet<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
        let missing: Vec<_> = used.difference(&listed).collect();
        assert!(missing.is_empty(), "performed but not in the role: {missing:?}");
        let unused: Vec<_> = listed.difference(&used).collect();
        assert!(unused.is_empty(), "in the role but never performed: {unused:?}");
        let role = super::policy();
        assert_eq!(role["Actions"].as_array().map(Vec::len), Some(ACTIONS.len()));
        assert!(role["AssignableScopes"][0].as_str().is_some_and(|s| s.starts_with("/subscriptions/")));
    }
}
