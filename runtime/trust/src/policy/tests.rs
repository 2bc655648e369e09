//! Tests of policy parsing, validation and evaluation.
use super::*;

fn prefixes(entries: &[(&str, Level)]) -> Rule {
    Rule::Prefixes(entries.iter().map(|(p, l)| ((*p).to_owned(), *l)).collect())
}

fn policy(rules: &[(Kind, Rule)]) -> Policy {
    Policy { name: "test".to_owned(), description: None, rules: rules.iter().cloned().collect() }
}

#[test]
fn the_longest_matching_prefix_decides() {
    let p = policy(&[(
        Kind::Apps,
        prefixes(&[("", Level::Read), ("team-a-", Level::Write), ("team-a-secret-", Level::Deny)]),
    )]);
    assert_eq!(p.level(Kind::Apps, Some("web")), Level::Read);
    assert_eq!(p.level(Kind::Apps, Some("team-a-web")), Level::Write);
    assert_eq!(p.level(Kind::Apps, Some("team-a-secret-db")), Level::Deny);
    assert_eq!(p.level(Kind::Apps, None), Level::Read, "no id: the \"\" prefix");
    assert_eq!(p.most(Kind::Apps), Level::Write);
}

#[test]
fn prefixes_without_a_catch_all_deny_other_ids() {
    let p = policy(&[(Kind::Jobs, prefixes(&[("batch-", Level::Write)]))]);
    assert_eq!(p.level(Kind::Jobs, Some("batch-1")), Level::Write);
    assert_eq!(p.level(Kind::Jobs, Some("web")), Level::Deny);
    assert_eq!(p.level(Kind::Jobs, None), Level::Deny);
    assert!(allows_some(std::slice::from_ref(&p), Kind::Jobs, Level::Write));
    assert!(!allows(&[p], Kind::Jobs, Level::Read, None));
}

#[test]
fn kinds_without_a_rule_are_denied() {
    let p = policy(&[(Kind::Apps, Rule::Level(Level::Write))]);
    assert_eq!(p.level(Kind::Secrets, Some("db")), Level::Deny);
    assert_eq!(p.most(Kind::Secrets), Level::Deny);
    assert!(!allows(std::slice::from_ref(&p), Kind::Secrets, Level::Read, Some("db")));
    assert!(!allows(&[], Kind::Apps, Level::Read, None));
    assert!(allows(&[], Kind::Apps, Level::Deny, None), "asking for nothing is allowed");
    assert!(!allows_some(&[p], Kind::Secrets, Level::Read));
}

#[test]
fn policies_are_a_union_of_grants() {
    let reader = policy(&[(Kind::Apps, Rule::Level(Level::Read))]);
    let team = policy(&[(Kind::Apps, prefixes(&[("team-a-", Level::Write)]))]);
    let both = [reader, team];
    assert!(allows(&both, Kind::Apps, Level::Write, Some("team-a-web")));
    assert!(allows(&both, Kind::Apps, Level::Read, Some("web")));
    assert!(!allows(&both, Kind::Apps, Level::Write, Some("web")));
    assert!(!allows(&both, Kind::Apps, Level::Write, None));
}

#[test]
fn builtins_grant_what_they_say() {
    assert_eq!(builtins().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), BUILTIN);
    let admin = builtin("admin").expect("admin");
    assert!(Kind::ALL.iter().all(|k| admin.level(*k, Some("x")) == Level::Write));

    let deployer = [builtin("deployer").expect("deployer")];
    for kind in [Kind::Apps, Kind::Jobs, Kind::Deployments, Kind::Tasks] {
        assert!(allows(&deployer, kind, Level::Write, Some("x")), "{kind}");
    }
    for kind in [Kind::Logs, Kind::Agents] {
        assert!(allows(&deployer, kind, Level::Read, None) && !allows(&deployer, kind, Level::Write, None));
    }
    for kind in [Kind::Secrets, Kind::Tokens, Kind::Policies] {
        assert!(!allows_some(&deployer, kind, Level::Read), "{kind}");
    }

    let read_only = [builtin("read-only").expect("read-only")];
    for kind in Kind::ALL {
        assert!(!allows_some(&read_only, kind, Level::Write), "{kind}");
        let readable = !matches!(kind, Kind::Secrets | Kind::Tokens);
        assert_eq!(allows(&read_only, kind, Level::Read, Some("x")), readable, "{kind}");
    }

    assert!(builtin("root").is_none());
    for p in builtins() {
        validate(&p).expect("built-ins are valid");
        assert!(p.description.is_some());
    }
}

