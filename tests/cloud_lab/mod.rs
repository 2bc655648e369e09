//! One cloud lab for the end-to-end tests of every cloud provider: `gantry_lab`'s EC2 (moto),
//! Compute Engine or Azure Resource Manager emulator, whose instances are real test hosts, and
//! what a test needs to know of it: the environment the binary runs with, the cluster file's
//! provider section and machine keys, the cluster's live instances per host (to see a duplicate)
//! and what is left of a cluster (to see a leak). The scenarios ([`scenario`]) are the same on
//! every cloud; only this adapter differs.

#![allow(dead_code)]

pub mod scenario;

use gantry_lab::cloud::aws::{AwsLab, AwsLabError};
use gantry_lab::cloud::azure::AzureLab;
use gantry_lab::cloud::gce::GceLab;
use gantry_lab::testhosts::LabError;
use std::collections::BTreeMap;
use std::time::Duration;

/// The clouds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Aws,
    Gce,
    Azure,
}

impl Kind {
    /// The provider's name in cluster files and commands.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Aws => "aws",
            Kind::Gce => "gce",
            Kind::Azure => "azure",
        }
    }
}

enum Inner {
    Aws(AwsLab),
    Gce(GceLab),
    Azure(AzureLab),
}

/// A running cloud lab. Dropping it removes its hosts and stops the emulator.
pub struct CloudLab {
    pub kind: Kind,
    inner: Inner,
    _dir: tempfile::TempDir,
}

impl CloudLab {
    /// Starts the lab of `kind`; `None` (after saying why) where this machine cannot run it.
    pub fn start(kind: Kind) -> Option<CloudLab> {
        let dir = tempfile::Builder::new().prefix("gantry-cloud-lab-").tempdir().expect("lab dir");
        let unsupported = |e: &LabError| match e {
            LabError::Unsupported(skip) => Some(skip.0.clone()),
            _ => None,
        };
        let inner = match kind {
            Kind::Aws => match AwsLab::start(dir.path()) {
                Ok(lab) => Inner::Aws(lab),
                Err(AwsLabError::Lab(e)) if unsupported(&e).is_some() => {
                    crate::support::skipped(&unsupported(&e).unwrap_or_default());
                    return None;
                }
                Err(e @ AwsLabError::MotoMissing(_)) => {
                    crate::support::skipped(&e.to_string());
                    return None;
                }
                Err(e) => panic!("cannot start the AWS lab: {e}"),
            },
            Kind::Gce => match GceLab::start(dir.path()) {
                Ok(lab) => Inner::Gce(lab),
                Err(gantry_lab::cloud::gce::GceLabError::Lab(e)) if unsupported(&e).is_some() => {
                    crate::support::skipped(&unsupported(&e).unwrap_or_default());
                    return None;
                }
                Err(e) => panic!("cannot start the GCE lab: {e}"),
            },
            Kind::Azure => match AzureLab::start(dir.path()) {
                Ok(lab) => Inner::Azure(lab),
                Err(gantry_lab::cloud::azure::AzureLabError::Lab(e)) if unsupported(&e).is_some() => {
                    crate::support::skipped(&unsupported(&e).unwrap_or_default());
                    return None;
                }
                Err(e) => panic!("cannot start the Azure lab: {e}"),
            },
        };
        Some(CloudLab { kind, inner, _dir: dir })
    }

