//! What Azure's errors mean to the engine: every failure (a refused request, a failed async
//! operation, missing credentials) becomes a [`ProviderError`] whose kind says whether to retry
//! and whose message keeps Azure's code and words and says what to do.

use gantry_provision::provider::{ErrorKind, ProviderError};

/// How to log in, named in every credential error.
pub const LOGIN_HINT: &str = "log in with `az login`, or export AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and \
AZURE_TENANT_ID (a service principal); on an Azure VM a managed identity is used";

/// An Azure error as Resource Manager reports it: a code and a message (from a refused request
/// or a failed async operation), or a failure to talk to it at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, when Azure answered.
    pub status: Option<u16>,
    /// Azure's error code (`OperationNotAllowed`, `ResourceNotFound`, …), or `Unknown`.
    pub code: String,
    /// Azure's message, or what went wrong on the way.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message` (an async operation's error).
    pub fn new(status: Option<u16>, code: &str, message: &str) -> Self {
        Self { status, code: code.to_string(), message: message.to_string() }
    }

    /// What an SDK call's error carries: Azure's code and message when it answered.
    pub fn from_sdk(error: &azure_core::Error) -> Self {
        if let Some(http) = error.as_http_error() {
            return Self {
                status: Some(u16::from(http.status())),
                code: http.error_code().unwrap_or("Unknown").to_string(),
                message: http.error_message().unwrap_or("no message").to_string(),
            };
        }
        let code = match error.kind() {
            azure_core::error::ErrorKind::Credential => "CredentialUnavailable",
            azure_core::error::ErrorKind::Io => "Io",
            azure_core::error::ErrorKind::HttpResponse { status, error_code } => {
                let code = error_code.clone().unwrap_or_else(|| "Unknown".to_string());
                return Self { status: Some(u16::from(*status)), code, message: chain(error) };
            }
            _ => "Unknown",
        };
        Self { status: None, code: code.to_string(), message: chain(error) }
    }

    /// Whether this is Azure saying the resource (or its group) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
            || matches!(self.code.as_str(), "ResourceNotFound" | "NotFound" | "ResourceGroupNotFound")
    }

    /// Whether the VM could not be placed in its zone: try the next one.
    pub fn is_zonal(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ZonalAllocationFailed" | "SkuNotAvailable" | "OverconstrainedZonalAllocationRequest"
        )
    }
}

/// An error and its sources, each once, joined by `: `.
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

/// What an Azure error means to the engine.
pub fn kind_of(failure: &Failure) -> ErrorKind {
    let code = failure.code.as_str();
    let lower = failure.message.to_lowercase();
    match code {
        "OperationNotAllowed" if lower.contains("quota") => ErrorKind::Quota,
        "QuotaExceeded"
        | "AllocationFailed"
        | "ZonalAllocationFailed"
        | "SkuNotAvailable"
        | "SubnetIsFull"
        | "OverconstrainedAllocationRequest"
        | "OverconstrainedZonalAllocationRequest" => ErrorKind::Quota,
        code if code.ends_with("LimitReached") || code.ends_with("LimitExceeded") => ErrorKind::Quota,
        "AuthorizationFailed"
        | "AuthenticationFailed"
        | "InvalidAuthenticationToken"
        | "ExpiredAuthenticationToken"
        | "InvalidAuthenticationTokenTenant"
        | "CredentialUnavailable"
        | "LinkedAuthorizationFailed" => ErrorKind::Auth,
        "SubscriptionNotFound" | "InvalidSubscriptionId" => ErrorKind::Auth,
        "PlatformImageNotFound" | "ImageNotFound" | "InvalidImageReference" => ErrorKind::NotFound,
        "LocationNotAvailableForResourceType"
        | "LocationNotAvailableForResourceGroup"
        | "NoRegisteredProviderFound" => ErrorKind::NotFound,
        "InvalidParameter" if lower.contains("vm size") => ErrorKind::NotFound,
        "ResourceNotFound" | "NotFound" | "ResourceGroupNotFound" => ErrorKind::NotFound,
        "AnotherOperationInProgress"
        | "ResourceGroupBeingDeleted"
        | "RetryableError"
        | "TooManyRequests"
        | "InternalServerError"
        | "InternalOperationError"
        | "Io" => ErrorKind::Transient,
        code if code.starts_with("InUse") || code.ends_with("InUse") || code.contains("CannotBeDeleted") => {
            ErrorKind::Conflict
        }
        "Conflict" | "PropertyChangeNotAllowed" | "InvalidResourceLocation" | "InvalidResourceGroupLocation" => {
            ErrorKind::Conflict
        }
        _ => match failure.status {
            Some(429) | Some(500..=599) => ErrorKind::Transient,
            _ => ErrorKind::Other,
        },
    }
}

