//! Injected failures: what the next instance inserts meet instead of success, so gantry's
//! retry and zone fallback code runs. Injected with [`super::GceLab::inject`] or
//! `POST /_lab/faults` (a [`Fault`] as JSON; `DELETE /_lab/faults` clears them all).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One failure to inject. As JSON: `{"kind": "quotaExceeded", "zone": "europe-west1-b",
/// "count": 2}` or `{"kind": "zoneResourcePoolExhausted", "zone": "europe-west1-b"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Fault {
    /// The next `count` instance inserts (in `zone`, or anywhere) end with an operation error
    /// `QUOTA_EXCEEDED` (HTTP 403): the region's CPUS quota.
    #[serde(rename_all = "camelCase")]
    QuotaExceeded {
        /// The zone whose inserts fail; `None` for any zone.
        #[serde(default)]
        zone: Option<String>,
        /// How many inserts fail.
        count: u32,
    },
    /// Instance inserts in `zone` end with an operation error `ZONE_RESOURCE_POOL_EXHAUSTED`
    /// (HTTP 503): the next `count`, or all of them until the faults are cleared.
    #[serde(rename_all = "camelCase")]
    ZoneResourcePoolExhausted {
        /// The zone out of capacity.
        zone: String,
        /// How many inserts fail; `None` until cleared.
        #[serde(default)]
        count: Option<u32>,
    },
}

/// An operation's failure: `error.errors[0]` and the HTTP status it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationFailure {
    /// `errors[0].code`, e.g. `QUOTA_EXCEEDED`.
    pub code: String,
    /// `errors[0].message`.
    pub message: String,
    /// `httpErrorStatusCode`.
    pub http_status: u16,
    /// `errors[0].errorDetails`, if any.
    pub details: Option<Value>,
}

impl OperationFailure {
    /// A failure with no details.
    pub fn new(code: &str, message: String, http_status: u16) -> OperationFailure {
        OperationFailure { code: code.to_string(), message, http_status, details: None }
    }
}

/// The failure the faults hold for an instance insert in `zone` (of project `project`), taking
/// one from its count.
pub fn take(faults: &mut Vec<Fault>, project: &str, zone: &str) -> Option<OperationFailure> {
    let position = faults.iter().position(|f| match f {
        Fault::QuotaExceeded { zone: z, count } => *count > 0 && z.as_deref().is_none_or(|z| z == zone),
        Fault::ZoneResourcePoolExhausted { zone: z, count } => z == zone && count.is_none_or(|c| c > 0),
    })?;
    let region = zone.rsplit_once('-').map_or(zone, |(r, _)| r);
    let failure = match &mut faults[position] {
        Fault::QuotaExceeded { count, .. } => {
            *count -= 1;
            let mut failure = OperationFailure::new(
                "QUOTA_EXCEEDED",
                format!("Quota 'CPUS' exceeded.  Limit: 8.0 in region {region}."),
                403,
            );
            failure.details = Some(json!([{"quotaInfo": {
                "metricName": "compute.googleapis.com/cpus",
                "limitName": "CPUS-per-project-region",
                "dimensions": {"region": region},
                "limit": 8.0,
            }}]));
            failure
        }
        Fault::ZoneResourcePoolExhausted { count, .. } => {
            if let Some(count) = count {
                *count -= 1;
            }
            OperationFailure::new(
                "ZONE_RESOURCE_POOL_EXHAUSTED",
                format!(
                    "The zone 'projects/{project}/zones/{zone}' does not have enough resources available to \
                     fulfill the request.  Try a different zone, or try again later."
                ),
                503,
            )
        }
    };
    faults.retain(|f| match f {
        Fault::QuotaExceeded { count, .. } => *count > 0,
        Fault::ZoneResourcePoolExhausted { count, .. } => count.is_none_or(|c| c > 0),
    });
    Some(failure)
}
