//! The built-in `services` framework: keeps every app's instances running.
//!
//! [`reconcile`] decides (pure), [`backoff`] tracks failures (pure), and [`framework`] adapts
//! both to the allocator's [`crate::allocator::Framework`] contract. It never talks to agents or
//! the store itself: the allocator performs what it returns.

pub mod backoff;
pub mod framework;
pub mod reconcile;

pub use framework::ServicesFramework;
