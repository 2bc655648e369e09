//! The Compute Engine lab: an emulator of the GCE API whose instances are test hosts.
