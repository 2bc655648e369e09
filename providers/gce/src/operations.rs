//! Compute Engine's long-running operations: every insert, delete and start answers one, which
//! gantry polls (zoneOperations, regionOperations or globalOperations, by the operation's scope)
//! with backoff until it is DONE, and then reads its error, if any.

use crate::compute::{self, Compute, hint};
use gantry_provision::cloud::Backoff;
use gantry_provision::provider::{ErrorKind, ProviderError};
use google_cloud_compute_v1::model::Operation;
use google_cloud_compute_v1::model::operation::Status;
use std::time::Duration;

/// How long an operation may take.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// What a failed operation reported: its first error.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `errors[0].code`, e.g. `QUOTA_EXCEEDED`, `ZONE_RESOURCE_POOL_EXHAUSTED`.
    pub code: String,
    /// `errors[0].message`.
    pub message: String,
    /// `httpErrorStatusCode`.
    pub http_status: Option<u16>,
    /// The quota exceeded (`errorDetails[].quotaInfo`), as `limitName (metricName)`.
    pub quota: Option<String>,
}

impl Failure {
    /// The failure of `op`, if it failed.
    pub fn of(op: &Operation) -> Option<Failure> {
        let error = op.error.as_ref()?.errors.first()?;
        let quota = error.error_details.iter().find_map(|d| {
            let info = d.quota_info.as_ref()?;
            let limit = info.limit_name.clone().unwrap_or_default();
            Some(match (&info.metric_name, info.limit) {
                (Some(metric), Some(n)) => format!("{limit} ({metric}, limit {n})"),
                (Some(metric), None) => format!("{limit} ({metric})"),
                _ => limit,
            })
        });
        Some(Failure {
            code: error.code.clone().unwrap_or_else(|| "UNKNOWN".to_string()),
            message: error.message.clone().unwrap_or_default(),
            http_status: op.http_error_status_code.and_then(|s| u16::try_from(s).ok()),
            quota,
        })
    }

    /// Whether the zone has no capacity (another zone may).
    pub fn is_capacity(&self) -> bool {
        self.code.starts_with("ZONE_RESOURCE_POOL_EXHAUSTED")
    }

    /// What it means to the engine.
    pub fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "QUOTA_EXCEEDED" => ErrorKind::Quota,
            code if code.starts_with("ZONE_RESOURCE_POOL_EXHAUSTED") => ErrorKind::Quota,
            "RESOURCE_NOT_FOUND" | "NOT_FOUND" => ErrorKind::NotFound,
            "RESOURCE_ALREADY_EXISTS" | "ALREADY_EXISTS" => ErrorKind::Conflict,
            "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE" | "RESOURCE_NOT_READY" | "INTERNAL_ERROR" | "RATE_LIMIT_EXCEEDED" => {
                ErrorKind::Transient
            }
            "PERMISSIONS_ERROR" | "FORBIDDEN" => ErrorKind::Auth,
            _ => compute::kind_of(self.http_status, None),
        }
    }

    /// As a provider error of a call needing `permission`.
    pub fn error(&self, operation: &'static str, host: &str, permission: &str) -> ProviderError {
        let kind = self.kind();
        let mut message = format!("{permission}: {}: {}", self.code, self.message);
        if kind == ErrorKind::Quota && !self.is_capacity() {
            let quota = self.quota.clone().unwrap_or_else(|| "named above".to_string());
            message.push_str(&format!(
                " (hint: the quota {quota} is exhausted; request more in the console (IAM & Admin → Quotas) or use \
                 a smaller machine_type)"
            ));
        } else if self.is_capacity() {
            message.push_str(
                " (hint: Compute Engine has no capacity for this machine type in these zones now; gantry tried each \
                 zone — try another machine_type or zones, or later)",
            );
        } else if let Some(hint) = hint(kind, permission) {
            message.push_str(&format!(" (hint: {hint})"));
        }
        ProviderError::Call { provider: "gce".to_string(), operation, host: host.to_string(), kind, message }
    }
}

