//! The checks Compute Engine makes of names, labels and metadata keys.

use super::error::ApiError;
use super::spec::full_match;
use serde_json::Value;

/// RFC 1035 names, as every Compute resource's `name` (1 to 63 characters).
pub const NAME: &str = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?";

/// `resource.name` of `body`: present and an RFC 1035 name.
pub fn name(body: &Value) -> Result<String, ApiError> {
    let name = body["name"].as_str().ok_or_else(|| ApiError::required("resource.name"))?;
    if !full_match(NAME, name) {
        return Err(ApiError::invalid("resource.name", name, &format!("Must be a match of regex '(?:{NAME})'")));
    }
    Ok(name.to_string())
}

/// `resource.labels` of `body`: at most 64, keys `[a-z][a-z0-9_-]{0,62}`, values
/// `[a-z0-9_-]{0,63}` (Compute also allows international lowercase letters; the lab does not).
pub fn labels(body: &Value) -> Result<(), ApiError> {
    let Some(labels) = body["labels"].as_object() else { return Ok(()) };
    if labels.len() > 64 {
        return Err(ApiError::invalid("resource.labels", "", "Too many labels: at most 64 are allowed."));
    }
    for (key, value) in labels {
        if !full_match("[a-z][a-z0-9_-]{0,62}", key) {
            return Err(ApiError::invalid(
                "resource.labels",
                "",
                &format!(
                    "Label key '{key}' violates format constraints. The key must start with a lowercase \
                     character, can only contain lowercase letters, numeric characters, underscores and \
                     dashes. The key can be at most 63 characters long. International characters are allowed."
                ),
            ));
        }
        let value = value.as_str().unwrap_or_default();
        if !full_match("[a-z0-9_-]{0,63}", value) {
            return Err(ApiError::invalid(
                "resource.labels",
                "",
                &format!(
                    "Label value '{value}' violates format constraints. The value can only contain lowercase \
                     letters, numeric characters, underscores and dashes. The value can be at most 63 characters \
                     long. International characters are allowed."
                ),
            ));
        }
    }
    Ok(())
}

/// `resource.metadata.items` of `body`: keys `[a-zA-Z0-9-_]{1,128}`, each once.
pub fn metadata(body: &Value) -> Result<(), ApiError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in body["metadata"]["items"].as_array().into_iter().flatten().enumerate() {
        let field = format!("resource.metadata.items[{i}].key");
        let key = item["key"].as_str().ok_or_else(|| ApiError::required(&field))?;
        if !full_match("[a-zA-Z0-9-_]{1,128}", key) {
            return Err(ApiError::invalid(&field, key, "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'"));
        }
        if !seen.insert(key) {
            return Err(ApiError::invalid(&field, key, "Duplicate keys are not allowed."));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_labels_follow_compute_rules() {
        assert_eq!(name(&json!({"name": "web-0"})).expect("valid"), "web-0");
        for bad in ["Web", "0web", "web-", "a_b", &"a".repeat(64)] {
            assert_eq!(name(&json!({"name": bad})).expect_err(bad).reason, "invalid", "{bad}");
        }
        assert_eq!(name(&json!({})).expect_err("missing").reason, "required");
        assert!(labels(&json!({"labels": {"gantry-cluster": "c1", "role": ""}})).is_ok());
        for bad in [json!({"Role": "x"}), json!({"1x": "x"}), json!({"role": "Web"}), json!({"k": "a".repeat(64)})] {
            assert!(labels(&json!({"labels": bad})).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(labels(&json!({"labels": many})).is_err());
    }
}
