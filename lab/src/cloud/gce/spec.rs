//! The vendored discovery document (`lab/specs/gce/compute.v1.json`, trimmed to the methods
//! gantry calls) and the check of every request against it: the method and path template, the
//! path parameters' patterns, the query parameters (known, typed, enum values), and the body
//! (parsed, every field known to its schema, typed, the method's required fields present).
//! Semantics (does the zone exist, is the name taken) are the handlers' business.

use super::error::ApiError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The trimmed discovery document, in the binary.
pub const DISCOVERY: &str = include_str!("../../../specs/gce/compute.v1.json");

/// Where the API lives on the emulator (the document's `servicePath`).
pub const SERVICE_PATH: &str = "/compute/v1/";

static SPEC: LazyLock<Spec> = LazyLock::new(|| Spec::parse(DISCOVERY));

/// One request that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method's id, e.g. `compute.instances.insert`.
    pub id: String,
    /// The path parameters and query parameters (the last value of a repeated one).
    pub params: BTreeMap<String, String>,
    /// The request body, for methods that take one.
    pub body: Option<Value>,
}

impl Call {
    /// The parameter `name`, or "".
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Variable(String),
}

#[derive(Debug)]
struct Method {
    id: String,
    http_method: String,
    segments: Vec<Segment>,
    parameters: Map<String, Value>,
    request: Option<String>,
}

/// The parsed document.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
    methods: Vec<Method>,
}

/// The checked, parsed document (parsed once).
pub fn spec() -> &'static Spec {
    &SPEC
}

