//! The cluster's instances: found by label across the region's zones, inserted with a request id
//! and every label in the call, started when stopped, deleted and waited for.

use crate::compute::{self, Compute};
use crate::labels::{self, Labels};
use crate::operations;
use gantry_provision::cluster_file::ConnectVia;
use gantry_provision::provider::{ErrorKind, HostDescription, HostState, ProviderError};
use google_cloud_compute_v1::model::{
    self, AccessConfig, AttachedDisk, AttachedDiskInitializeParams, Instance, Metadata, NetworkInterface, Scheduling,
    Tags, access_config, instance::Status, scheduling,
};
use std::collections::BTreeMap;

/// The instance name of `host` of `cluster`: `<cluster>-<host>`.
pub fn name(cluster: &str, host: &str) -> String {
    format!("{cluster}-{host}")
}

/// The zone of an instance (from its URL).
pub fn zone(instance: &Instance) -> Option<&str> {
    instance.zone.as_deref().map(compute::last_segment)
}

/// The instances of `cluster` (every one, or those of `host`) in the zones of the client's
/// region, in any state.
pub async fn find(c: &Compute, cluster: &str, host: Option<&str>) -> Result<Vec<Instance>, ProviderError> {
    let mut filter = labels::filter(labels::CLUSTER, cluster);
    if let Some(host) = host {
        filter = format!("({filter}) AND ({})", labels::filter(labels::HOST, host));
    }
    find_by(c, &filter, host.unwrap_or("*")).await
}

/// The instances matching the list `filter` in the zones of the client's region, sorted by
/// name; `host` names the call in errors.
pub async fn find_by(c: &Compute, filter: &str, host: &str) -> Result<Vec<Instance>, ProviderError> {
    let mut instances = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut request = c.instances.aggregated_list().set_project(&c.project).set_filter(filter);
        if let Some(token) = page_token.take() {
            request = request.set_page_token(token);
        }
        let page = request.send().await.map_err(|e| compute::error("list", host, "compute.instances.list", &e))?;
        for scoped in page.items.into_values() {
            instances.extend(scoped.instances);
        }
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    let prefix = format!("{}-", c.region);
    instances.retain(|i| zone(i).is_some_and(|z| z.starts_with(&prefix)));
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(instances)
}

/// The engine's view of an instance's state.
pub fn state(instance: &Instance) -> HostState {
    match instance.status {
        Some(Status::Running) => HostState::Running,
        Some(Status::Provisioning | Status::Staging | Status::Repairing | Status::Pending) | None => HostState::Pending,
        _ => HostState::Stopped,
    }
}

/// Whether the instance is stopped (TERMINATED or SUSPENDED) and can be started.
pub fn is_stopped(instance: &Instance) -> bool {
    matches!(instance.status, Some(Status::Terminated | Status::Stopped | Status::Suspended))
}

/// The instance's private address.
pub fn private_address(instance: &Instance) -> Option<&str> {
    instance.network_interfaces.first()?.network_ip.as_deref()
}

/// An instance as the engine sees it; `None` when it has no `gantry-host` label.
pub fn describe(instance: &Instance, region: &str, via: ConnectVia) -> Option<HostDescription> {
    let name = instance.labels.get(labels::HOST)?.clone();
    let address = match via {
        ConnectVia::Private => private_address(instance),
        ConnectVia::Public => {
            instance.network_interfaces.first()?.access_configs.iter().find_map(|a| a.nat_ip.as_deref())
        }
    };
    let mut attributes =
        BTreeMap::from([("provider".to_string(), "gce".to_string()), ("region".to_string(), region.to_string())]);
    if let Some(zone) = zone(instance) {
        attributes.insert("zone".to_string(), zone.to_string());
    }
    if let Some(kind) = instance.machine_type.as_deref() {
        attributes.insert("machine_type".to_string(), compute::last_segment(kind).to_string());
    }
    Some(HostDescription { name, state: state(instance), address: address.map(str::to_string), attributes })
}

