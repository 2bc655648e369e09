//! `gantry-image`: the agent's image store. It pulls Docker v2 and OCI images (tags, digests,
//! multi-platform indexes) from registries without a daemon, verifies every blob against its
//! digest, keeps each layer once, unpacked, in a content-addressed cache that tasks share as
//! overlayfs lower directories, and prunes the cache by least recent use.
//!
//! It owns the cache directory and the registry protocol (through `oci-client`); it does not
//! mount, run or isolate anything (the agent's container executor does), and it knows nothing
//! of how hosts were provisioned.
//!
//! TLS to registries uses the workspace's rustls provider (ring), installed by
//! [`ImageStore::open`] through `gantry_trust::tls::install_default_provider`, and trusts the
//! system's roots plus the CA files of [`StoreOptions::registry_ca_certs`].

mod blobs;
mod ca;
mod error;
mod manifest;
mod options;
mod prune;
mod pull;
mod record;
mod reference;
mod registry;
mod single_flight;
mod store;
mod unpack;

pub use error::ImageError;
pub use manifest::ImageConfig;
pub use options::{DEFAULT_MAX_BYTES, Platform, PullPolicy, RegistryAuth, StoreOptions};
pub use reference::{DEFAULT_REGISTRY, ImageReference};
pub use store::{Image, ImageInfo, ImageStore, PruneReport};
