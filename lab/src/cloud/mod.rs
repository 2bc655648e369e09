//! Cloud emulators whose instances are real test hosts (testing ladder rung 5): a cloud API on
//! loopback that the official SDKs talk to with an endpoint override and fake credentials, and
//! a watcher that gives every running instance a [`crate::testhosts::Host`] at its private
//! address, so a provider's whole `up` runs here as in a real account.
//!
//! Nothing here dials an emulator's made-up public addresses: instances are reached at their
//! private addresses, which lie on the lab network.

pub mod aws;
