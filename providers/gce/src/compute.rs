//! The Compute Engine clients of one project and region (Application Default Credentials, or
//! none for the lab; an optional endpoint) and what their errors mean to the engine: every
//! failure becomes a [`ProviderError`] whose kind says whether to retry and whose message says
//! what to do.

use gantry_provision::provider::{ErrorKind, ProviderError};
use google_cloud_compute_v1::client;
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::StatusDetails;
use std::fmt;

/// Where the endpoint comes from when the cluster file names none.
pub const ENDPOINT_ENV: &str = "GANTRY_GCE_ENDPOINT_URL";
/// `anonymous` here: no credentials at all (the lab); else Application Default Credentials.
pub const CREDENTIALS_ENV: &str = "GANTRY_GCE_CREDENTIALS";
/// Where the project comes from when the cluster file names none.
pub const PROJECT_ENV: &str = "GOOGLE_CLOUD_PROJECT";

/// How to get credentials, named in credential errors.
pub const LOGIN_HINT: &str = "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS \
to a service account key file";

/// The clients gantry uses, of one project and region.
#[derive(Clone)]
pub struct Compute {
    /// The project id.
    pub project: String,
    /// The region.
    pub region: String,
    /// instances.*
    pub instances: client::Instances,
    /// networks.*
    pub networks: client::Networks,
    /// subnetworks.*
    pub subnetworks: client::Subnetworks,
    /// firewalls.*
    pub firewalls: client::Firewalls,
    /// images.*
    pub images: client::Images,
    /// regions.*
    pub regions: client::Regions,
    /// zones.*
    pub zones: client::Zones,
    /// zoneOperations.*
    pub zone_operations: client::ZoneOperations,
    /// regionOperations.*
    pub region_operations: client::RegionOperations,
    /// globalOperations.*
    pub global_operations: client::GlobalOperations,
}

impl fmt::Debug for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compute").field("project", &self.project).field("region", &self.region).finish()
    }
}

fn connect_error(kind: ErrorKind, message: String) -> ProviderError {
    ProviderError::Call { provider: "gce".to_string(), operation: "connect", host: "*".to_string(), kind, message }
}

macro_rules! build {
    ($client:ty, $endpoint:expr, $credentials:expr) => {{
        let mut builder = <$client>::builder().with_credentials($credentials.clone()).with_retry_policy(retry_policy());
        if let Some(endpoint) = $endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder.build().await.map_err(|e| {
            connect_error(ErrorKind::Other, format!("cannot make the Compute Engine client: {}", chain(&e)))
        })?
    }};
}

/// Retries of one call (transient failures, including a credential source that does not
/// answer): fewer and shorter than the SDK's default (10 attempts in 60 s), because the engine
/// retries transient provider errors itself and a missing login should be reported quickly.
fn retry_policy() -> impl google_cloud_gax::retry_policy::RetryPolicy {
    use google_cloud_gax::retry_policy::RetryPolicyExt;
    google_cloud_gax::retry_policy::Aip194Strict
        .with_attempt_limit(4)
        .with_time_limit(std::time::Duration::from_secs(20))
}

/// Whether `error`, or an error it wraps (a retry loop's last one), is a credentials failure.
pub fn is_credentials(error: &Error) -> bool {
    if error.is_authentication() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<google_cloud_gax::error::CredentialsError>().is_some()
            || e.downcast_ref::<Error>().is_some_and(Error::is_authentication)
        {
            return true;
        }
        source = e.source();
    }
    false
}

