//! Reading workload files (apps and jobs) from TOML or JSON, with errors that name file, line and column.

use crate::app::AppDefinition;
use crate::error::ValidationError;
use crate::job::JobDefinition;
use std::path::Path;

/// A workload file that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a valid definition; `line` and `column` are 1-based.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// Line of the fault.
        line: usize,
        /// Column of the fault.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The definition parsed but is invalid.
    #[error("{path}:{line}:{column}: {}: {}", .error.field, .error.message)]
    Invalid {
        /// The file.
        path: String,
        /// Line of the offending key (1 when unknown).
        line: usize,
        /// Column of the offending key.
        column: usize,
        /// The field and reason.
        error: ValidationError,
    },
}

/// Reads and validates an app definition from a `.toml` or `.json` file.
pub fn read_app_file(path: &Path) -> Result<AppDefinition, WorkloadError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io { path: display.clone(), source })?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_app(&display, &text, is_json)
}

/// Parses and validates an app definition from text; `name` is used in errors.
pub fn parse_app(name: &str, text: &str, is_json: bool) -> Result<AppDefinition, WorkloadError> {
    let app: AppDefinition = parse_text(name, text, is_json)?;
    app.validate().map_err(|error| {
        let (line, column) = locate_field(text, &error.field);
        WorkloadError::Invalid { path: name.to_string(), line, column, error }
    })?;
    Ok(app)
}

/// Reads and validates a job definition from a `.toml` or `.json` file.
pub fn read_job_file(path: &Path) -> Result<JobDefinition, WorkloadError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io { path: display.clone(), source })?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_job(&display, &text, is_json)
}

/// Parses and validates a job definition from text; `name` is used in errors.
pub fn parse_job(name: &str, text: &str, is_json: bool) -> Result<JobDefinition, WorkloadError> {
    let job: JobDefinition = parse_text(name, text, is_json)?;
    job.validate().map_err(|error| {
        let (line, column) = locate_field(text, &error.field);
        WorkloadError::Invalid { path: name.to_string(), line, column, error }
    })?;
    Ok(job)
}

fn parse_text<T: serde::de::DeserializeOwned>(name: &str, text: &str, is_json: bool) -> Result<T, WorkloadError> {
    Ok(if is_json {
        serde_json::from_str(text).map_err(|e| WorkloadError::Syntax {
            path: name.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        })?
    } else {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            WorkloadError::Syntax { path: name.to_string(), line, column, message: e.message().trim().to_string() }
        })?
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, column)
}

/// Best-effort position of a field path such as `health_checks[0].port_name`: the first line
/// where its last key is assigned (TOML `key =`, JSON `"key":`), else the section header.
fn locate_field(text: &str, field: &str) -> (usize, usize) {
    let last = field.rsplit('.').next().unwrap_or(field);
    let key = last.split('[').next().unwrap_or(last);
    let first = field.split(['.', '[']).next().unwrap_or(field);
    for candidate in [key, first] {
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let toml_key = trimmed.strip_prefix(candidate).is_some_and(|rest| rest.trim_start().starts_with('='));
            let json_key = trimmed.starts_with(&format!("\"{candidate}\""));
            let header =
                trimmed.starts_with(&format!("[[{candidate}]]")) || trimmed.starts_with(&format!("[{candidate}]"));
            if toml_key || json_key || header {
                return (i + 1, indent + 1);
            }
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = "id = \"web\"\ncmd = \"true\"\ninstanses = 3\n";
        let err = parse_app("web.toml", text, false).expect_err("unknown key");
        let WorkloadError::Syntax { line, column, message, .. } = &err else { panic!("{err}") };
        assert_eq!((*line, *column), (3, 1), "{err}");
        assert!(message.contains("instanses"), "{message}");
        assert!(err.to_string().starts_with("web.toml:3:1:"), "{err}");
    }

    #[test]
    fn invalid_value_points_at_its_key() {
        let text = "id = \"web\"\ncmd = \"true\"\n\n[[health_checks]]\nprotocol = \"HTTP\"\nport_name = \"nope\"\n\n[[ports]]\nname = \"http\"\n";
        let err = parse_app("web.toml", text, false).expect_err("bad port name");
        assert_eq!(err.to_string(), "web.toml:6:1: health_checks[0].port_name: no port named `nope` in `ports`");
    }

    #[test]
    fn json_wrong_type_names_line() {
        let text = "{\n  \"id\": \"web\",\n  \"cmd\": \"true\",\n  \"instances\": \"three\"\n}";
        let err = parse_app("web.json", text, true).expect_err("wrong type");
        let WorkloadError::Syntax { line, .. } = &err else { panic!("{err}") };
        assert_eq!(*line, 4, "{err}");
    }

    #[test]
    fn job_errors_name_line_and_column() {
        let text = "id = \"nightly\"\n\n[run]\ncmd = \"true\"\n\n[[schedules]]\ncron = \"61 * * * *\"\n";
        let err = parse_job("nightly.toml", text, false).expect_err("bad minute");
        assert!(err.to_string().starts_with("nightly.toml:7:1: schedules[0].cron:"), "{err}");
        let err = parse_job("nightly.toml", &text.replace("cmd", "cmdd"), false).expect_err("unknown key");
        let WorkloadError::Syntax { line, .. } = &err else { panic!("{err}") };
        assert_eq!(*line, 4, "{err}");
        let job = parse_job("n.json", r#"{"id":"n","run":{"cmd":"true","restart_policy":"ON_FAILURE"}}"#, true)
            .expect("valid JSON job");
        assert_eq!(job.run.restart_policy, crate::job::RestartPolicy::OnFailure);
    }

    #[test]
    fn constraints_parse_marathon_style() {
        let text = "id = \"web\"\ncmd = \"true\"\nconstraints = [[\"hostname\", \"UNIQUE\"], [\"zone\", \"MAX_PER\", \"2\"]]\n";
        let app = parse_app("web.toml", text, false).expect("valid");
        assert_eq!(app.constraints.len(), 2);
        let err =
            parse_app("web.toml", &text.replace("MAX_PER\", \"2", "MAX_PER\", \"x"), false).expect_err("bad value");
        assert!(err.to_string().contains("constraints[1]"), "{err}");
        let err = parse_app("web.toml", &text.replace("UNIQUE", "UNIQ"), false).expect_err("bad op");
        assert!(err.to_string().contains("unknown constraint operator `UNIQ`"), "{err}");
    }

    #[test]
    fn container_mistakes_name_file_line_and_column() {
        let text = "id = \"web\"\n\n[container]\nimage = \"Team/Web\"\n";
        let error = parse_app("web.toml", text, false).expect_err("bad image");
        let message = error.to_string();
        assert!(message.starts_with("web.toml:4:1: container.image: "), "{message}");
        assert!(message.contains("lowercase"), "{message}");
        let text = "id = \"web\"\ncmd = \"x\"\n\n[[volumes]]\nhost_path = \"srv\"\ncontainer_path = \"/d\"\n";
        let message = parse_app("web.toml", text, false).expect_err("no container").to_string();
        assert!(message.starts_with("web.toml:4:"), "{message}");
        assert!(message.contains("add a `container` section"), "{message}");
        let text = "id = \"web\"\n[container]\nimage = \"web\"\nimgae = \"x\"\n";
        let message = parse_app("web.toml", text, false).expect_err("typo").to_string();
        assert!(message.starts_with("web.toml:"), "{message}");
        assert!(message.contains("imgae"), "{message}");
    }
}
