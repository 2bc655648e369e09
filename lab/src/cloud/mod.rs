//! Cloud emulators whose instances are real test hosts (testing ladder rung 5): a cloud API on
//! loopback that the official SDKs talk to with an endpoint override and fake credentials, and
//! a watcher that gives every running instance a [`crate::testhosts::Host`] at its private
//! address, so a provider's whole `up` runs here as in a real account.
//!
//! Nothing here dials an emulator's made-up public addresses: instances are reached at their
//! private addresses, which lie on the lab network.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gce")]
pub mod gce;

/// What `gantry-lab cloud <name>` needs of a running cloud lab: the environment to export and
/// the lab's name prefix (for the log line of its teardown). Dropping the lab removes it.
pub trait CloudLab {
    /// The KEY=VALUE pairs a shell exports to point gantry (and the SDKs) at the emulator.
    fn env(&self) -> Vec<(String, String)>;
    /// The prefix of the lab's interfaces, namespaces and cgroups.
    fn prefix(&self) -> &str;
}
