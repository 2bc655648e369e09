//! Checks a request against the vendored specs before any handler sees it: the path and method
//! name an operation, the api-version is one the lab serves for that namespace, every query
//! parameter is declared (and typed), and the body fits the operation's schema (field names,
//! types, required fields, closed enums). A request the real API would refuse gets the real
//! API's error.

use super::error::ArmError;
use super::spec::{In, Namespace, Operation, Schema, Spec};
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;

/// A request the specs accept.
#[derive(Debug, Clone)]
pub(super) struct Matched {
    /// The spec's operationId, e.g. `VirtualMachines_CreateOrUpdate`.
    pub op: String,
    pub namespace: Namespace,
    pub api_version: String,
    pub path: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    /// The body (`Null` when the operation takes none).
    pub body: Value,
}

/// What is wrong with a body.
#[derive(Debug, Clone, PartialEq)]
enum BodyError {
    Unknown { path: String, member: String, type_name: String },
    WrongType { path: String, expected: String, found: String },
    Missing { path: String },
    NotAllowed { path: String, value: String, allowed: Vec<String> },
}

/// Validates a request; see the module docs.
pub(super) fn check(
    spec: &Spec,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Matched, ArmError> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut candidates: Vec<(&Operation, BTreeMap<String, String>)> = spec
        .operations
        .iter()
        .filter_map(|op| super::spec::match_path(&op.segments, &parts).map(|p| (op, p)))
        .collect();
    // The most literal template wins (`.../virtualMachines/{vm}/start` over a generic one).
    let literals =
        |op: &Operation| op.segments.iter().filter(|s| matches!(s, super::spec::Segment::Literal(_))).count();
    candidates.sort_by_key(|(op, _)| std::cmp::Reverse(literals(op)));
    if candidates.is_empty() {
        return Err(unknown_path(&parts));
    }
    let best = literals(candidates[0].0);
    let Some((op, path_params)) =
        candidates.into_iter().filter(|(op, _)| literals(op) == best).find(|(op, _)| op.method == method)
    else {
        return Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        ));
    };
    let api_version = api_version(op, &parts, query)?;
    if let Some(subscription) = path_params.get("subscriptionId")
        && !is_guid(subscription)
    {
        return Err(ArmError::bad_request(
            "InvalidSubscriptionId",
            format!("The provided subscription identifier '{subscription}' is malformed or invalid."),
        ));
    }
    let mut query_params = BTreeMap::new();
    for (name, value) in query {
        if name == "api-version" {
            continue;
        }
        let Some(param) = op.params.iter().find(|p| p.location == In::Query && p.name == *name) else {
            return Err(ArmError::bad_request(
                "InvalidQueryParameter",
                format!(
                    "The query parameter '{name}' is not supported by operation '{}' (api-version {api_version}).",
                    op.id
                ),
            ));
        };
        check_query_value(&param.schema.value, name, value)?;
        query_params.insert(name.clone(), value.clone());
    }
    let body = match op.body() {
        None => Value::Null,
        Some(param) => parse_body(spec, op, &param.schema, param.required, body)?,
    };
    Ok(Matched {
        op: op.id.clone(),
        namespace: op.namespace,
        api_version,
        path: path_params,
        query: query_params,
        body,
    })
}

/// The error for a path no operation has: an unknown namespace or resource type.
fn unknown_path(parts: &[&str]) -> ArmError {
    let providers = parts.iter().position(|p| p.eq_ignore_ascii_case("providers"));
    match providers.and_then(|i| Some((parts.get(i + 1)?, parts.get(i + 2)))) {
        Some((namespace, kind)) => {
            let known =
                [Namespace::Compute, Namespace::Network].iter().any(|n| n.name().eq_ignore_ascii_case(namespace));
            if known {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "InvalidResourceType",
                    format!(
                        "The resource type '{}' could not be found in the namespace '{namespace}'.",
                        kind.copied().unwrap_or_default()
                    ),
                )
            } else {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "NoRegisteredProviderFound",
                    format!("No registered resource provider found for namespace '{namespace}'."),
                )
            }
        }
        None => ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The requested path '/{}' is not an Azure Resource Manager API.", parts.join("/")),
        ),
    }
}

