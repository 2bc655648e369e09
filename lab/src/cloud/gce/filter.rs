//! The list `filter` grammar gantry uses, evaluated on a resource's JSON: comparisons
//! `FIELD = "VALUE"`, `FIELD != VALUE`, `FIELD:*` (the field is set), `FIELD:VALUE`, and the
//! regular-expression forms `FIELD eq RE` / `FIELD ne RE`; FIELD is a dotted path such as
//! `labels.owner` or `name`. Comparisons join with spaces or `AND`, `OR` (tighter than `AND`,
//! as AIP-160 reads it), `NOT`, and parentheses. Anything else is refused as Compute refuses it.

use super::error::ApiError;
use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every part holds.
    All(Vec<Filter>),
    /// Some part holds.
    Any(Vec<Filter>),
    /// The part does not hold.
    Not(Box<Filter>),
    /// One comparison.
    Compare {
        /// The dotted field path.
        field: String,
        /// `=`, `!=`, `:`, `eq` or `ne`.
        op: String,
        /// The literal (unquoted).
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Op(String),
    Quoted(String),
}

/// Parses `text`; an empty filter matches everything.
pub fn parse(text: &str) -> Result<Filter, ApiError> {
    let bad = || ApiError::invalid("filter", text, "Invalid list filter expression.");
    let tokens = tokenize(text).ok_or_else(bad)?;
    let mut at = 0;
    let filter = parse_all(&tokens, &mut at).ok_or_else(bad)?;
    if at != tokens.len() {
        return Err(bad());
    }
    Ok(filter)
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            tokens.push(if c == '(' { Token::Open } else { Token::Close });
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                let d = *chars.get(i)?;
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' {
                    value.push(*chars.get(i)?);
                    i += 1;
                } else {
                    value.push(d);
                }
            }
            tokens.push(Token::Quoted(value));
        } else if "=!:<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["!=", ">=", "<="].contains(&two.as_str()) { two } else { c.to_string() };
            i += op.len();
            tokens.push(Token::Op(op));
        } else {
            let after_op = matches!(tokens.last(), Some(Token::Op(_)))
                || matches!(tokens.last(), Some(Token::Word(w)) if w == "eq" || w == "ne")
                    && matches!(tokens.iter().rev().nth(1), Some(Token::Word(_)));
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !"()".contains(chars[i])
                && (after_op || !"=!:<>\"'".contains(chars[i]))
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    Some(tokens)
}

fn parse_all(tokens: &[Token], at: &mut usize) -> Option<Filter> {
    let mut parts = vec![parse_any(tokens, at)?];
    loop {
        match tokens.get(*at) {
            None | Some(Token::Close) => break,
            Some(Token::Word(w)) if w == "AND" => *at += 1,
            _ => {}
        }
        parts.push(parse_any(tokens, at)?);
    }
    Some(if parts.len() == 1 { parts.remove(0) } else { Filter::All(parts) })
}

fn parse_any(tokens: &[Token], at: &mut usize) -> Option<Filter> {
    let mut parts = vec![parse_term(tokens, at)?];
    while matches!(tokens.get(*at), Some(Token::Word(w)) if w == "OR") {
        *at += 1;
        parts.push(parse_term(tokens, at)?);
    }
    Some(if parts.len() == 1 { parts.remove(0) } else { Filter::Any(parts) })
}

fn parse_term(tokens: &[Token], at: &mut usize) -> Option<Filter> {
    match tokens.get(*at)? {
        Token::Open => {
            *at += 1;
            let inner = parse_all(tokens, at)?;
            (tokens.get(*at)? == &Token::Close).then_some(())?;
            *at += 1;
            Some(inner)
        }
        Token::Word(w) if w == "NOT" => {
            *at += 1;
            Some(Filter::Not(Box::new(parse_term(tokens, at)?)))
        }
        Token::Word(field) if !["AND", "OR"].contains(&field.as_str()) => {
            let op = match tokens.get(*at + 1)? {
                Token::Op(op) if ["=", "!=", ":"].contains(&op.as_str()) => op.clone(),
                Token::Word(op) if op == "eq" || op == "ne" => op.clone(),
                _ => return None,
            };
            let value = match tokens.get(*at + 2)? {
                Token::Word(v) | Token::Quoted(v) => v.clone(),
                _ => return None,
            };
            *at += 3;
            Some(Filter::Compare { field: field.clone(), op, value })
        }
        _ => None,
    }
}

impl Filter {
    /// Whether `resource` passes.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::All(parts) => parts.iter().all(|p| p.matches(resource)),
            Filter::Any(parts) => parts.iter().any(|p| p.matches(resource)),
            Filter::Not(part) => !part.matches(resource),
            Filter::Compare { field, op, value } => {
                let found = field.split('.').try_fold(resource, |v, key| v.get(key)).filter(|v| !v.is_null());
                let text = found.map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                match op.as_str() {
                    "=" => text.is_some_and(|t| glob(value, &t)),
                    "!=" => !text.is_some_and(|t| glob(value, &t)),
                    ":" if value == "*" => found.is_some(),
                    ":" => match found {
                        Some(Value::Array(items)) => {
                            items.iter().any(|i| i.as_str().map_or_else(|| i.to_string(), String::from) == *value)
                        }
                        Some(Value::Object(map)) => map.contains_key(value),
                        _ => text.is_some_and(|t| glob(value, &t)),
                    },
                    "eq" => text.is_some_and(|t| super::spec::full_match(value, &t)),
                    _ => !text.is_some_and(|t| super::spec::full_match(value, &t)),
                }
            }
        }
    }
}

/// `pattern` with `*` standing for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let escaped: Vec<String> = pattern.split('*').map(regex::escape).collect();
    super::spec::full_match(&escaped.join(".*"), text)
}

/// `items` that pass the call's `filter` (all when there is none).
pub fn apply(filter: &str, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    if filter.trim().is_empty() {
        return Ok(items);
    }
    let filter = parse(filter)?;
    Ok(items.into_iter().filter(|i| filter.matches(i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_names_and_groups_filter_as_gantry_writes_them() {
        let web = json!({"name": "web-0", "status": "RUNNING", "labels": {"gantry-cluster": "c1", "role": "web"}});
        let db = json!({"name": "db-0", "status": "TERMINATED", "labels": {"gantry-cluster": "c2"}});
        let passes = |f: &str| (parse(f).expect(f).matches(&web), parse(f).expect(f).matches(&db));
        assert_eq!(passes(r#"labels.gantry-cluster = "c1""#), (true, false));
        assert_eq!(passes("labels.role:*"), (true, false));
        assert_eq!(passes(r#"name = "db-0""#), (false, true));
        assert_eq!(passes(r#"(labels.gantry-cluster = "c1") (name = "web-0")"#), (true, false));
        assert_eq!(passes(r#"labels.gantry-cluster = "c1" AND labels.role:*"#), (true, false));
        assert_eq!(passes(r#"(name = "web-0") OR (name = "db-0")"#), (true, true));
        assert_eq!(passes("name eq web-.*"), (true, false));
        assert_eq!(passes("status != RUNNING"), (false, true));
        assert_eq!(passes(r#"NOT labels.role:*"#), (false, true));
        assert_eq!(passes(r#"name = "web-*""#), (true, false));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["name =", "(name = a", "labels.x ~ 1", "= a", "name = a)", "AND"] {
            let error = parse(bad).expect_err(bad);
            assert_eq!((error.status, error.reason), (400, "invalid"), "{bad}");
        }
    }
}
