//! What the azure provider's lab tests share: the Azure lab (skipped without root, failed under
//! GANTRY_TESTS_REQUIRE_ALL), lab cluster files, host specs and a runtime.

#![allow(dead_code)]

#[path = "../../../../tests/support/skip.rs"]
mod skip;

pub use skip::skipped;

use gantry_lab::cloud::azure::{AzureLab, AzureLabError, AzureLabOptions, LAB_CREDENTIALS};
use gantry_lab::testhosts::LabError;
use gantry_provision::cluster_file::{ClusterFile, Role};
use gantry_provision::provider::HostSpec;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// The lab's location.
pub const LOCATION: &str = "westeurope";

/// An Azure lab with test hosts, or `None` (after `SKIPPED: …`) where they cannot run.
pub fn lab(dir: &Path) -> Option<AzureLab> {
    lab_credentials();
    match AzureLab::start_with(dir, AzureLabOptions::default()) {
        Ok(lab) => Some(lab),
        Err(AzureLabError::Lab(LabError::Unsupported(skip))) => {
            skipped(&skip.0);
            None
        }
        Err(e) => panic!("cannot start the Azure lab: {e}"),
    }
}

/// The lab's fake credentials, for the provider's credential lookup (the environment).
pub fn lab_credentials() {
    // Set once, before any test of the binary starts a lab or a provider; every writer writes
    // the same value.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this first and `Once` makes the others wait until it is done;
        // no thread of this binary reads the variable while it is written.
        unsafe { std::env::set_var("GANTRY_AZURE_CREDENTIALS", LAB_CREDENTIALS) };
    });
}

/// Half `half` (0 or 1) of the lab network: two clusters' virtual networks must not hand out
/// the same addresses on the one lab network.
pub fn half(lab: &AzureLab, half: u32) -> String {
    let cidr = lab.cidr();
    let size = 1u32 << (32 - u32::from(cidr.prefix_len) - 1);
    format!("{}/{}", Ipv4Addr::from(u32::from(cidr.network) + half * size), cidr.prefix_len + 1)
}

/// A lab cluster file for `cluster` in `dir`, its VNet on `vnet_cidr` (inside the lab network),
/// with `extra` lines in `[azure]`.
pub fn cluster_file(dir: &Path, lab: &AzureLab, cluster: &str, vnet_cidr: &str, extra: &str) -> ClusterFile {
    let cidr = lab.cidr();
    let image = "{ publisher = \"Debian\", offer = \"debian-12\", sku = \"12\", version = \"latest\" }";
    let text = format!(
        "version = 1\n[cluster]\nname = \"{cluster}\"\nprovider = \"azure\"\nttl = \"1h\"\n\n\
         [ssh]\nuser = \"gantry\"\nsudo = true\nconnect_timeout = \"3s\"\n\n\
         [azure]\nsubscription_id = \"{subscription}\"\nlocation = \"{LOCATION}\"\nendpoint_url = \"{endpoint}\"\n\
         vnet_cidr = \"{vnet_cidr}\"\nconnect_via = \"private\"\nssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n\
         {extra}\n\n\
         [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\nvm_size = \"Standard_B2s\"\nimage = {image}\n\n\
         [[pool]]\nname = \"workers\"\ncount = 3\nvm_size = \"Standard_B1s\"\nimage = {image}\n",
        subscription = lab.subscription_id(),
        endpoint = lab.endpoint_url(),
    );
    std::fs::create_dir_all(dir).expect("state dir");
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, &text).expect("write the cluster file");
    ClusterFile::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The spec of host `name` of `cluster` (`master-*` are masters, the rest workers).
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

/// A multi-threaded runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}