/// The request's api-version, if the lab serves it for the operation's namespace.
fn api_version(op: &Operation, parts: &[&str], query: &[(String, String)]) -> Result<String, ArmError> {
    let Some((_, version)) = query.iter().find(|(k, _)| k == "api-version") else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let supported = op.namespace.api_versions();
    if supported.contains(&version.as_str()) {
        return Ok(version.clone());
    }
    let list = supported.join(", ");
    Err(match op.namespace {
        Namespace::Resources => ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{version}' is invalid. The supported versions are '{list}'."),
        ),
        namespace => {
            let providers = parts.iter().position(|p| p.eq_ignore_ascii_case("providers")).unwrap_or(0);
            let kind = parts.get(providers + 2).copied().unwrap_or_default();
            ArmError::bad_request(
                "NoRegisteredProviderFound",
                format!(
                    "No registered resource provider found for location 'westeurope' and API version '{version}' \
                     for type '{kind}' (namespace '{}'). The supported api-versions are '{list}'.",
                    namespace.name()
                ),
            )
        }
    })
}

fn check_query_value(param: &Value, name: &str, value: &str) -> Result<(), ArmError> {
    let invalid = |allowed: &str| {
        ArmError::bad_request(
            "InvalidParameter",
            format!("The value '{value}' of query parameter '{name}' is invalid; expected {allowed}."),
        )
        .with_target(name)
    };
    match param.get("type").and_then(Value::as_str) {
        Some("boolean") if !matches!(value, "true" | "false" | "True" | "False") => {
            return Err(invalid("true or false"));
        }
        Some("integer") if value.parse::<i64>().is_err() => return Err(invalid("an integer")),
        _ => {}
    }
    if let Some(allowed) = closed_enum(param)
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value))
    {
        return Err(invalid(&format!("one of {}", allowed.join(", "))));
    }
    Ok(())
}

/// The values of an enum the API enforces (`x-ms-enum.modelAsString` false or absent).
fn closed_enum(schema: &Value) -> Option<Vec<String>> {
    let values = schema.get("enum")?.as_array()?;
    let open = schema.pointer("/x-ms-enum/modelAsString").and_then(Value::as_bool).unwrap_or(false);
    if open {
        return None;
    }
    Some(values.iter().filter_map(|v| v.as_str().map(String::from)).collect())
}

fn parse_body(spec: &Spec, op: &Operation, schema: &Schema, required: bool, body: &[u8]) -> Result<Value, ArmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if required {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the request body is empty.",
            ));
        }
        return Ok(Value::Null);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    let type_name = "ResourceDefinition";
    walk(spec, schema.doc, &schema.value, &value, "", type_name).map_err(|e| body_error(op.namespace, e))?;
    Ok(value)
}

/// The error each service answers for a body that does not fit its schema.
fn body_error(namespace: Namespace, error: BodyError) -> ArmError {
    let deserialize = |inner: String| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{inner}'."),
        )
    };
    match error {
        BodyError::Unknown { path, member, type_name } => {
            deserialize(format!("Could not find member '{member}' on object of type '{type_name}'. Path '{path}'."))
        }
        BodyError::WrongType { path, expected, found } => {
            let inner = format!("Error converting value {found} to type '{expected}'. Path '{path}'.");
            match namespace {
                Namespace::Network => {
                    let mut error = ArmError::bad_request("InvalidRequestFormat", "Cannot parse the request.");
                    error.details = vec![serde_json::json!({"code": "InvalidJson", "message": inner})];
                    error
                }
                _ => deserialize(inner),
            }
        }
        BodyError::Missing { path } if path == "location" => {
            ArmError::bad_request("LocationRequired", "The location property is required for this definition.")
        }
        BodyError::Missing { path } => match namespace {
            Namespace::Compute => {
                ArmError::invalid_parameter(&path, format!("Required parameter '{path}' is missing (null)."))
            }
            Namespace::Network => {
                let mut error = ArmError::bad_request("InvalidRequestFormat", "Cannot parse the request.");
                error.details = vec![serde_json::json!({
                    "code": "MissingJsonProperty",
                    "message": format!("Required property '{path}' not found in JSON."),
                })];
                error
            }
            Namespace::Resources => deserialize(format!("Required property '{path}' not found in JSON.")),
        },
        BodyError::NotAllowed { path, value, allowed } => {
            let message =
                format!("The value '{value}' is not allowed for '{path}'. Allowed values are: {}.", allowed.join(", "));
            match namespace {
                Namespace::Compute => ArmError::invalid_parameter(&path, message),
                _ => ArmError::bad_request("InvalidRequestFormat", message),
            }
        }
    }
}

