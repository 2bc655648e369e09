//! The minimal IAM policy gantry needs on AWS: exactly the EC2 actions the provider calls
//! (a test checks the list against the source, both ways).

/// Every EC2 action the provider and `gantry sweep aws` call.
pub const ACTIONS: &[&str] = &[
    "ec2:AssociateRouteTable",
    "ec2:AttachInternetGateway",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateInternetGateway",
    "ec2:CreateRoute",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateSubnet",
    "ec2:CreateTags",
    "ec2:CreateVpc",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteKeyPair",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteVpc",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeKeyPairs",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:DetachInternetGateway",
    "ec2:DisassociateRouteTable",
    "ec2:ImportKeyPair",
    "ec2:RunInstances",
    "ec2:StartInstances",
    "ec2:TerminateInstances",
];

/// The policy document, as JSON. `ec2:CreateTags` is limited to tagging in a create call.
pub fn policy() -> serde_json::Value {
    let plain: Vec<&str> = ACTIONS.iter().copied().filter(|a| *a != "ec2:CreateTags").collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "GantryEc2", "Effect": "Allow", "Action": plain, "Resource": "*" },
            {
                "Sid": "GantryTagOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
                "Condition": { "StringEquals": { "ec2:CreateAction": [
                    "CreateVpc", "CreateSubnet", "CreateInternetGateway", "CreateRouteTable",
                    "CreateSecurityGroup", "ImportKeyPair", "RunInstances"
                ] } }
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::ACTIONS;

    /// Every `"ec2:…"` action named in the provider's source is in the policy, and every action of
    /// the policy is named somewhere (but `CreateTags`, which tag specifications need).
    #[test]
    fn the_policy_lists_exactly_the_actions_the_source_calls() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "iam.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for part in text.split("\"ec2:").skip(1) {
                let action: String = part.chars().take_while(char::is_ascii_alphanumeric).collect();
                used.insert(format!("ec2:{action}"));
            }
        }
        let listed: std::collections::BTreeSet<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
        let missing: Vec<_> = used.difference(&listed).collect();
        assert!(missing.is_empty(), "called but not in the policy: {missing:?}");
        let unused: Vec<_> = listed.difference(&used).filter(|a| *a != "ec2:CreateTags").collect();
        assert!(unused.is_empty(), "in the policy but never called: {unused:?}");
    }
}