#[test]
fn toml_takes_both_rule_shapes() {
    let text = r#"
name = "team-a"
description = "Team A's workloads."

[rules]
apps = { "team-a-" = "write", "" = "read" }
logs = "read"

[rules.jobs]
"team-a-" = "write"
"#;
    let p = parse_toml(text, "team-a.toml").expect("parses");
    assert_eq!(p.description.as_deref(), Some("Team A's workloads."));
    assert_eq!(p.rules[&Kind::Apps], prefixes(&[("", Level::Read), ("team-a-", Level::Write)]));
    assert_eq!(p.rules[&Kind::Logs], Rule::Level(Level::Read));
    assert_eq!(p.rules[&Kind::Jobs], prefixes(&[("team-a-", Level::Write)]));
    assert_eq!(p.level(Kind::Apps, Some("team-a-web")), Level::Write);

    let written = toml::to_string(&p).expect("serializes");
    assert_eq!(parse_toml(&written, "written.toml").expect("reparses"), p);
}

#[test]
fn toml_errors_name_file_line_and_column() {
    let text = "name = \"deployer\"\n[rules]\napss = \"write\"\n";
    let err = parse_toml(text, "deployer.toml").expect_err("unknown kind");
    let shown = err.to_string();
    assert!(shown.starts_with("deployer.toml:3:1: unknown variant `apss`"), "{shown}");
    assert!(shown.contains("expected one of `apps`"), "{shown}");

    let text = "name = \"deployer\"\n\n[rules]\napps = \"wirte\"\n";
    let shown = parse_toml(text, "d.toml").expect_err("bad level").to_string();
    assert!(shown.starts_with("d.toml:4:"), "{shown}");
    assert!(shown.contains("use deny, read or write"), "{shown}");

    let text = "name = \"x\"\n[rules]\napps = { \"a-\" = \"all\" }\n";
    let shown = parse_toml(text, "x.toml").expect_err("bad level in a prefix table").to_string();
    assert!(shown.starts_with("x.toml:3:"), "{shown}");
    assert!(shown.contains("use deny, read or write"), "{shown}");

    let text = "name = \"x\"\ncolour = \"red\"\n";
    let shown = parse_toml(text, "x.toml").expect_err("unknown field").to_string();
    assert!(shown.starts_with("x.toml:2:1: unknown field `colour`"), "{shown}");
}

#[test]
fn parsing_validates() {
    let err = parse_toml("name = \"Admin!\"\n", "a.toml").expect_err("bad name");
    assert!(err.to_string().starts_with("a.toml: invalid policy name `Admin!`"), "{err}");
    let PolicyError::InFile { source, .. } = err else { panic!("not in a file: {err}") };
    assert!(matches!(*source, PolicyError::InvalidName { .. }), "{source}");
    let err = parse_json(r#"{"name": "ok", "rules": {"apps": {"a\u0007": "read"}}}"#).expect_err("bad prefix");
    assert!(matches!(err, PolicyError::InvalidPrefix { kind: Kind::Apps, .. }), "{err}");
    let long = "a".repeat(254);
    let err = parse_json(&format!(r#"{{"name": "ok", "rules": {{"apps": {{"{long}": "read"}}}}}}"#));
    assert!(matches!(err, Err(PolicyError::InvalidPrefix { .. })));
}

#[test]
fn names_are_checked() {
    for good in ["admin", "read-only", "team_a", "0day", &"a".repeat(64)] {
        validate_name(good).expect(good);
    }
    for bad in ["", "-a", "_a", "Admin", "a b", "a.b", "é", &"a".repeat(65)] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_round_trips() {
    let p = Policy {
        name: "team-a".to_owned(),
        description: None,
        rules: [
            (Kind::Apps, prefixes(&[("", Level::Read), ("team-a-", Level::Write)])),
            (Kind::Secrets, Rule::Level(Level::Deny)),
        ]
        .into_iter()
        .collect(),
    };
    let json = serde_json::to_string(&p).expect("serializes");
    assert_eq!(json, r#"{"name":"team-a","rules":{"apps":{"":"read","team-a-":"write"},"secrets":"deny"}}"#);
    assert_eq!(parse_json(&json).expect("parses"), p);
    for b in builtins() {
        assert_eq!(parse_json(&serde_json::to_string(&b).expect("serializes")).expect("parses"), b);
    }
    let err = parse_json(r#"{"name": "x", "rules": {"apps": "everything"}}"#).expect_err("bad level");
    assert!(err.to_string().starts_with("line 1, column "), "{err}");
    assert!(err.to_string().contains("use deny, read or write"), "{err}");
}

#[test]
fn levels_and_kinds_read_and_print_as_written() {
    assert!(Level::Deny < Level::Read && Level::Read < Level::Write);
    for level in [Level::Deny, Level::Read, Level::Write] {
        assert_eq!(level.to_string().parse::<Level>().expect("parses"), level);
    }
    for kind in Kind::ALL {
        assert_eq!(kind.to_string().parse::<Kind>().expect("parses"), kind);
        assert_eq!(serde_json::to_string(&kind).expect("serializes"), format!("\"{kind}\""));
    }
    assert!("admin".parse::<Level>().is_err());
    assert!("app".parse::<Kind>().is_err());
}
