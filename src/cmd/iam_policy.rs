//! `gantry iam-policy aws`: prints the minimal IAM policy (JSON) gantry needs to provision on AWS,
//! ready for `aws iam create-policy --policy-document file://…`.

use super::sweep::Cloud;

/// Arguments of `gantry iam-policy`.
#[derive(Debug, Clone, clap::Args)]
pub struct IamPolicyArgs {
    /// The cloud whose policy to print.
    pub cloud: Cloud,
}

/// Runs `gantry iam-policy`.
pub fn run(args: IamPolicyArgs) -> anyhow::Result<()> {
    let Cloud::Aws = args.cloud;
    #[cfg(feature = "aws")]
    {
        crate::output::json(&gantry_provider_aws::iam::policy())
    }
    #[cfg(not(feature = "aws"))]
    {
        anyhow::bail!("this build has no aws provider (hint: build gantry with `--features aws`)")
    }
}