impl Compute {
    /// The clients of `project` (else `GOOGLE_CLOUD_PROJECT`) and `region`, at `endpoint_url`
    /// (else `GANTRY_GCE_ENDPOINT_URL`, else Google's own), with Application Default Credentials
    /// (or none when `GANTRY_GCE_CREDENTIALS=anonymous`, for the lab).
    pub async fn connect(
        project: Option<&str>,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> Result<Compute, ProviderError> {
        gantry_trust::tls::install_default_provider();
        let project = match project {
            Some(p) => p.to_string(),
            None => std::env::var(PROJECT_ENV).ok().filter(|p| !p.is_empty()).ok_or_else(|| {
                connect_error(
                    ErrorKind::Other,
                    format!("no project (hint: set [gce] project = \"my-project\", or export {PROJECT_ENV})"),
                )
            })?,
        };
        let endpoint = endpoint_url.map(str::to_string).or_else(|| std::env::var(ENDPOINT_ENV).ok());
        let anonymous = std::env::var(CREDENTIALS_ENV).is_ok_and(|v| v == "anonymous");
        let credentials = if anonymous {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default().build().map_err(|e| {
                connect_error(
                    ErrorKind::Auth,
                    format!("no usable Application Default Credentials: {} (hint: {LOGIN_HINT})", chain(&e)),
                )
            })?
        };
        let endpoint = endpoint.as_deref();
        Ok(Compute {
            project,
            region: region.to_string(),
            instances: build!(client::Instances, endpoint, credentials),
            networks: build!(client::Networks, endpoint, credentials),
            subnetworks: build!(client::Subnetworks, endpoint, credentials),
            firewalls: build!(client::Firewalls, endpoint, credentials),
            images: build!(client::Images, endpoint, credentials),
            regions: build!(client::Regions, endpoint, credentials),
            zones: build!(client::Zones, endpoint, credentials),
            zone_operations: build!(client::ZoneOperations, endpoint, credentials),
            region_operations: build!(client::RegionOperations, endpoint, credentials),
            global_operations: build!(client::GlobalOperations, endpoint, credentials),
        })
    }

    /// The partial URL of `name` in the project's global `collection` (`networks`, `firewalls`).
    pub fn global(&self, collection: &str, name: &str) -> String {
        format!("projects/{}/global/{collection}/{name}", self.project)
    }

    /// The partial URL of the region's subnetwork `name`.
    pub fn subnetwork(&self, name: &str) -> String {
        format!("projects/{}/regions/{}/subnetworks/{name}", self.project, self.region)
    }
}

/// An error and its sources, each once, joined by `: `.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// The last segment of a resource URL (`…/zones/europe-west1-b` → `europe-west1-b`).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The `errors[].reason` Compute answered (`notFound`, `alreadyExists`, `quotaExceeded`, …).
pub fn reason(error: &Error) -> Option<&str> {
    error.status()?.details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(info) if !info.reason.is_empty() => Some(info.reason.as_str()),
        _ => None,
    })
}

/// Whether `error` says the resource does not exist.
pub fn is_not_found(error: &Error) -> bool {
    error.http_status_code() == Some(404) || reason(error) == Some("notFound")
}

