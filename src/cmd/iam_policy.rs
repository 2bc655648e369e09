//! `gantry iam-policy aws|gce|azure`: prints what gantry needs to be allowed to provision on a
//! cloud, as JSON ready for the cloud's own tool: an IAM policy (`aws iam create-policy
//! --policy-document file://…`), a custom role (`gcloud iam roles create gantry --project P
//! --file …`) or a custom role definition (`az role definition create --role-definition @…`).

use super::sweep::Cloud;

/// Arguments of `gantry iam-policy`.
#[derive(Debug, Clone, clap::Args)]
pub struct IamPolicyArgs {
    /// The cloud whose policy to print.
    pub cloud: Cloud,
}

/// Runs `gantry iam-policy`.
#[cfg_attr(
    not(any(feature = "aws", feature = "gce", feature = "azure")),
    allow(unused_variables, unreachable_code, reason = "a build without a cloud feature prints no policy")
)]
pub fn run(args: IamPolicyArgs) -> anyhow::Result<()> {
    let policy: serde_json::Value = match args.cloud {
        #[cfg(feature = "aws")]
        Cloud::Aws => gantry_provider_aws::iam::policy(),
        #[cfg(feature = "gce")]
        Cloud::Gce => gantry_provider_gce::iam::policy(),
        #[cfg(feature = "azure")]
        Cloud::Azure => gantry_provider_azure::iam::policy(),
        #[allow(unreachable_patterns, reason = "reachable only in builds without a cloud feature")]
        other => {
            let name = format!("{other:?}").to_lowercase();
            anyhow::bail!("this build has no {name} provider (hint: build gantry with `--features {name}`)")
        }
    };
    crate::output::json(&policy)
}