/// Polls `op` until it is DONE; its failure, if it failed. Errors of the polls themselves (and
/// an operation that outlives [`PATIENCE`]) are provider errors.
pub async fn finish(
    c: &Compute,
    mut op: Operation,
    operation: &'static str,
    host: &str,
) -> Result<Option<Failure>, ProviderError> {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        if op.status == Some(Status::Done) {
            return Ok(Failure::of(&op));
        }
        if started.elapsed() > PATIENCE {
            return Err(ProviderError::Call {
                provider: "gce".to_string(),
                operation,
                host: host.to_string(),
                kind: ErrorKind::Transient,
                message: format!("operation {} is not done after {PATIENCE:?}", op.name.clone().unwrap_or_default()),
            });
        }
        backoff.wait().await;
        let name = op.name.clone().unwrap_or_default();
        op = if let Some(zone) = op.zone.as_deref() {
            let zone = compute::last_segment(zone).to_string();
            c.zone_operations
                .get()
                .set_project(&c.project)
                .set_zone(zone)
                .set_operation(name)
                .send()
                .await
                .map_err(|e| compute::error(operation, host, "compute.zoneOperations.get", &e))?
        } else if let Some(region) = op.region.as_deref() {
            let region = compute::last_segment(region).to_string();
            c.region_operations
                .get()
                .set_project(&c.project)
                .set_region(region)
                .set_operation(name)
                .send()
                .await
                .map_err(|e| compute::error(operation, host, "compute.regionOperations.get", &e))?
        } else {
            c.global_operations
                .get()
                .set_project(&c.project)
                .set_operation(name)
                .send()
                .await
                .map_err(|e| compute::error(operation, host, "compute.globalOperations.get", &e))?
        };
    }
}

/// Polls `op` until it is DONE; its failure as a provider error of a call needing `permission`.
pub async fn wait(
    c: &Compute,
    op: Operation,
    operation: &'static str,
    host: &str,
    permission: &str,
) -> Result<(), ProviderError> {
    match finish(c, op, operation, host).await? {
        None => Ok(()),
        Some(failure) => Err(failure.error(operation, host, permission)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(body: serde_json::Value) -> Operation {
        serde_json::from_value(body).expect("an operation")
    }

    #[test]
    fn a_quota_failure_names_the_quota_and_how_to_raise_it() {
        let op = failed(serde_json::json!({
            "name": "operation-1", "status": "DONE", "httpErrorStatusCode": 403,
            "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded.  Limit: 8.0",
                "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/cpus",
                    "limitName": "CPUS-per-project-region", "limit": 8.0}}]}]}
        }));
        let failure = Failure::of(&op).expect("failed");
        assert_eq!(failure.kind(), ErrorKind::Quota);
        assert!(!failure.is_capacity());
        let text = failure.error("create", "workers-0", "compute.instances.create").to_string();
        assert!(text.contains("CPUS-per-project-region") && text.contains("IAM & Admin → Quotas"), "{text}");
        assert!(text.contains("smaller machine_type"), "{text}");
    }

    #[test]
    fn an_exhausted_zone_is_capacity_and_a_done_operation_without_error_is_no_failure() {
        let op = failed(serde_json::json!({"status": "DONE", "httpErrorStatusCode": 503,
            "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no room"}]}}));
        let failure = Failure::of(&op).expect("failed");
        assert!(failure.is_capacity());
        assert_eq!(failure.kind(), ErrorKind::Quota);
        assert_eq!(Failure::of(&failed(serde_json::json!({"status": "DONE"}))), None);
        let forbidden = failed(serde_json::json!({"status": "DONE", "httpErrorStatusCode": 403,
            "error": {"errors": [{"code": "PERMISSIONS_ERROR", "message": "no"}]}}));
        let text = Failure::of(&forbidden).expect("failed").error("create", "h", "compute.instances.create");
        assert_eq!(text.kind(), ErrorKind::Auth);
        assert!(text.to_string().contains("gantry iam-policy gce"), "{text}");
    }
}
