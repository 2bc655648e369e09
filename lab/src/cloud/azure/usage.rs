//! Who uses what: the references between NICs, subnets, NSGs, public IPs and VMs that decide
//! whether a delete is refused as "in use", and the back-references responses show.

use super::state::{Kind, World};
use serde_json::Value;
use std::net::Ipv4Addr;

/// One IP configuration of a NIC, as the lab reads it.
#[derive(Debug, Clone)]
pub(super) struct IpConfig {
    /// `{nic id}/ipConfigurations/{name}`.
    pub id: String,
    pub nic: String,
    pub subnet: Option<String>,
    pub public_ip: Option<String>,
    pub address: Option<Ipv4Addr>,
}

/// Every IP configuration of every NIC.
pub(super) fn ip_configs(world: &World) -> Vec<IpConfig> {
    let mut out = Vec::new();
    for nic in world.resources.values().filter(|r| r.kind == Kind::NetworkInterface) {
        for config in nic.properties().get("ipConfigurations").and_then(Value::as_array).into_iter().flatten() {
            let name = config.get("name").and_then(Value::as_str).unwrap_or_default();
            let text = |pointer: &str| config.pointer(pointer).and_then(Value::as_str).map(str::to_lowercase);
            out.push(IpConfig {
                id: format!("{}/ipConfigurations/{name}", nic.id),
                nic: nic.id.to_lowercase(),
                subnet: text("/properties/subnet/id"),
                public_ip: text("/properties/publicIPAddress/id"),
                address: config
                    .pointer("/properties/privateIPAddress")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok()),
            });
        }
    }
    out
}

/// The IP configurations in subnet `subnet` (a key).
pub(super) fn subnet_users(world: &World, subnet: &str) -> Vec<String> {
    ip_configs(world).into_iter().filter(|c| c.subnet.as_deref() == Some(subnet)).map(|c| c.id).collect()
}

/// The NICs and subnets that name NSG `nsg` (a key).
pub(super) fn nsg_users(world: &World, nsg: &str) -> (Vec<String>, Vec<String>) {
    let uses = |r: &super::state::Resource| {
        r.properties().pointer("/networkSecurityGroup/id").and_then(Value::as_str).map(str::to_lowercase).as_deref()
            == Some(nsg)
    };
    let of =
        |kind: Kind| world.resources.values().filter(|r| r.kind == kind && uses(r)).map(|r| r.id.clone()).collect();
    (of(Kind::NetworkInterface), of(Kind::Subnet))
}

/// The IP configuration that holds public IP `pip` (a key).
pub(super) fn public_ip_user(world: &World, pip: &str) -> Option<String> {
    ip_configs(world).into_iter().find(|c| c.public_ip.as_deref() == Some(pip)).map(|c| c.id)
}

/// The VM that uses NIC `nic` (a key).
pub(super) fn nic_user(world: &World, nic: &str) -> Option<String> {
    world
        .resources
        .values()
        .filter(|r| r.kind == Kind::VirtualMachine)
        .find(|vm| {
            vm.properties().pointer("/networkProfile/networkInterfaces").and_then(Value::as_array).is_some_and(|nics| {
                nics.iter().any(|n| n.get("id").and_then(Value::as_str).map(str::to_lowercase).as_deref() == Some(nic))
            })
        })
        .map(|vm| vm.id.clone())
}

/// An IPv4 network parsed from `a.b.c.d/n`.
pub(super) fn parse_cidr(text: &str) -> Option<(u32, u8)> {
    let (address, len) = text.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = mask(len);
    (u32::from(address) & !mask == 0).then_some((u32::from(address), len))
}

pub(super) fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// Whether network `inner` lies inside network `outer`.
pub(super) fn within(inner: (u32, u8), outer: (u32, u8)) -> bool {
    inner.1 >= outer.1 && inner.0 & mask(outer.1) == outer.0
}

/// Whether two networks overlap.
pub(super) fn overlap(a: (u32, u8), b: (u32, u8)) -> bool {
    within(a, b) || within(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_nest_and_overlap() {
        let vnet = parse_cidr("10.77.0.0/16").expect("valid");
        let a = parse_cidr("10.77.5.0/24").expect("valid");
        let b = parse_cidr("10.77.5.128/25").expect("valid");
        assert!(within(a, vnet));
        assert!(!within(vnet, a));
        assert!(overlap(a, b));
        assert!(!overlap(a, parse_cidr("10.77.6.0/24").expect("valid")));
        assert_eq!(parse_cidr("10.77.5.1/24"), None);
    }
}