/// A schema with its `allOf` parents merged.
#[derive(Debug, Default)]
struct Flat {
    kind: Option<String>,
    properties: BTreeMap<String, (usize, Value)>,
    required: Vec<String>,
    additional: Option<(usize, Value)>,
    /// A `$ref` that could not be resolved was met: anything goes.
    open: bool,
    schema: Value,
}

fn flatten(spec: &Spec, doc: usize, schema: &Value, flat: &mut Flat, depth: usize) {
    if depth > 32 {
        flat.open = true;
        return;
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        match spec.resolve(doc, reference) {
            Some((doc, target)) => flatten(spec, doc, &target, flat, depth + 1),
            None => common_type(reference, flat),
        }
        return;
    }
    if flat.schema.is_null() {
        flat.schema = schema.clone();
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        flat.kind.get_or_insert_with(|| kind.to_string());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, value) in properties {
            flat.properties.entry(name.clone()).or_insert_with(|| (doc, value.clone()));
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        flat.required.extend(required.iter().filter_map(|r| r.as_str().map(String::from)));
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) => flat.additional = Some((doc, Value::Object(Default::default()))),
        Some(value @ Value::Object(_)) => flat.additional = Some((doc, value.clone())),
        _ => {}
    }
    if let Some(parents) = schema.get("allOf").and_then(Value::as_array) {
        for parent in parents {
            flatten(spec, doc, parent, flat, depth + 1);
        }
    }
}

/// A definition of the common-types files, which are not vendored: the ARM resource envelopes
/// and `SubResource` are known by name (their members are stable across versions); anything
/// else is an open object.
fn common_type(reference: &str, flat: &mut Flat) {
    let members: &[&str] = match reference.rsplit('/').next().unwrap_or_default() {
        "Resource" | "TrackedResource" | "ResourceWithOptionalLocation" => &["id", "name", "type", "location", "tags"],
        "SubResource" => &["id"],
        _ => {
            flat.open = true;
            return;
        }
    };
    flat.kind.get_or_insert_with(|| "object".to_string());
    for member in members {
        let schema = if *member == "tags" {
            serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}})
        } else {
            serde_json::json!({"type": "string"})
        };
        flat.properties.entry((*member).to_string()).or_insert((0, schema));
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() { member.to_string() } else { format!("{path}.{member}") }
}

