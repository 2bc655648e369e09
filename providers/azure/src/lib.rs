//! The `azure` provider: virtual machines in a resource group gantry makes, reached over SSH.
