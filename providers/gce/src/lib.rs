//! The `gce` provider: Compute Engine instances in a VPC network gantry makes, reached over SSH.