/// What an HTTP status and a Compute reason mean to the engine.
pub fn kind_of(status: Option<u16>, reason: Option<&str>) -> ErrorKind {
    match reason {
        Some("quotaExceeded" | "QUOTA_EXCEEDED") => return ErrorKind::Quota,
        Some("rateLimitExceeded" | "userRateLimitExceeded" | "resourceNotReady" | "resourceInUseByAnotherResource") => {
            return ErrorKind::Transient;
        }
        Some("notFound") => return ErrorKind::NotFound,
        Some("alreadyExists" | "conflict") => return ErrorKind::Conflict,
        Some("forbidden" | "insufficientPermissions" | "accessNotConfigured" | "authError") => return ErrorKind::Auth,
        _ => {}
    }
    match status {
        Some(401 | 403) => ErrorKind::Auth,
        Some(404) => ErrorKind::NotFound,
        Some(409) => ErrorKind::Conflict,
        Some(429) => ErrorKind::Transient,
        Some(s) if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// What to do about a failure of a call needing `permission`, appended to its message.
pub fn hint(kind: ErrorKind, permission: &str) -> Option<String> {
    match kind {
        ErrorKind::Auth => Some(format!(
            "the credentials may not use {permission}; `gantry iam-policy gce` prints the role gantry needs \
             (`gcloud iam roles create gantry --project PROJECT --file role.json`)"
        )),
        ErrorKind::Quota => Some(
            "a quota of the project is exhausted; request more in the console (IAM & Admin → Quotas) or use a \
             smaller machine_type"
                .to_string(),
        ),
        _ => None,
    }
}

/// A failed call needing IAM `permission` (e.g. `compute.instances.create`) as a provider error.
pub fn error(operation: &'static str, host: &str, permission: &str, err: &Error) -> ProviderError {
    let (kind, message) = if is_credentials(err) {
        (ErrorKind::Auth, format!("{permission}: no usable credentials: {} (hint: {LOGIN_HINT})", chain(err)))
    } else if err.is_timeout() || err.is_io() || err.is_connect() || err.is_transport() || err.is_exhausted() {
        (ErrorKind::Transient, format!("{permission}: {}", chain(err)))
    } else if let Some(status) = err.status() {
        let reason = reason(err);
        let kind = kind_of(err.http_status_code(), reason);
        let mut message = format!(
            "{permission}: {}{}: {}",
            err.http_status_code().map(|s| format!("{s} ")).unwrap_or_default(),
            reason.unwrap_or("error"),
            status.message
        );
        if let Some(hint) = hint(kind, permission) {
            message.push_str(&format!(" (hint: {hint})"));
        }
        (kind, message)
    } else {
        let kind = kind_of(err.http_status_code(), None);
        (kind, format!("{permission}: {}", chain(err)))
    };
    ProviderError::Call { provider: "gce".to_string(), operation, host: host.to_string(), kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    /// A Compute error as the SDK hands it over: HTTP status, message, `errors[0].reason` (the
    /// SDK turns the `errors` array into ErrorInfo details).
    fn http_error(status: u16, reason: &str, message: &str) -> Error {
        let parsed: Status = serde_json::from_value(serde_json::json!({"message": message, "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "global"}]}))
        .expect("a status");
        Error::service_with_http_metadata(parsed, Some(status), None)
    }

    #[test]
    fn reasons_and_statuses_map_to_what_the_engine_does() {
        assert_eq!(kind_of(Some(403), Some("quotaExceeded")), ErrorKind::Quota);
        assert_eq!(kind_of(Some(403), Some("rateLimitExceeded")), ErrorKind::Transient);
        assert_eq!(kind_of(Some(400), Some("resourceInUseByAnotherResource")), ErrorKind::Transient);
        assert_eq!(kind_of(Some(403), Some("forbidden")), ErrorKind::Auth);
        assert_eq!(kind_of(Some(404), None), ErrorKind::NotFound);
        assert_eq!(kind_of(Some(409), Some("alreadyExists")), ErrorKind::Conflict);
        assert_eq!(kind_of(Some(503), None), ErrorKind::Transient);
        assert_eq!(kind_of(Some(400), Some("invalid")), ErrorKind::Other);
    }

    #[test]
    fn a_refused_permission_names_it_and_the_role() {
        let e = error(
            "create",
            "workers-0",
            "compute.instances.create",
            &http_error(403, "forbidden", "Required 'compute.instances.create' permission"),
        );
        assert_eq!(e.kind(), ErrorKind::Auth);
        let text = e.to_string();
        assert!(text.contains("gantry iam-policy gce") && text.contains("compute.instances.create"), "{text}");
        let missing = error("describe", "x", "compute.instances.get", &http_error(404, "notFound", "gone"));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(is_not_found(&http_error(404, "notFound", "gone")));
    }

    #[test]
    fn urls_end_in_their_name() {
        assert_eq!(last_segment("https://x/compute/v1/projects/p/zones/europe-west1-b"), "europe-west1-b");
        assert_eq!(last_segment("e2-small"), "e2-small");
    }
}
