//! The EC2 client (the standard credential chain, the region, an optional endpoint) and what its
//! errors mean to the engine: every failure becomes a [`ProviderError`] whose kind says whether
//! to retry and whose message says what to do.

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Region;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use gantry_provision::provider::{ErrorKind, ProviderError};
use std::fmt;

/// The credential chain the SDK tries, in order; named in credential errors.
pub const CREDENTIAL_CHAIN: &str = "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared profile \
(AWS_PROFILE, ~/.aws/credentials and ~/.aws/config, SSO included), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), \
the ECS container endpoint and the EC2 instance metadata service (IMDS)";

/// An EC2 client of one region.
#[derive(Clone)]
pub struct Ec2 {
    /// The SDK client.
    pub client: aws_sdk_ec2::Client,
    /// Its region.
    pub region: String,
}

impl fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2").field("region", &self.region).finish()
    }
}

impl Ec2 {
    /// A client of `region` at `endpoint` (else `AWS_ENDPOINT_URL`, else AWS's own), with
    /// credentials from the standard chain, loaded now so that missing or broken credentials
    /// fail here with the chain named, not at the first call.
    pub async fn connect(region: &str, endpoint: Option<&str>) -> Result<Self, ProviderError> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string())).http_client(http);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let Some(credentials) = config.credentials_provider() else {
            return Err(auth("no credential provider is configured".to_string()));
        };
        if let Err(e) = aws_credential_types::provider::ProvideCredentials::provide_credentials(&credentials).await {
            return Err(auth(format!(
                "no AWS credentials: {}\ntried {CREDENTIAL_CHAIN} (hint: export AWS_PROFILE or AWS_ACCESS_KEY_ID \
                 and AWS_SECRET_ACCESS_KEY, or run `aws sso login`)",
                chain(&e)
            )));
        }
        Ok(Self { client: aws_sdk_ec2::Client::new(&config), region: region.to_string() })
    }
}

/// An error and its sources, each once, joined by `: ` (the SDK's own display adds a Debug dump).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

fn auth(message: String) -> ProviderError {
    ProviderError::Call {
        provider: "aws".to_string(),
        operation: "connect",
        host: "*".to_string(),
        kind: ErrorKind::Auth,
        message,
    }
}

/// What an EC2 error code means to the engine.
pub fn kind_of(code: &str) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "Unavailable"
        | "DependencyViolation"
        | "IncorrectState"
        | "InvalidInstanceID.NotFound"
        | "InvalidVpcID.NotFound"
        | "InvalidSubnetID.NotFound"
        | "InvalidGroup.NotFound"
        | "InvalidInternetGatewayID.NotFound"
        | "InvalidRouteTableID.NotFound" => ErrorKind::Transient,
        "InsufficientInstanceCapacity"
        | "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "SpotMaxPriceTooLow"
        | "InsufficientFreeAddressesInSubnet" => ErrorKind::Quota,
        code if code.ends_with("LimitExceeded") => ErrorKind::Quota,
        "UnauthorizedOperation"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "OptInRequired"
        | "Blocked" => ErrorKind::Auth,
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" | "InvalidKeyPair.NotFound" => {
            ErrorKind::NotFound
        }
        "InvalidKeyPair.Duplicate" | "InvalidGroup.Duplicate" | "IdempotentParameterMismatch" => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    }
}

/// What to do about an error code, appended to its message.
fn hint(code: &str, action: &str) -> Option<String> {
    Some(match code {
        "UnauthorizedOperation" => {
            format!("the credentials may not call {action}; `gantry iam-policy aws` prints the policy gantry needs")
        }
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" => {
            format!("AWS refused the credentials; check the ones found in {CREDENTIAL_CHAIN}")
        }
        "ExpiredToken" => "the session token expired; log in again (e.g. `aws sso login`)".to_string(),
        "InstanceLimitExceeded" | "VcpuLimitExceeded" => {
            "the account's instance limit in this region is reached; request a quota increase (Service Quotas, \
             EC2 'Running On-Demand instances') or use fewer or smaller instances"
                .to_string()
        }
        "InsufficientInstanceCapacity" => {
            "AWS has no capacity for this instance type in this zone now; gantry tried the other zones — try \
             another instance type or later"
                .to_string()
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" => {
            "no such image in this region; check the pool's `image` (AMI ids differ per region)".to_string()
        }
        code if code.ends_with("LimitExceeded") => {
            "an account limit is reached; delete unused resources (`gantry sweep aws`) or request a quota increase"
                .to_string()
        }
        _ => return None,
    })
}