impl Spec {
    fn parse(text: &str) -> Spec {
        let doc: Value = serde_json::from_str(text).expect("the vendored discovery document is JSON");
        let mut methods = Vec::new();
        for resource in doc["resources"].as_object().into_iter().flat_map(|r| r.values()) {
            for method in resource["methods"].as_object().into_iter().flat_map(|m| m.values()) {
                let path = method["path"].as_str().unwrap_or_default();
                let segments = path
                    .split('/')
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(var) => Segment::Variable(var.trim_start_matches('+').to_string()),
                        None => Segment::Literal(s.to_string()),
                    })
                    .collect();
                methods.push(Method {
                    id: method["id"].as_str().unwrap_or_default().to_string(),
                    http_method: method["httpMethod"].as_str().unwrap_or_default().to_string(),
                    segments,
                    parameters: method["parameters"].as_object().cloned().unwrap_or_default(),
                    request: method["request"]["$ref"].as_str().map(String::from),
                });
            }
        }
        Spec { doc, methods }
    }

    /// The document's `revision`.
    pub fn revision(&self) -> &str {
        self.doc["revision"].as_str().unwrap_or_default()
    }

    /// The ids of every method the document (and so the emulator) has.
    pub fn method_ids(&self) -> Vec<&str> {
        self.methods.iter().map(|m| m.id.as_str()).collect()
    }

    /// Checks one request: `path` is the URL's path, `query` its decoded pairs.
    pub fn check(
        &self,
        http_method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Call, ApiError> {
        let not_found =
            || ApiError::new(404, "notFound", format!("The requested URL {path} was not found on this server."));
        let rest = path.strip_prefix(SERVICE_PATH).ok_or_else(not_found)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (method, params) = self
            .methods
            .iter()
            .filter(|m| m.http_method == http_method)
            .filter_map(|m| bind(m, &parts).map(|p| (m, p)))
            .max_by_key(|(m, _)| m.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count())
            .ok_or_else(not_found)?;
        let mut params = params;
        for (name, value) in &params {
            let pattern = method.parameters.get(name).and_then(|p| p["pattern"].as_str());
            if let Some(pattern) = pattern
                && !full_match(pattern, value)
            {
                return Err(ApiError::invalid(name, value, &format!("Must be a match of regex '{pattern}'")));
            }
        }
        for (name, value) in query {
            self.check_query(method, name, value)?;
            params.insert(name.clone(), value.clone());
        }
        for (name, parameter) in &method.parameters {
            if parameter["required"].as_bool() == Some(true) && !params.contains_key(name) {
                return Err(ApiError::required(name));
            }
        }
        let body = self.check_body(method, body)?;
        Ok(Call { id: method.id.clone(), params, body })
    }

    fn check_query(&self, method: &Method, name: &str, value: &str) -> Result<(), ApiError> {
        let global = &self.doc["parameters"];
        let system = name.strip_prefix('$').filter(|n| global.get(*n).is_some() || *n == "apiVersion");
        if global.get(name).is_some() || system.is_some() {
            return Ok(());
        }
        let parameter = method.parameters.get(name).filter(|p| p["location"] == "query").ok_or_else(|| {
            ApiError::new(
                400,
                "badRequest",
                format!(
                    "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. \
                     Field '{name}' could not be found in request message."
                ),
            )
        })?;
        let bad =
            |kind: &str| ApiError::new(400, "badRequest", format!("Invalid value at '{name}' ({kind}), \"{value}\""));
        match (parameter["type"].as_str(), parameter["format"].as_str()) {
            (Some("integer"), Some("uint32")) => value.parse::<u32>().map(drop).map_err(|_| bad("TYPE_UINT32")),
            (Some("integer"), _) => value.parse::<i32>().map(drop).map_err(|_| bad("TYPE_INT32")),
            (Some("boolean"), _) => matches!(value, "true" | "false").then_some(()).ok_or_else(|| bad("TYPE_BOOL")),
            (Some("string"), Some("int64")) => value.parse::<i64>().map(drop).map_err(|_| bad("TYPE_INT64")),
            _ => match parameter["enum"].as_array() {
                Some(values) if !values.iter().any(|v| v == value) => Err(bad("TYPE_ENUM")),
                _ => Ok(()),
            },
        }
    }

    fn check_body(&self, method: &Method, body: &[u8]) -> Result<Option<Value>, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::new(400, "parseError", "Invalid JSON payload received. Invalid UTF-8."))?;
        let Some(schema) = &method.request else {
            let empty = text.trim().is_empty()
                || serde_json::from_str::<Value>(text).is_ok_and(|v| v.as_object().is_some_and(Map::is_empty));
            if empty {
                return Ok(None);
            }
            return Err(ApiError::new(400, "badRequest", "Invalid JSON payload received. This method takes no body."));
        };
        if text.trim().is_empty() {
            return Err(ApiError::required("resource"));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::new(400, "parseError", format!("Invalid JSON payload received. {e}")))?;
        self.check_value(
            &Value::from(Map::from_iter([("$ref".to_string(), Value::from(schema.as_str()))])),
            &value,
            "resource",
        )?;
        let properties = &self.doc["schemas"][schema]["properties"];
        for (field, property) in properties.as_object().into_iter().flatten() {
            let required = property["annotations"]["required"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == method.id.as_str()));
            if required && value.get(field).is_none_or(Value::is_null) {
                return Err(ApiError::required(&format!("resource.{field}")));
            }
        }
        Ok(Some(value))
    }

    /// Checks a response body of method `id` against the method's response schema, strictly:
    /// 64-bit integers must be JSON strings, as Compute writes them. For tests: what the
    /// emulator answers must be what the SDK parses.
    pub fn check_response(&self, id: &str, value: &Value) -> Result<(), ApiError> {
        let response = self.doc["resources"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
            .flat_map(|r| r["methods"].as_object().into_iter().flat_map(|m| m.values()))
            .find(|m| m["id"] == id)
            .map(|m| m["response"].clone())
            .ok_or_else(|| ApiError::not_found(id))?;
        self.check_value_as(&response, value, "response", true)
    }

    /// Checks `value` against `schema` (a schema object or a `$ref`), at `at`.
    fn check_value(&self, schema: &Value, value: &Value, at: &str) -> Result<(), ApiError> {
        self.check_value_as(schema, value, at, false)
    }

    fn check_value_as(&self, schema: &Value, value: &Value, at: &str, strict: bool) -> Result<(), ApiError> {
        let schema = match schema["$ref"].as_str() {
            Some(name) => &self.doc["schemas"][name],
            None => schema,
        };
        if value.is_null() {
            return Ok(());
        }
        let wrong = |kind: &str| ApiError::new(400, "invalid", format!("Invalid value at '{at}' ({kind}), {value}"));
        match schema["type"].as_str() {
            Some("object") => {
                let object = value.as_object().ok_or_else(|| wrong("TYPE_MESSAGE"))?;
                for (key, item) in object {
                    let field = schema["properties"].get(key).or_else(|| schema.get("additionalProperties"));
                    let field = field.ok_or_else(|| {
                        ApiError::new(
                            400,
                            "invalid",
                            format!(
                                "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
                            ),
                        )
                    })?;
                    self.check_value_as(field, item, &format!("{at}.{key}"), strict)?;
                }
                Ok(())
            }
            Some("array") => {
                let items = value.as_array().ok_or_else(|| wrong("TYPE_ARRAY"))?;
                for (i, item) in items.iter().enumerate() {
                    self.check_value_as(&schema["items"], item, &format!("{at}[{i}]"), strict)?;
                }
                Ok(())
            }
            Some("boolean") => value.is_boolean().then_some(()).ok_or_else(|| wrong("TYPE_BOOL")),
            Some("integer") => {
                let ok = value.as_i64().is_some()
                    || value.as_u64().is_some()
                    || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
                ok.then_some(()).ok_or_else(|| wrong("TYPE_INT32"))
            }
            Some("number") => {
                let ok = value.is_number() || value.as_str().is_some_and(|s| s.parse::<f64>().is_ok());
                ok.then_some(()).ok_or_else(|| wrong("TYPE_DOUBLE"))
            }
            Some("string") => match schema["format"].as_str() {
                Some("int64") => {
                    let ok = (!strict && value.as_i64().is_some())
                        || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
                    ok.then_some(()).ok_or_else(|| wrong("TYPE_INT64"))
                }
                Some("uint64") => {
                    let ok = (!strict && value.as_u64().is_some())
                        || value.as_str().is_some_and(|s| s.parse::<u64>().is_ok());
                    ok.then_some(()).ok_or_else(|| wrong("TYPE_UINT64"))
                }
                Some("byte") => {
                    let ok = value.as_str().is_some_and(|s| {
                        s.len() % 4 == 0 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+/=-_".contains(c))
                    });
                    ok.then_some(()).ok_or_else(|| wrong("TYPE_BYTES"))
                }
                _ => {
                    let text = value.as_str().ok_or_else(|| wrong("TYPE_STRING"))?;
                    match schema["enum"].as_array() {
                        Some(values) if !values.iter().any(|v| v == text) => Err(wrong("TYPE_ENUM")),
                        _ => Ok(()),
                    }
                }
            },
            _ => Ok(()),
        }
    }
}

