//! What every lab project sees and nobody creates: the regions and zones, the machine types
//! and the public images (regions.get, zones.get/list, machineTypes.get, images.get and
//! getFromFamily). Any project id is accepted.

use super::error::ApiError;
use super::filter;
use super::spec::Call;
use super::state::{link, page};
use serde_json::{Value, json};

/// The lab's regions and their zones.
pub const REGIONS: &[(&str, &[&str])] = &[
    ("europe-west1", &["europe-west1-b", "europe-west1-c", "europe-west1-d"]),
    ("us-central1", &["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]),
];

/// The machine types: name, vCPUs, memory in MB, shared core.
pub const MACHINE_TYPES: &[(&str, u32, u32, bool)] = &[
    ("e2-small", 2, 2048, true),
    ("e2-medium", 2, 4096, true),
    ("e2-standard-2", 2, 8192, false),
    ("e2-standard-4", 4, 16384, false),
    ("n2-standard-2", 2, 8192, false),
];

/// The public images: project, name, family, description.
pub const IMAGES: &[(&str, &str, &str, &str)] = &[
    (
        "debian-cloud",
        "debian-12-bookworm-v20261106",
        "debian-12",
        "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20261106",
    ),
    (
        "ubuntu-os-cloud",
        "ubuntu-2404-noble-amd64-v20261106",
        "ubuntu-2404-lts-amd64",
        "Canonical, Ubuntu, 24.04 LTS Noble Numbat, amd64 noble image built on 2026-11-06",
    ),
];

const CREATED: &str = "2026-11-06T00:00:00.000-08:00";

/// The region of `zone`, when the lab has that zone.
pub fn region_of(zone: &str) -> Option<&'static str> {
    REGIONS.iter().find(|(_, zones)| zones.contains(&zone)).map(|(region, _)| *region)
}

fn stable_id(text: &str) -> String {
    let hash =
        text.bytes().fold(1_469_598_103_934_665_603u64, |h, b| (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211));
    (hash >> 1).to_string()
}

fn zone_json(project: &str, zone: &str) -> Option<Value> {
    let region = region_of(zone)?;
    Some(json!({
        "kind": "compute#zone",
        "id": stable_id(zone),
        "creationTimestamp": CREATED,
        "name": zone,
        "description": zone,
        "status": "UP",
        "region": link(&format!("projects/{project}/regions/{region}")),
        "selfLink": link(&format!("projects/{project}/zones/{zone}")),
        "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
        "supportsPzs": false,
    }))
}

/// regions.get.
pub fn region(call: &Call) -> Result<Value, ApiError> {
    let (project, name) = (call.param("project"), call.param("region"));
    let path = format!("projects/{project}/regions/{name}");
    let (_, zones) = REGIONS.iter().find(|(r, _)| *r == name).ok_or_else(|| ApiError::not_found(&path))?;
    let zones: Vec<String> = zones.iter().map(|z| link(&format!("projects/{project}/zones/{z}"))).collect();
    Ok(json!({
        "kind": "compute#region",
        "id": stable_id(name),
        "creationTimestamp": CREATED,
        "name": name,
        "description": name,
        "status": "UP",
        "zones": zones,
        "quotas": [
            {"metric": "CPUS", "limit": 24.0, "usage": 0.0},
            {"metric": "INSTANCES", "limit": 24.0, "usage": 0.0},
            {"metric": "IN_USE_ADDRESSES", "limit": 8.0, "usage": 0.0},
        ],
        "selfLink": link(&path),
        "supportsPzs": false,
    }))
}

/// zones.get.
pub fn zone(call: &Call) -> Result<Value, ApiError> {
    let (project, name) = (call.param("project"), call.param("zone"));
    zone_json(project, name).ok_or_else(|| ApiError::not_found(&format!("projects/{project}/zones/{name}")))
}

/// zones.list.
pub fn zones(call: &Call) -> Result<Value, ApiError> {
    let project = call.param("project");
    let all = REGIONS.iter().flat_map(|(_, zones)| zones.iter()).filter_map(|z| zone_json(project, z)).collect();
    let items = filter::apply(call.param("filter"), all)?;
    let id = format!("projects/{project}/zones");
    page("compute#zoneList", &id, items, call.param("maxResults"), call.param("pageToken"))
}

/// The machine type `name` of `zone`, when the lab has both.
pub fn machine_type_json(project: &str, zone: &str, name: &str) -> Option<Value> {
    region_of(zone)?;
    let (_, cpus, memory, shared) = MACHINE_TYPES.iter().find(|(n, ..)| *n == name)?;
    Some(json!({
        "kind": "compute#machineType",
        "id": stable_id(name),
        "creationTimestamp": CREATED,
        "name": name,
        "description": format!("{cpus} vCPUs, {} GB RAM", memory / 1024),
        "guestCpus": cpus,
        "memoryMb": memory,
        "imageSpaceGb": 0,
        "maximumPersistentDisks": 128,
        "maximumPersistentDisksSizeGb": "263168",
        "zone": zone,
        "selfLink": link(&format!("projects/{project}/zones/{zone}/machineTypes/{name}")),
        "isSharedCpu": shared,
        "architecture": "X86_64",
    }))
}

/// machineTypes.get.
pub fn machine_type(call: &Call) -> Result<Value, ApiError> {
    let (project, zone, name) = (call.param("project"), call.param("zone"), call.param("machineType"));
    machine_type_json(project, zone, name)
        .ok_or_else(|| ApiError::not_found(&format!("projects/{project}/zones/{zone}/machineTypes/{name}")))
}

fn image_json(project: &str, name: &str, family: &str, description: &str) -> Value {
    json!({
        "kind": "compute#image",
        "id": stable_id(name),
        "creationTimestamp": CREATED,
        "name": name,
        "description": description,
        "sourceType": "RAW",
        "status": "READY",
        "archiveSizeBytes": "1234567890",
        "diskSizeGb": "10",
        "family": family,
        "selfLink": link(&format!("projects/{project}/global/images/{name}")),
        "labelFingerprint": "42WmSpB8rSM=",
        "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
        "storageLocations": ["eu", "us"],
        "architecture": "X86_64",
    })
}

/// The image at `path` (`projects/p/global/images/name` or `.../images/family/f`).
pub fn image_at(path: &str) -> Option<Value> {
    let rest = path.strip_prefix("projects/")?;
    let (project, rest) = rest.split_once("/global/images/")?;
    let found = match rest.strip_prefix("family/") {
        Some(family) => IMAGES.iter().find(|(p, _, f, _)| *p == project && *f == family),
        None => IMAGES.iter().find(|(p, n, ..)| *p == project && *n == rest),
    }?;
    Some(image_json(found.0, found.1, found.2, found.3))
}

/// images.get and images.getFromFamily.
pub fn image(call: &Call) -> Result<Value, ApiError> {
    let project = call.param("project");
    let path = match call.params.get("family") {
        Some(family) => format!("projects/{project}/global/images/family/{family}"),
        None => format!("projects/{project}/global/images/{}", call.param("image")),
    };
    image_at(&path).ok_or_else(|| ApiError::not_found(&path))
}