/// A failed SDK call of `action` (e.g. `ec2:RunInstances`) as a provider error.
pub fn error<E, R>(operation: &'static str, host: &str, action: &str, err: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown");
            let text = err.message().unwrap_or("no message");
            let mut message = format!("{action}: {code}: {text}");
            if let Some(hint) = hint(code, action) {
                message.push_str(&format!(" (hint: {hint})"));
            }
            (kind_of(code), message)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Transient, format!("{action}: {}", aws_smithy_types::error::display::DisplayErrorContext(err)))
        }
        _ => (ErrorKind::Other, format!("{action}: {}", aws_smithy_types::error::display::DisplayErrorContext(err))),
    };
    ProviderError::Call { provider: "aws".to_string(), operation, host: host.to_string(), kind, message }
}

/// An error code of a failed call, if AWS answered one.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(_) => err.code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_the_engine_does() {
        assert_eq!(kind_of("RequestLimitExceeded"), ErrorKind::Transient);
        assert_eq!(kind_of("DependencyViolation"), ErrorKind::Transient);
        assert_eq!(kind_of("InvalidInstanceID.NotFound"), ErrorKind::Transient, "eventual consistency");
        assert_eq!(kind_of("InstanceLimitExceeded"), ErrorKind::Quota);
        assert_eq!(kind_of("VpcLimitExceeded"), ErrorKind::Quota);
        assert_eq!(kind_of("UnauthorizedOperation"), ErrorKind::Auth);
        assert_eq!(kind_of("InvalidAMIID.NotFound"), ErrorKind::NotFound);
        assert_eq!(kind_of("SomethingNew"), ErrorKind::Other);
    }

    /// An EC2 error as the SDK hands it over (status and error metadata parsed from the XML).
    fn service_error(
        code: &str,
        message: &str,
    ) -> SdkError<aws_sdk_ec2::operation::run_instances::RunInstancesError, aws_smithy_runtime_api::http::Response>
    {
        let meta = aws_sdk_ec2::error::ErrorMetadata::builder().code(code).message(message).build();
        let error = aws_sdk_ec2::operation::run_instances::RunInstancesError::generic(meta);
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("status");
        let raw = aws_smithy_runtime_api::http::Response::new(status, aws_smithy_types::body::SdkBody::empty());
        SdkError::service_error(error, raw)
    }

    #[test]
    fn an_instance_limit_says_to_ask_for_a_quota_and_is_not_retried() {
        let error = error(
            "create",
            "workers-3",
            "ec2:RunInstances",
            &service_error("InstanceLimitExceeded", "Your quota allows for 0 more running instance(s)."),
        );
        assert_eq!(error.kind(), ErrorKind::Quota);
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(
            text.starts_with("aws: create workers-3: quota exceeded: ec2:RunInstances: InstanceLimitExceeded"),
            "{text}"
        );
        assert!(text.contains("request a quota increase"), "{text}");
    }

    #[test]
    fn refused_credentials_and_missing_permissions_name_what_to_do() {
        let refused = error(
            "prepare",
            "cluster",
            "ec2:CreateVpc",
            &service_error("AuthFailure", "AWS was not able to validate the provided access credentials"),
        );
        assert_eq!(refused.kind(), ErrorKind::Auth);
        assert!(refused.to_string().contains("AWS_ACCESS_KEY_ID"), "the chain is named: {refused}");
        let denied = error(
            "create",
            "workers-0",
            "ec2:RunInstances",
            &service_error("UnauthorizedOperation", "You are not authorized to perform this operation."),
        );
        assert!(denied.to_string().contains("may not call ec2:RunInstances"), "{denied}");
        assert_eq!(code(&service_error("Throttling", "slow down")), Some("Throttling"));
    }

    #[test]
    fn hints_name_the_action_and_the_fix() {
        let unauthorized = hint("UnauthorizedOperation", "ec2:RunInstances").unwrap_or_default();
        assert!(unauthorized.contains("ec2:RunInstances") && unauthorized.contains("gantry iam-policy aws"));
        assert!(hint("InstanceLimitExceeded", "ec2:RunInstances").unwrap_or_default().contains("quota"));
        assert!(hint("InvalidParameterValue", "ec2:RunInstances").is_none());
    }
}