/// What one instance insert carries.
#[derive(Debug, Clone)]
pub struct Blueprint<'a> {
    /// The instance name.
    pub name: &'a str,
    /// The machine type, e.g. `e2-medium`.
    pub machine_type: &'a str,
    /// The image path or URL.
    pub image: &'a str,
    /// The boot disk in GB.
    pub disk_gb: u32,
    /// Spot or standard.
    pub spot: bool,
    /// The subnetwork's partial URL.
    pub subnetwork: &'a str,
    /// Whether it gets an external address.
    pub public: bool,
    /// The network tag the firewall rules target.
    pub tag: &'a str,
    /// `ssh-keys` metadata: `user:public key`.
    pub ssh_keys: String,
    /// Its labels (and its boot disk's).
    pub labels: &'a Labels,
}

impl Blueprint<'_> {
    /// The instance resource of an insert in `zone`.
    pub fn instance(&self, zone: &str) -> Instance {
        let disk = AttachedDisk::new().set_boot(true).set_auto_delete(true).set_initialize_params(
            AttachedDiskInitializeParams::new()
                .set_source_image(self.image)
                .set_disk_size_gb(i64::from(self.disk_gb))
                .set_labels(self.labels.to_map()),
        );
        let mut interface = NetworkInterface::new().set_subnetwork(self.subnetwork);
        if self.public {
            interface = interface.set_access_configs([AccessConfig::new()
                .set_name("External NAT")
                .set_type(access_config::Type::OneToOneNat)]);
        }
        let mut instance = Instance::new()
            .set_name(self.name)
            .set_machine_type(format!("zones/{zone}/machineTypes/{}", self.machine_type))
            .set_disks([disk])
            .set_network_interfaces([interface])
            .set_tags(Tags::new().set_items([self.tag]))
            .set_metadata(
                Metadata::new()
                    .set_items([model::metadata::Items::new().set_key("ssh-keys").set_value(&self.ssh_keys)]),
            )
            .set_labels(self.labels.to_map());
        if self.spot {
            instance = instance.set_scheduling(
                Scheduling::new()
                    .set_provisioning_model(scheduling::ProvisioningModel::Spot)
                    .set_instance_termination_action(scheduling::InstanceTerminationAction::Stop)
                    .set_automatic_restart(false)
                    .set_on_host_maintenance(scheduling::OnHostMaintenance::Terminate),
            );
        }
        instance
    }
}