/// The path parameters when `parts` fits `method`'s template.
fn bind(method: &Method, parts: &[&str]) -> Option<BTreeMap<String, String>> {
    if method.segments.len() != parts.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (segment, part) in method.segments.iter().zip(parts) {
        match segment {
            Segment::Literal(text) if text == part => {}
            Segment::Literal(_) => return None,
            Segment::Variable(_) if part.is_empty() => return None,
            Segment::Variable(name) => {
                params.insert(name.clone(), (*part).to_string());
            }
        }
    }
    Some(params)
}

/// Whether all of `text` matches `pattern` (cached per pattern); never for a pattern that is
/// not a regular expression.
pub(super) fn full_match(pattern: &str, text: &str) -> bool {
    static CACHE: LazyLock<std::sync::Mutex<BTreeMap<String, Option<regex::Regex>>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let regex = cache.entry(pattern.to_string()).or_insert_with(|| regex::Regex::new(&format!("^(?:{pattern})$")).ok());
    regex.as_ref().is_some_and(|r| r.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_every_method_gantry_calls_and_its_patterns_compile() {
        let spec = spec();
        assert_eq!(spec.revision(), "20261106");
        assert_eq!(spec.method_ids().len(), 31);
        for method in &spec.methods {
            for (name, parameter) in &method.parameters {
                if let Some(pattern) = parameter["pattern"].as_str() {
                    assert!(regex::Regex::new(pattern).is_ok(), "{} {name}: {pattern}", method.id);
                }
            }
        }
    }

    #[test]
    fn requests_are_checked_against_the_document() {
        let spec = spec();
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let call = spec
            .check(
                "GET",
                "/compute/v1/projects/p/zones/europe-west1-b/instances",
                &query(&[("$alt", "json"), ("maxResults", "5")]),
                b"",
            )
            .expect("a valid list");
        assert_eq!(
            (call.id.as_str(), call.param("zone"), call.param("maxResults")),
            ("compute.instances.list", "europe-west1-b", "5")
        );
        let refused = |method: &str, path: &str, pairs: &[(&str, &str)], body: &str| {
            let error = spec.check(method, path, &query(pairs), body.as_bytes()).expect_err(path);
            (error.status, error.reason)
        };
        let list = "/compute/v1/projects/p/zones/europe-west1-b/instances";
        assert_eq!(refused("GET", list, &[("colour", "red")], ""), (400, "badRequest"));
        assert_eq!(refused("GET", list, &[("maxResults", "many")], ""), (400, "badRequest"));
        assert_eq!(refused("PUT", list, &[], ""), (404, "notFound"));
        assert_eq!(refused("GET", "/compute/v1/projects/p/zones/Bad_Zone/instances", &[], ""), (400, "invalid"));
        assert_eq!(refused("POST", list, &[], r#"{"name": "a", "colour": 1}"#), (400, "invalid"));
        assert_eq!(refused("POST", list, &[], r#"{"name": 5}"#), (400, "invalid"));
        assert_eq!(refused("POST", list, &[], r#"{"machineType": "x"}"#), (400, "required"));
        assert_eq!(
            refused("POST", list, &[], r#"{"name": "a", "scheduling": {"provisioningModel": "CHEAP"}}"#),
            (400, "invalid")
        );
        assert_eq!(refused("POST", list, &[], "{not json"), (400, "parseError"));
        let ok = spec.check(
            "POST",
            list,
            &[],
            br#"{"name": "a", "disks": [{"diskSizeGb": "10"}], "scheduling": {"provisioningModel": "SPOT"}}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
