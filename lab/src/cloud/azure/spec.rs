//! The vendored Azure REST specs (swagger 2.0, `lab/specs/azure/`), loaded into an index of
//! operations: method, path template, parameters and body schema. Generic over the spec: nothing
//! here names a resource; [`super::validate`] walks what this finds.
//!
//! A `$ref` to a file that is not vendored (the common-types files) resolves to nothing, and the
//! validator treats it as an open object (see `lab/specs/azure/README.md`).

use serde_json::Value;
use std::collections::BTreeMap;

/// The ARM namespace an operation belongs to, which decides its api-versions and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Namespace {
    /// Microsoft.Resources (resource groups), served by ARM itself.
    Resources,
    /// Microsoft.Network.
    Network,
    /// Microsoft.Compute.
    Compute,
}

impl Namespace {
    /// The namespace's name as in a resource id.
    pub(super) fn name(self) -> &'static str {
        match self {
            Namespace::Resources => "Microsoft.Resources",
            Namespace::Network => "Microsoft.Network",
            Namespace::Compute => "Microsoft.Compute",
        }
    }

    /// The api-versions the lab accepts: the vendored spec's, then the one the SDK crate the
    /// providers use sends (see the README).
    pub(super) fn api_versions(self) -> &'static [&'static str] {
        match self {
            Namespace::Resources => &["2025-04-01", "2021-04-01"],
            Namespace::Network => &["2024-05-01", "2024-03-01"],
            Namespace::Compute => &["2024-07-01"],
        }
    }
}

/// The vendored files: name, namespace, text.
const FILES: &[(&str, Namespace, &str)] = &[
    ("resources.json", Namespace::Resources, include_str!("../../../specs/azure/resources.json")),
    ("network.json", Namespace::Network, include_str!("../../../specs/azure/network.json")),
    ("virtualNetwork.json", Namespace::Network, include_str!("../../../specs/azure/virtualNetwork.json")),
    ("networkInterface.json", Namespace::Network, include_str!("../../../specs/azure/networkInterface.json")),
    ("networkSecurityGroup.json", Namespace::Network, include_str!("../../../specs/azure/networkSecurityGroup.json")),
    ("publicIpAddress.json", Namespace::Network, include_str!("../../../specs/azure/publicIpAddress.json")),
    ("virtualMachine.json", Namespace::Compute, include_str!("../../../specs/azure/virtualMachine.json")),
    ("computeRPCommon.json", Namespace::Compute, include_str!("../../../specs/azure/computeRPCommon.json")),
];

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    /// A literal, matched case-insensitively as ARM does.
    Literal(String),
    /// A `{name}` parameter.
    Param(String),
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
    Header,
    Body,
}

/// A parameter of an operation.
#[derive(Debug, Clone)]
pub(super) struct Param {
    pub name: String,
    pub location: In,
    pub required: bool,
    /// The parameter's schema (a body's schema, or the parameter object itself for the others).
    pub schema: Schema,
}

/// A schema: the file it sits in (for resolving its `$ref`s) and its JSON.
#[derive(Debug, Clone)]
pub(super) struct Schema {
    pub doc: usize,
    pub value: Value,
}

/// One operation of the specs.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    pub id: String,
    pub method: String,
    pub namespace: Namespace,
    pub segments: Vec<Segment>,
    pub params: Vec<Param>,
}

impl Operation {
    /// The body parameter, if the operation takes one.
    pub(super) fn body(&self) -> Option<&Param> {
        self.params.iter().find(|p| p.location == In::Body)
    }
}

/// The loaded specs.
#[derive(Debug)]
pub(super) struct Spec {
    docs: Vec<(String, Value)>,
    pub operations: Vec<Operation>,
}

impl Spec {
    /// Parses the vendored files. Only the resource-group operations of resources.json are
    /// kept: its generic `/{resourceId}` paths would otherwise swallow every other path.
    pub(super) fn load() -> Spec {
        let docs: Vec<(String, Value)> = FILES
            .iter()
            .map(|(name, _, text)| {
                let value = serde_json::from_str(text).expect("the vendored specs are valid JSON (checked by a test)");
                (name.to_string(), value)
            })
            .collect();
        let mut spec = Spec { docs, operations: Vec::new() };
        for (doc, (_, namespace, _)) in FILES.iter().enumerate() {
            let Some(paths) = spec.docs[doc].1.get("paths").and_then(Value::as_object).cloned() else { continue };
            for (template, item) in paths {
                let shared: Vec<Value> = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
                let Some(methods) = item.as_object() else { continue };
                for (method, op) in methods {
                    if method == "parameters" {
                        continue;
                    }
                    let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default().to_string();
                    if *namespace == Namespace::Resources && !id.starts_with("ResourceGroups_") {
                        continue;
                    }
                    let own: Vec<Value> = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
                    let params = shared.iter().chain(&own).filter_map(|p| spec.param(doc, p)).collect();
                    spec.operations.push(Operation {
                        id,
                        method: method.to_uppercase(),
                        namespace: *namespace,
                        segments: segments(&template),
                        params,
                    });
                }
            }
        }
        spec
    }