    /// What the binary runs with: the emulator's endpoint and fake credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = match &self.inner {
            Inner::Aws(lab) => lab.env(),
            Inner::Gce(lab) => lab.env(),
            Inner::Azure(lab) => lab.env(),
        };
        env.push(("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()));
        env
    }

    /// The lab network (`10.77.X.0/24`).
    pub fn cidr(&self) -> String {
        match &self.inner {
            Inner::Aws(lab) => lab.cidr().to_string(),
            Inner::Gce(lab) => lab.cidr().to_string(),
            Inner::Azure(lab) => lab.cidr().to_string(),
        }
    }

    /// The region (location) the cluster files use.
    pub fn region(&self) -> &'static str {
        match self.kind {
            Kind::Aws => "eu-west-1",
            Kind::Gce => "europe-west1",
            Kind::Azure => "westeurope",
        }
    }

    /// The `[ssh]` and provider sections of a lab cluster file (`extra`: more lines for the
    /// provider section, e.g. tags).
    pub fn sections(&self, extra: &str) -> String {
        let cidr = self.cidr();
        let region = self.region();
        match self.kind {
            Kind::Aws => format!(
                "[ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
                 [aws]\nregion = \"{region}\"\nvpc_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
                 ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n{extra}\n"
            ),
            Kind::Gce => format!(
                "[ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
                 [gce]\nregion = \"{region}\"\nnetwork_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
                 ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n{extra}\n"
            ),
            Kind::Azure => format!(
                "[ssh]\nuser = \"gantry\"\nsudo = true\nconnect_timeout = \"3s\"\n\n\
                 [azure]\nlocation = \"{region}\"\nzones = [\"1\", \"2\", \"3\"]\nvnet_cidr = \"{cidr}\"\n\
                 connect_via = \"private\"\nssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n{extra}\n"
            ),
        }
    }

    /// A pool's machine keys (the same small machine for masters and workers).
    pub fn machine(&self) -> &'static str {
        match self.kind {
            Kind::Aws => {
                "instance_type = \"t3.micro\"\nimage = { owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }\n"
            }
            Kind::Gce => "machine_type = \"e2-small\"\n",
            Kind::Azure => "vm_size = \"Standard_B2s\"\n",
        }
    }

    /// The machine type agents report.
    pub fn machine_type(&self) -> &'static str {
        match self.kind {
            Kind::Aws => "t3.micro",
            Kind::Gce => "e2-small",
            Kind::Azure => "Standard_B2s",
        }
    }

    /// The tag or label syntax of the user's own tags in the provider section.
    pub fn user_tags(&self, key: &str, value: &str) -> String {
        match self.kind {
            Kind::Gce => format!("labels = {{ {key} = \"{value}\" }}"),
            _ => format!("tags = {{ {key} = \"{value}\" }}"),
        }
    }

    /// What `plan` names besides the hosts: the cluster's own resources.
    pub fn plan_resources(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Aws => &["vpc", "subnet", "internet-gateway", "route-table", "security-group", "key-pair"],
            Kind::Gce => &["network", "subnetwork", "firewall"],
            Kind::Azure => &["resource-group", "virtual-network", "network-security-group"],
        }
    }

    /// The scope arguments of `gantry sweep <cloud>`.
    pub fn sweep_args(&self) -> Vec<String> {
        let mut args = vec!["sweep".to_string(), self.kind.name().to_string()];
        match self.kind {
            // The project (gce) and the subscription (azure) come from the lab's environment.
            Kind::Aws | Kind::Gce => args.extend(["--region".to_string(), self.region().to_string()]),
            Kind::Azure => {}
        }
        args
    }

    /// The cluster's live instances (VMs) by host name → how many: two for one host is a
    /// duplicate.
    pub fn hosts(&self, rt: &tokio::runtime::Runtime, cluster: &str) -> BTreeMap<String, usize> {
        let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
        match &self.inner {
            Inner::Aws(lab) => {
                let client = lab.ec2_client(self.region());
                let out = rt.block_on(async {
                    client
                        .describe_instances()
                        .filters(gantry_provider_aws::tags::filter(gantry_provider_aws::tags::CLUSTER, cluster))
                        .send()
                        .await
                        .expect("describe instances")
                });
                for instance in out.reservations().iter().flat_map(|r| r.instances()) {
                    let state = instance.state().and_then(|s| s.name()).map(|s| s.as_str().to_string());
                    if matches!(state.as_deref(), Some("terminated" | "shutting-down")) {
                        continue;
                    }
                    let host = gantry_provider_aws::tags::value(instance.tags(), gantry_provider_aws::tags::HOST);
                    *hosts.entry(host.unwrap_or("?").to_string()).or_default() += 1;
                }
            }
            // The emulators' own view of the API (not their test hosts, which follow a delete
            // a moment later): instance (VM) names are unique per zone (resource group).
            Inner::Gce(lab) => {
                let prefix = format!("{cluster}-");
                for resource in lab.resources() {
                    let Some((_, name)) = resource.split_once("/instances/") else { continue };
                    if let Some(host) = name.strip_prefix(&prefix) {
                        *hosts.entry(host.to_string()).or_default() += 1;
                    }
                }
            }
            Inner::Azure(lab) => {
                let group = format!("/resourcegroups/gantry-{cluster}/");
                for resource in lab.resources() {
                    let lower = resource.to_ascii_lowercase();
                    if !lower.contains(&group) {
                        continue;
                    }
                    let Some(at) = lower.find("/providers/microsoft.compute/virtualmachines/") else { continue };
                    let name = &resource[at + "/providers/microsoft.compute/virtualmachines/".len()..];
                    if !name.contains('/') {
                        *hosts.entry(name.to_string()).or_default() += 1;
                    }
                }
            }
        }
        hosts
    }

    /// Everything of `cluster` the cloud still has.
    pub fn leftovers(&self, rt: &tokio::runtime::Runtime, cluster: &str) -> Vec<String> {
        match &self.inner {
            Inner::Aws(lab) => {
                let ec2 = gantry_provider_aws::ec2::Ec2 {
                    client: lab.ec2_client(self.region()),
                    region: self.region().to_string(),
                };
                let found = rt
                    .block_on(gantry_provider_aws::sweep::find(&ec2, std::time::SystemTime::now(), &|_| true))
                    .expect("list the region");
                found
                    .into_iter()
                    .filter(|f| f.cluster == cluster)
                    .flat_map(|f| f.resources)
                    .map(|(kind, id)| format!("{kind}/{id}"))
                    .collect()
            }
            Inner::Gce(lab) => lab.resources().into_iter().filter(|r| r.contains(cluster)).collect(),
            Inner::Azure(lab) => lab.resources().into_iter().filter(|r| r.contains(cluster)).collect(),
        }
    }

    /// Waits until the lab has no test host left (every instance's host went with it).
    pub fn hosts_gone(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = match &self.inner {
                Inner::Aws(lab) => lab.instances().len(),
                Inner::Gce(lab) => lab.instances().len(),
                Inner::Azure(lab) => lab.instances().len(),
            };
            if left == 0 {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A multi-threaded runtime for a test's client calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}
