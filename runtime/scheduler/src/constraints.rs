//! Marathon constraints compiled once per placement call.
//!
//! Owns what an operator means for one agent in isolation: which field it reads, whether the
//! agent's value passes (LIKE, UNLIKE, CLUSTER with a value, presence of the field), and which
//! operators depend on how many instances each value already holds. Counting instances across
//! agents belongs to the placement search.

use gantry_api::{Constraint, ConstraintOperator};
use regex::Regex;
use std::collections::BTreeMap;

/// The field that names the agent's hostname rather than an attribute.
pub(crate) const HOSTNAME: &str = "hostname";

/// An operator with its argument parsed.
#[derive(Debug)]
pub(crate) enum Rule {
    /// At most one instance per value.
    Unique,
    /// Only agents whose field equals the value.
    ClusterOn(String),
    /// Every instance on one value: the existing instances' or the first placed one's.
    ClusterTogether,
    /// Spread evenly over the values; refuse to stack while fewer than `min_values` values hold one.
    GroupBy { min_values: u32 },
    /// The whole value must match.
    Like(Regex),
    /// The whole value must not match.
    Unlike(Regex),
    /// At most this many instances per value.
    MaxPer(u32),
}

/// A constraint and its parsed rule.
#[derive(Debug)]
pub(crate) struct Compiled<'c> {
    pub(crate) constraint: &'c Constraint,
    pub(crate) rule: Rule,
}

impl Compiled<'_> {
    pub(crate) fn field(&self) -> &str {
        &self.constraint.field
    }

    /// Whether an agent whose field has `value` may hold an instance, ignoring other instances.
    pub(crate) fn admits(&self, value: Option<&str>) -> bool {
        match (&self.rule, value) {
            (Rule::Like(re), Some(v)) => re.is_match(v),
            (Rule::Like(_), None) => false,
            (Rule::Unlike(re), Some(v)) => !re.is_match(v),
            (Rule::Unlike(_), None) => true,
            (Rule::ClusterOn(want), v) => v == Some(want.as_str()),
            (Rule::Unique | Rule::ClusterTogether | Rule::GroupBy { .. } | Rule::MaxPer(_), v) => v.is_some(),
        }
    }

    /// Whether the rule depends on how many instances each value of the field holds.
    pub(crate) fn counts_instances(&self) -> bool {
        matches!(self.rule, Rule::Unique | Rule::ClusterTogether | Rule::GroupBy { .. } | Rule::MaxPer(_))
    }
}

/// Parses every constraint's argument; the error is a sentence naming the bad constraint.
pub(crate) fn compile(constraints: &[Constraint]) -> Result<Vec<Compiled<'_>>, String> {
    constraints.iter().map(|constraint| Ok(Compiled { constraint, rule: rule_of(constraint)? })).collect()
}

fn rule_of(c: &Constraint) -> Result<Rule, String> {
    let value = c.value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let count = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("constraint {c} is invalid: {} takes a whole number, got `{v}`", c.operator.name()))
    };
    let regex = |v: Option<&str>| {
        let v =
            v.ok_or_else(|| format!("constraint {c} is invalid: {} needs a regular expression", c.operator.name()))?;
        Regex::new(&format!("^(?:{v})$"))
            .map_err(|_| format!("constraint {c} is invalid: `{v}` is not a valid regular expression"))
    };
    Ok(match c.operator {
        ConstraintOperator::Unique => Rule::Unique,
        ConstraintOperator::Cluster => match value {
            Some(v) => Rule::ClusterOn(v.to_string()),
            None => Rule::ClusterTogether,
        },
        ConstraintOperator::GroupBy => Rule::GroupBy { min_values: value.map(count).transpose()?.unwrap_or(1) },
        ConstraintOperator::Like => Rule::Like(regex(value)?),
        ConstraintOperator::Unlike => Rule::Unlike(regex(value)?),
        ConstraintOperator::MaxPer => Rule::MaxPer(count(value.ok_or_else(|| {
            format!("constraint {c} is invalid: MAX_PER needs the maximum number of instances per value")
        })?)?),
    })
}

/// The value of a constraint field for an agent: its hostname for `hostname`, else the attribute.
pub(crate) fn field_value<'a>(
    field: &str,
    hostname: &'a str,
    attributes: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if field == HOSTNAME { Some(hostname) } else { attributes.get(field).map(String::as_str) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(field: &str, operator: ConstraintOperator, value: Option<&str>) -> Constraint {
        Constraint { field: field.into(), operator, value: value.map(Into::into) }
    }

    #[test]
    fn like_and_unlike_match_the_whole_value() {
        let c = [
            constraint("zone", ConstraintOperator::Like, Some("us-.*")),
            constraint("zone", ConstraintOperator::Unlike, Some("us")),
        ];
        let rules = compile(&c).expect("valid");
        assert!(rules[0].admits(Some("us-east")));
        assert!(!rules[0].admits(Some("eu-us-1")));
        assert!(!rules[0].admits(None));
        assert!(rules[1].admits(Some("us-east")));
        assert!(!rules[1].admits(Some("us")));
        assert!(rules[1].admits(None));
    }

    #[test]
    fn counting_rules_need_the_field() {
        let c = [
            constraint("rack", ConstraintOperator::Unique, None),
            constraint("rack", ConstraintOperator::Cluster, Some("r1")),
        ];
        let rules = compile(&c).expect("valid");
        assert!(rules[0].counts_instances() && rules[0].admits(Some("r9")) && !rules[0].admits(None));
        assert!(!rules[1].counts_instances() && rules[1].admits(Some("r1")) && !rules[1].admits(Some("r2")));
    }

    #[test]
    fn bad_arguments_are_named() {
        for (c, needle) in [
            (constraint("zone", ConstraintOperator::Like, Some("(")), "not a valid regular expression"),
            (constraint("zone", ConstraintOperator::Unlike, None), "needs a regular expression"),
            (constraint("zone", ConstraintOperator::MaxPer, Some("two")), "whole number, got `two`"),
            (constraint("zone", ConstraintOperator::MaxPer, None), "needs the maximum"),
            (constraint("zone", ConstraintOperator::GroupBy, Some("x")), "whole number"),
        ] {
            let err = compile(std::slice::from_ref(&c)).expect_err("invalid");
            assert!(err.contains(needle) && err.contains(&c.to_string()), "{err}");
        }
    }

    #[test]
    fn hostname_is_not_an_attribute() {
        let attributes = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        assert_eq!(field_value("hostname", "h1", &attributes), Some("h1"));
        assert_eq!(field_value("zone", "h1", &attributes), Some("a"));
        assert_eq!(field_value("rack", "h1", &attributes), None);
    }
}
