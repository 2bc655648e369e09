//! Injected failures: quota refusals at a VM's PUT and allocation failures in its async
//! operation, so a provider's error handling and retries run against what Azure answers. Set
//! through [`super::AzureLab::inject`] or `POST /_lab/faults` with the [`Fault`] as JSON.

use super::error::ArmError;
use serde::{Deserialize, Serialize};

/// An allocation failure Azure reports in a VM's async operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllocationError {
    /// The zone asked for has no capacity for the size (`ZonalAllocationFailed`).
    ZonalAllocationFailed,
    /// The region has no capacity for the size (`AllocationFailed`).
    AllocationFailed,
    /// The size is not offered to the subscription there (`SkuNotAvailable`).
    SkuNotAvailable,
}

/// A failure to inject; each applies to the next `count` VM creations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The VM PUT is refused (409 `OperationNotAllowed`): it would exceed the approved cores
    /// quota.
    CoreQuota {
        /// How many PUTs fail.
        count: u32,
    },
    /// The VM PUT is accepted, and its async operation then fails with `error`.
    Allocation {
        /// The error code.
        error: AllocationError,
        /// How many creations fail.
        count: u32,
    },
}

/// The faults still to fire.
#[derive(Debug, Clone, Default)]
pub(super) struct Faults {
    core_quota: u32,
    allocation: Vec<AllocationError>,
}

impl Faults {
    pub(super) fn add(&mut self, fault: Fault) {
        match fault {
            Fault::CoreQuota { count } => self.core_quota += count,
            Fault::Allocation { error, count } => self.allocation.extend(std::iter::repeat_n(error, count as usize)),
        }
    }

    /// The quota error for a VM PUT of `size` in `location`, when one is injected.
    pub(super) fn take_quota(&mut self, size: &str, location: &str) -> Option<ArmError> {
        if self.core_quota == 0 {
            return None;
        }
        self.core_quota -= 1;
        let family = size.trim_start_matches("Standard_");
        Some(ArmError::conflict(
            "OperationNotAllowed",
            format!(
                "Operation could not be completed as it results in exceeding approved standard{family}Family Cores \
                 quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: \
                 4, Current Usage: 4, Additional Required: 2, (Minimum) New Limit Required: 6. Submit a request for \
                 Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView \
                 by specifying parameters listed in the 'Details' section for deployment to succeed."
            ),
        ))
    }

    /// The allocation error for a VM creation, when one is injected.
    pub(super) fn take_allocation(&mut self, size: &str, location: &str, zone: Option<&str>) -> Option<ArmError> {
        if self.allocation.is_empty() {
            return None;
        }
        let error = self.allocation.remove(0);
        let (code, message) = match error {
            AllocationError::ZonalAllocationFailed => (
                "ZonalAllocationFailed",
                format!(
                    "Allocation failed. We do not have sufficient capacity for the requested VM size {size} in zone \
                     '{}' of region {location}. Read more about improving likelihood of allocation success at \
                     http://aka.ms/allocation-guidance",
                    zone.unwrap_or("1")
                ),
            ),
            AllocationError::AllocationFailed => (
                "AllocationFailed",
                format!(
                    "Allocation failed. We do not have sufficient capacity for the requested VM size {size} in \
                     region {location}. Read more about improving likelihood of allocation success at \
                     http://aka.ms/allocation-guidance"
                ),
            ),
            AllocationError::SkuNotAvailable => (
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: \
                     {size}' is currently not available in location '{location}'. Please try another size or deploy \
                     to a different location or different zone. See https://aka.ms/azureskunotavailable for details."
                ),
            ),
        };
        Some(ArmError::conflict(code, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_count_times_and_parse_from_json() {
        let fault: Fault = serde_json::from_str(r#"{"kind":"allocation","error":"ZonalAllocationFailed","count":1}"#)
            .expect("valid fault JSON");
        let mut faults = Faults::default();
        faults.add(fault);
        faults.add(Fault::CoreQuota { count: 2 });
        assert_eq!(
            faults.take_allocation("Standard_B1s", "westeurope", Some("2")).map(|e| e.code),
            Some("ZonalAllocationFailed".into())
        );
        assert!(faults.take_allocation("Standard_B1s", "westeurope", None).is_none());
        assert!(faults.take_quota("Standard_B1s", "westeurope").is_some());
        assert!(faults.take_quota("Standard_B1s", "westeurope").is_some());
        assert!(faults.take_quota("Standard_B1s", "westeurope").is_none());
    }
}
