//! The built-in `services` framework: keeps every app's instances running.
//!
//! [`reconcile`] decides (pure), [`backoff`] tracks failures (pure), and [`framework`] adapts
//! both to the allocator's [`crate::allocator::Framework`] contract. It never talks to agents or
//! the store itself: the allocator performs what it returns.
//!
//! Versions and deployments: [`history`] (an app's stored versions and deployments),
//! [`versions`] (new versions and rollbacks as changes), [`deployment`] (the pure deployment
//! state machine) and [`driver`] (which stores its transitions).

pub mod backoff;
pub mod deployment;
pub mod driver;
pub mod framework;
pub mod history;
pub mod reconcile;
pub mod versions;

pub use framework::ServicesFramework;
