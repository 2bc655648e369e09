//! The Azure lab: an emulator of Azure Resource Manager whose VMs are test hosts.