/// What to do about an error, appended to its message.
fn hint(failure: &Failure, action: &str) -> Option<String> {
    let lower = failure.message.to_lowercase();
    Some(match failure.code.as_str() {
        "OperationNotAllowed" if lower.contains("quota") => "the subscription's quota named above is reached; \
             request an increase in the portal (Subscriptions → Usage + quotas) or use a smaller vm_size"
            .to_string(),
        "QuotaExceeded" => "request an increase in the portal (Subscriptions → Usage + quotas) or use a smaller \
             vm_size"
            .to_string(),
        "AllocationFailed"
        | "ZonalAllocationFailed"
        | "SkuNotAvailable"
        | "OverconstrainedAllocationRequest"
        | "OverconstrainedZonalAllocationRequest" => "Azure has no capacity for this vm_size here now; gantry tried \
             every zone of [azure] zones — try another vm_size, other zones or later (`az vm list-skus --location \
             <location> --size <size>` shows restrictions)"
            .to_string(),
        code if code.ends_with("LimitReached") || code.ends_with("LimitExceeded") => "a subscription limit is \
             reached; delete unused resources (`gantry sweep azure`) or request an increase (Subscriptions → Usage + \
             quotas)"
            .to_string(),
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => format!(
            "the credentials may not call {action}; `gantry iam-policy azure` prints the role gantry needs \
             (`az role definition create --role-definition @role.json`, then assign it on the subscription)"
        ),
        "AuthenticationFailed"
        | "InvalidAuthenticationToken"
        | "ExpiredAuthenticationToken"
        | "InvalidAuthenticationTokenTenant"
        | "CredentialUnavailable" => {
            format!("Azure refused or found no credentials; {LOGIN_HINT}")
        }
        "SubscriptionNotFound" | "InvalidSubscriptionId" => "check [azure] subscription_id or AZURE_SUBSCRIPTION_ID \
             (`az account list -o table` lists the subscriptions these credentials see)"
            .to_string(),
        "PlatformImageNotFound" | "ImageNotFound" | "InvalidImageReference" => "no such marketplace image here; \
             list them with `az vm image list --publisher <publisher> --offer <offer> --all -o table` and fix the \
             pool's `image`"
            .to_string(),
        "LocationNotAvailableForResourceType"
        | "LocationNotAvailableForResourceGroup"
        | "NoRegisteredProviderFound" => {
            "unknown or unavailable location; `az account list-locations -o table` lists them — fix [azure] location"
                .to_string()
        }
        "InvalidParameter" if lower.contains("vm size") => {
            "list the sizes with `az vm list-sizes --location <location> -o table` and fix the pool's vm_size"
                .to_string()
        }
        _ => return None,
    })
}

/// A failure of `action` (e.g. `Microsoft.Compute/virtualMachines/write`) as a provider error.
pub fn provider_error(operation: &'static str, host: &str, action: &str, failure: &Failure) -> ProviderError {
    let mut message = format!("{action}: {}: {}", failure.code, failure.message);
    if let Some(hint) = hint(failure, action) {
        message.push_str(&format!(" (hint: {hint})"));
    }
    ProviderError::Call {
        provider: "azure".to_string(),
        operation,
        host: host.to_string(),
        kind: kind_of(failure),
        message,
    }
}

/// An SDK call's error of `action` as a provider error.
pub fn sdk(operation: &'static str, host: &str, action: &str, error: &azure_core::Error) -> ProviderError {
    provider_error(operation, host, action, &Failure::from_sdk(error))
}

/// A provider error of the azure provider that no Azure call produced.
pub fn other(operation: &'static str, host: &str, kind: ErrorKind, message: String) -> ProviderError {
    ProviderError::Call { provider: "azure".to_string(), operation, host: host.to_string(), kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, code: &str, message: &str) -> Failure {
        Failure::new(Some(status), code, message)
    }

    #[test]
    fn a_core_quota_is_quota_and_says_where_to_raise_it() {
        let quota = failure(
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardBSFamily Cores quota.",
        );
        let error = provider_error("create", "workers-3", "Microsoft.Compute/virtualMachines/write", &quota);
        assert_eq!(error.kind(), ErrorKind::Quota);
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(text.contains("standardBSFamily Cores quota"), "Azure's words stay: {text}");
        assert!(text.contains("Usage + quotas") && text.contains("smaller vm_size"), "{text}");
        let other = failure(409, "OperationNotAllowed", "The VM must be deallocated first.");
        assert_eq!(kind_of(&other), ErrorKind::Other, "only a quota's OperationNotAllowed is a quota");
    }

    #[test]
    fn permissions_and_credentials_say_what_to_do() {
        let denied =
            failure(403, "AuthorizationFailed", "The client 'x' does not have authorization to perform action");
        let error = provider_error("prepare", "cluster", "Microsoft.Network/virtualNetworks/write", &denied);
        assert_eq!(error.kind(), ErrorKind::Auth);
        assert!(error.to_string().contains("gantry iam-policy azure"), "{error}");
        let expired = failure(401, "ExpiredAuthenticationToken", "The access token expiry");
        assert!(provider_error("list", "*", "x", &expired).to_string().contains("az login"));
    }

    #[test]
    fn zones_capacity_images_and_locations_map_to_their_kinds() {
        assert!(failure(409, "ZonalAllocationFailed", "no capacity").is_zonal());
        assert!(failure(409, "SkuNotAvailable", "not available").is_zonal());
        assert!(!failure(409, "AllocationFailed", "no capacity").is_zonal());
        assert_eq!(kind_of(&failure(409, "AllocationFailed", "")), ErrorKind::Quota);
        let image = failure(404, "PlatformImageNotFound", "The platform image 'X:y:z:latest' is not available.");
        let error = provider_error("create", "w-0", "Microsoft.Compute/virtualMachines/write", &image);
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.to_string().contains("az vm image list --publisher"), "{error}");
        let location = failure(400, "LocationNotAvailableForResourceGroup", "The provided location 'mars' is not");
        let error =
            provider_error("prepare", "cluster", "Microsoft.Resources/subscriptions/resourceGroups/write", &location);
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.to_string().contains("az account list-locations"), "{error}");
        assert_eq!(kind_of(&failure(409, "InUseSubnetCannotBeDeleted", "")), ErrorKind::Conflict);
        assert_eq!(kind_of(&failure(409, "AnotherOperationInProgress", "")), ErrorKind::Transient);
        assert_eq!(kind_of(&failure(503, "Whatever", "")), ErrorKind::Transient);
        assert_eq!(kind_of(&failure(400, "Whatever", "")), ErrorKind::Other);
        assert!(failure(404, "ResourceGroupNotFound", "").is_not_found());
    }
}