/// Checks that `image` exists (a family's newest image or a named one), so that a typo fails
/// before anything is launched, with where to look.
pub async fn check_image(c: &Compute, host: &str, image: &str) -> Result<(), ProviderError> {
    let path = image.find("projects/").map_or(image, |i| &image[i..]);
    let parts: Vec<&str> = path.split('/').collect();
    let result = match parts[..] {
        ["projects", project, "global", "images", "family", family] => c
            .images
            .get_from_family()
            .set_project(project)
            .set_family(family)
            .send()
            .await
            .map_err(|e| (e, "compute.images.getFromFamily")),
        ["projects", project, "global", "images", name] => {
            c.images.get().set_project(project).set_image(name).send().await.map_err(|e| (e, "compute.images.get"))
        }
        _ => {
            return Err(ProviderError::Call {
                provider: "gce".to_string(),
                operation: "create",
                host: host.to_string(),
                kind: ErrorKind::NotFound,
                message: format!(
                    "`{image}` is not an image path (hint: projects/PROJECT/global/images/NAME or \
                     projects/PROJECT/global/images/family/FAMILY, e.g. projects/debian-cloud/global/images/family/debian-12)"
                ),
            });
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err((e, _)) if compute::is_not_found(&e) => Err(ProviderError::Call {
            provider: "gce".to_string(),
            operation: "create",
            host: host.to_string(),
            kind: ErrorKind::NotFound,
            message: format!(
                "image {image} does not exist (hint: `gcloud compute images list` shows the public images and their \
                 families; check the pool's `image`)"
            ),
        }),
        Err((e, permission)) => Err(compute::error("create", host, permission, &e)),
    }
}

/// Starts a stopped instance and waits for the operation.
pub async fn start(c: &Compute, host: &str, instance: &Instance) -> Result<(), ProviderError> {
    let (Some(zone), Some(name)) = (zone(instance), instance.name.as_deref()) else { return Ok(()) };
    let op = c
        .instances
        .start()
        .set_project(&c.project)
        .set_zone(zone)
        .set_instance(name)
        .send()
        .await
        .map_err(|e| compute::error("create", host, "compute.instances.start", &e))?;
    operations::wait(c, op, "create", host, "compute.instances.start").await
}

/// Deletes `instances` and waits until each is gone (already gone is fine).
pub async fn delete(c: &Compute, host: &str, instances: &[Instance]) -> Result<(), ProviderError> {
    for instance in instances {
        let (Some(zone), Some(name)) = (zone(instance), instance.name.as_deref()) else { continue };
        let op = match c.instances.delete().set_project(&c.project).set_zone(zone).set_instance(name).send().await {
            Ok(op) => op,
            Err(e) if compute::is_not_found(&e) => continue,
            Err(e) => return Err(compute::error("destroy", host, "compute.instances.delete", &e)),
        };
        match operations::finish(c, op, "destroy", host).await? {
            None => {}
            Some(f) if f.kind() == ErrorKind::NotFound => {}
            Some(f) => return Err(f.error("destroy", host, "compute.instances.delete")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(body: serde_json::Value) -> Instance {
        serde_json::from_value(body).expect("an instance")
    }

    #[test]
    fn an_instance_is_described_with_the_attributes_of_every_cloud() {
        let i = instance(serde_json::json!({
            "name": "c-workers-0", "status": "RUNNING",
            "zone": "https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-c",
            "machineType": "https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-c/machineTypes/e2-small",
            "labels": {"gantry-cluster": "c", "gantry-host": "workers-0"},
            "networkInterfaces": [{"networkIP": "10.77.3.5", "accessConfigs": [{"natIP": "203.0.113.9"}]}]
        }));
        let private = describe(&i, "europe-west1", ConnectVia::Private).expect("labelled");
        assert_eq!(private.name, "workers-0");
        assert_eq!(private.state, HostState::Running);
        assert_eq!(private.address.as_deref(), Some("10.77.3.5"));
        assert_eq!(private.attributes["zone"], "europe-west1-c");
        assert_eq!(private.attributes["machine_type"], "e2-small");
        assert_eq!(private.attributes["provider"], "gce");
        let public = describe(&i, "europe-west1", ConnectVia::Public).expect("labelled");
        assert_eq!(public.address.as_deref(), Some("203.0.113.9"));
        let stopped = instance(serde_json::json!({"status": "TERMINATED", "labels": {"gantry-host": "h-1"}}));
        assert!(is_stopped(&stopped));
        assert_eq!(state(&stopped), HostState::Stopped);
    }

    #[test]
    fn an_insert_carries_labels_tag_key_and_spot() {
        let labels = Labels::new("c", &BTreeMap::new(), None).with(labels::HOST, "workers-0");
        let blueprint = Blueprint {
            name: "c-workers-0",
            machine_type: "e2-small",
            image: "projects/debian-cloud/global/images/family/debian-12",
            disk_gb: 20,
            spot: true,
            subnetwork: "projects/p/regions/europe-west1/subnetworks/gantry-c",
            public: false,
            tag: "gantry-c",
            ssh_keys: "root:ssh-ed25519 AAAA gantry-c".to_string(),
            labels: &labels,
        };
        let body = serde_json::to_value(blueprint.instance("europe-west1-b")).expect("json");
        assert_eq!(body["machineType"], "zones/europe-west1-b/machineTypes/e2-small");
        assert_eq!(body["tags"]["items"][0], "gantry-c");
        assert_eq!(body["metadata"]["items"][0]["key"], "ssh-keys");
        assert_eq!(body["labels"]["gantry-host"], "workers-0");
        assert_eq!(body["disks"][0]["initializeParams"]["labels"]["gantry-cluster"], "c");
        assert_eq!(body["disks"][0]["autoDelete"], true);
        assert_eq!(body["scheduling"]["provisioningModel"], "SPOT");
        assert!(body["networkInterfaces"][0].get("accessConfigs").is_none(), "private: no external address");
        assert_eq!(name("c", "workers-0"), "c-workers-0");
    }
}