fn walk(spec: &Spec, doc: usize, schema: &Value, value: &Value, path: &str, type_name: &str) -> Result<(), BodyError> {
    if value.is_null() {
        return Ok(());
    }
    let type_name = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(String::from)
        .unwrap_or_else(|| type_name.to_string());
    let mut flat = Flat::default();
    flatten(spec, doc, schema, &mut flat, 0);
    if flat.open {
        return Ok(());
    }
    let wrong = |expected: &str| BodyError::WrongType {
        path: path.to_string(),
        expected: expected.to_string(),
        found: value.to_string(),
    };
    let kind = flat.kind.clone().or_else(|| (!flat.properties.is_empty()).then(|| "object".to_string()));
    match kind.as_deref() {
        Some("object") => {
            let Some(object) = value.as_object() else { return Err(wrong(&type_name)) };
            for (member, item) in object {
                let here = join(path, member);
                if let Some((doc, property)) = flat.properties.get(member) {
                    walk(spec, *doc, property, item, &here, &type_name)?;
                } else if let Some((doc, additional)) = &flat.additional {
                    walk(spec, *doc, additional, item, &here, &type_name)?;
                } else if !flat.properties.is_empty() {
                    return Err(BodyError::Unknown { path: here, member: member.clone(), type_name });
                }
            }
            for required in &flat.required {
                let read_only =
                    flat.properties.get(required).is_some_and(|(_, p)| p.get("readOnly") == Some(&Value::Bool(true)));
                if !read_only && object.get(required).is_none_or(Value::is_null) {
                    return Err(BodyError::Missing { path: join(path, required) });
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else { return Err(wrong("array")) };
            let item_schema = flat.schema.get("items").cloned().unwrap_or(Value::Null);
            for (i, item) in items.iter().enumerate() {
                walk(spec, doc_of(spec, doc, schema), &item_schema, item, &format!("{path}[{i}]"), &type_name)?;
            }
            Ok(())
        }
        Some("string") => {
            let Some(text) = value.as_str() else { return Err(wrong("System.String")) };
            match closed_enum(&flat.schema) {
                Some(allowed) if !allowed.iter().any(|a| a.eq_ignore_ascii_case(text)) => {
                    Err(BodyError::NotAllowed { path: path.to_string(), value: text.to_string(), allowed })
                }
                _ => Ok(()),
            }
        }
        Some("integer") if !(value.is_i64() || value.is_u64()) => Err(wrong("System.Int32")),
        Some("number") if !value.is_number() => Err(wrong("System.Double")),
        Some("boolean") if !value.is_boolean() => Err(wrong("System.Boolean")),
        _ => Ok(()),
    }
}

/// The document a (possibly `$ref`) schema's own text lives in, for resolving its `items`.
fn doc_of(spec: &Spec, doc: usize, schema: &Value) -> usize {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => match spec.resolve(doc, reference) {
            Some((target, value)) => doc_of(spec, target, &value),
            None => doc,
        },
        None => doc,
    }
}

/// Whether `text` is a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub(super) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "00000000-0000-4000-8000-000000000001";

    fn vm_path() -> String {
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1")
    }

    fn q(version: &str) -> Vec<(String, String)> {
        vec![("api-version".to_string(), version.to_string())]
    }

    #[test]
    fn a_valid_vm_put_matches_its_operation() {
        let spec = Spec::load();
        let body = json!({"location": "westeurope", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}});
        let matched = check(&spec, "PUT", &vm_path(), &q("2024-07-01"), body.to_string().as_bytes()).expect("valid");
        assert_eq!(matched.op, "VirtualMachines_CreateOrUpdate");
        assert_eq!(matched.path["vmName"], "vm1");
    }

    #[test]
    fn unknown_members_and_wrong_types_are_refused() {
        let spec = Spec::load();
        let unknown = json!({"location": "westeurope", "properties": {"hardwareProfile": {"size": "x"}}});
        let error =
            check(&spec, "PUT", &vm_path(), &q("2024-07-01"), unknown.to_string().as_bytes()).expect_err("refused");
        assert_eq!(error.code, "InvalidRequestContent");
        assert!(error.message.contains("properties.hardwareProfile.size"), "{}", error.message);
        let wrong = json!({"location": "westeurope", "properties": {"osProfile": {"allowExtensionOperations": "yes"}}});
        let error =
            check(&spec, "PUT", &vm_path(), &q("2024-07-01"), wrong.to_string().as_bytes()).expect_err("refused");
        assert_eq!(error.code, "InvalidRequestContent");
    }

    #[test]
    fn api_versions_are_those_of_the_namespace() {
        let spec = Spec::load();
        let error = check(&spec, "GET", &vm_path(), &q("2024-03-01"), b"").expect_err("refused");
        assert_eq!(error.code, "NoRegisteredProviderFound");
        let group = format!("/subscriptions/{SUB}/resourcegroups/rg");
        assert!(check(&spec, "GET", &group, &q("2021-04-01"), b"").is_ok());
        assert_eq!(
            check(&spec, "GET", &group, &q("2020-01-01"), b"").expect_err("refused").code,
            "InvalidApiVersionParameter"
        );
        assert_eq!(check(&spec, "GET", &group, &[], b"").expect_err("refused").code, "MissingApiVersionParameter");
    }

    #[test]
    fn guids_are_recognised() {
        assert!(is_guid(SUB));
        assert!(!is_guid("my-subscription"));
    }
}
