//! What the gce provider's lab tests share: the lab (with or without test hosts), a lab
//! cluster file, host specs and a runtime.

#![allow(dead_code)]

#[path = "../../../../tests/support/skip.rs"]
pub mod skip;

use gantry_lab::cloud::gce::{GceLab, GceLabError, GceLabOptions};
use gantry_lab::testhosts::LabError;
use gantry_provision::cluster_file::{ClusterFile, Role};
use gantry_provision::provider::HostSpec;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The region every lab cluster file names.
pub const REGION: &str = "europe-west1";

/// `GANTRY_GCE_CREDENTIALS=anonymous` for every client of this test binary (set once).
pub fn anonymous() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this before it makes a client, `Once` makes the others wait
        // until it is done, and every writer writes the same value.
        unsafe {
            std::env::set_var("GANTRY_GCE_CREDENTIALS", "anonymous");
        }
    });
    gantry_trust::tls::install_default_provider();
}

/// The emulator alone (any user): instances run but have no host, so nothing boots.
pub fn emulator(dir: &Path) -> GceLab {
    anonymous();
    let options =
        GceLabOptions { test_hosts: false, operation_delay: Duration::from_millis(100), ..GceLabOptions::default() };
    GceLab::start_with(dir, options).expect("the GCE emulator starts")
}

/// The lab with a test host per running instance (root); `None` (after saying why) where it
/// cannot run.
pub fn lab(dir: &Path) -> Option<GceLab> {
    anonymous();
    match GceLab::start(dir) {
        Ok(lab) => Some(lab),
        Err(GceLabError::Lab(LabError::Unsupported(skip))) => {
            skip::skipped(&skip.0);
            None
        }
        Err(e) => panic!("cannot start the GCE lab: {e}"),
    }
}

/// A lab cluster file for `cluster` in `dir`: its own network with the lab's range, or
/// (`network`) the `network`/`subnetwork` lines of an existing one; `extra` goes into
/// `[cluster]` (e.g. a TTL).
pub fn cluster_file(dir: &Path, lab: &GceLab, cluster: &str, network: Option<&str>, extra: &str) -> ClusterFile {
    let cidr = lab.cidr();
    let network = network.map_or_else(|| format!("network_cidr = \"{cidr}\""), str::to_string);
    let text = format!(
        "version = 1\n[cluster]\nname = \"{cluster}\"\nprovider = \"gce\"\n{extra}\n\n\
         [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
         [gce]\nproject = \"{project}\"\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\n{network}\n\
         connect_via = \"private\"\nssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n\n\
         [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\nmachine_type = \"e2-small\"\n\n\
         [[pool]]\nname = \"workers\"\ncount = 3\nmachine_type = \"e2-small\"\n",
        project = lab.project(),
        endpoint = lab.endpoint_url(),
    );
    parse(dir, cluster, &text)
}

/// `text` written to `dir/<cluster>.toml` and parsed.
pub fn parse(dir: &Path, cluster: &str, text: &str) -> ClusterFile {
    std::fs::create_dir_all(dir).expect("state dir");
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, text).expect("write the cluster file");
    ClusterFile::parse(&path, text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The text of a cluster file written by [`cluster_file`].
pub fn text_of(dir: &Path, cluster: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{cluster}.toml"))).expect("read the cluster file")
}

/// The spec of host `name` of `cluster` (`master-…` a master, else a worker).
pub fn spec(cluster: &str, name: &str) -> HostSpec {
    let (role, pool) = if name.starts_with("master") { (Role::Master, "masters") } else { (Role::Agent, "workers") };
    HostSpec {
        cluster: cluster.into(),
        name: name.into(),
        role,
        pool: pool.into(),
        resources: None,
        attributes: BTreeMap::new(),
    }
}

/// A multi-threaded runtime with timers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}