    /// A parameter object (or a `$ref` to one). A reference to an absent file is inferred from
    /// its name (`SubscriptionIdParameter`, `ApiVersionParameter`, `ResourceGroupNameParameter`).
    fn param(&self, doc: usize, value: &Value) -> Option<Param> {
        let (doc, value) = match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => match self.resolve(doc, reference) {
                Some(found) => found,
                None => {
                    let (name, location) = match reference.rsplit('/').next()? {
                        "SubscriptionIdParameter" => ("subscriptionId", In::Path),
                        "ApiVersionParameter" => ("api-version", In::Query),
                        "ResourceGroupNameParameter" => ("resourceGroupName", In::Path),
                        _ => return None,
                    };
                    let schema = Schema { doc, value: serde_json::json!({"type": "string"}) };
                    return Some(Param { name: name.to_string(), location, required: true, schema });
                }
            },
            None => (doc, value.clone()),
        };
        let location = match value.get("in").and_then(Value::as_str)? {
            "path" => In::Path,
            "query" => In::Query,
            "header" => In::Header,
            "body" => In::Body,
            _ => return None,
        };
        let schema_value = if location == In::Body { value.get("schema").cloned()? } else { value.clone() };
        Some(Param {
            name: value.get("name").and_then(Value::as_str)?.to_string(),
            location,
            required: value.get("required").and_then(Value::as_bool).unwrap_or(location == In::Path),
            schema: Schema { doc, value: schema_value },
        })
    }

    /// Resolves `reference` written in document `doc`: `#/a/b`, `./file.json#/a/b`. `None` for
    /// a file that is not vendored or a pointer that leads nowhere.
    pub(super) fn resolve(&self, doc: usize, reference: &str) -> Option<(usize, Value)> {
        let (file, pointer) = reference.split_once('#')?;
        let target = if file.is_empty() {
            doc
        } else {
            let name = file.strip_prefix("./")?;
            self.docs.iter().position(|(n, _)| n == name)?
        };
        self.docs[target].1.pointer(pointer).cloned().map(|v| (target, v))
    }
}

/// `/a/{b}/c` → segments.
pub(super) fn segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => Segment::Param(name.to_string()),
            None => Segment::Literal(s.to_string()),
        })
        .collect()
}

/// The path parameters of `path` if it matches `template`.
pub(super) fn match_path(template: &[Segment], path: &[&str]) -> Option<BTreeMap<String, String>> {
    if template.len() != path.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (segment, actual) in template.iter().zip(path) {
        match segment {
            Segment::Literal(literal) if literal.eq_ignore_ascii_case(actual) => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => {
                params.insert(name.clone(), (*actual).to_string());
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_the_lab_serves_is_in_the_specs() {
        let spec = Spec::load();
        for id in [
            "ResourceGroups_CreateOrUpdate",
            "ResourceGroups_CheckExistence",
            "ResourceGroups_List",
            "VirtualNetworks_CreateOrUpdate",
            "Subnets_CreateOrUpdate",
            "NetworkSecurityGroups_Delete",
            "PublicIPAddresses_Get",
            "NetworkInterfaces_List",
            "VirtualMachines_CreateOrUpdate",
            "VirtualMachines_InstanceView",
            "VirtualMachines_Deallocate",
            "VirtualMachines_ListAll",
        ] {
            assert!(spec.operations.iter().any(|o| o.id == id), "{id} is missing from the vendored specs");
        }
        let put = spec.operations.iter().find(|o| o.id == "VirtualMachines_CreateOrUpdate").expect("found above");
        assert!(put.body().is_some());
        assert!(put.params.iter().any(|p| p.name == "api-version" && p.location == In::Query));
    }

    #[test]
    fn paths_match_case_insensitively() {
        let template = segments("/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}");
        let found = match_path(&template, &["subscriptions", "s", "resourceGroups", "rg"]).expect("matches");
        assert_eq!(found["resourceGroupName"], "rg");
        assert!(match_path(&template, &["subscriptions", "s", "groups", "rg"]).is_none());
    }
}
