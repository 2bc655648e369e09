//! The gantry master: holds cluster state in a crash-safe store, offers agents' free resources
//! to frameworks (DRF), runs the built-in `services` framework, and serves the HTTP API v1 and
//! the agent protocol (see `gantry_api::protocol`).
//!
//! It never depends on how hosts were provisioned.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Address to serve the API and the agent protocol on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory of the state store; created if missing.
    pub data_dir: PathBuf,
    /// How often agents heartbeat (and the master pings the command streams).
    pub heartbeat_interval: Duration,
    /// An agent silent this long is marked unreachable and its tasks are replaced.
    pub agent_unreachable_timeout: Duration,
}

impl MasterConfig {
    /// Defaults for everything but the address and the data dir.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            heartbeat_interval: Duration::from_secs(1),
            agent_unreachable_timeout: Duration::from_secs(3),
        }
    }
}

pub mod allocator;
pub mod links;
pub mod master;
pub mod services;
pub mod state;
pub mod store;
