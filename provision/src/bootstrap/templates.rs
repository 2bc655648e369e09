//! The bootstrap's templates, embedded from `templates/` so the binary is self-contained, and
//! rendered with tera.

use super::BootstrapError;
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 6] = [
    ("master.env", include_str!("../../../templates/master.env")),
    ("agent.env", include_str!("../../../templates/agent.env")),
    ("master.args", include_str!("../../../templates/master.args")),
    ("agent.args", include_str!("../../../templates/agent.args")),
    ("gantry.service", include_str!("../../../templates/gantry.service")),
    ("supervise.sh", include_str!("../../../templates/supervise.sh")),
];

fn tera() -> Result<&'static tera::Tera, BootstrapError> {
    static TERA: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = tera::Tera::default();
        tera.add_raw_templates(TEMPLATES).map_err(|e| error_chain(&e))?;
        Ok(tera)
    })
    .as_ref()
    .map_err(|message| BootstrapError::Template { name: "templates", message: message.clone() })
}

/// Renders template `name` with `context`.
pub(crate) fn render(name: &'static str, context: &tera::Context) -> Result<String, BootstrapError> {
    tera()?.render(name, context).map_err(|e| BootstrapError::Template { name, message: error_chain(&e) })
}

/// The daemon's arguments (after the binary) for `role`, one per line of `<role>.args`, with
/// `${VAR}` references to its env file.
pub(crate) fn args(role: crate::cluster_file::Role, context: &tera::Context) -> Result<Vec<String>, BootstrapError> {
    let name = match role {
        crate::cluster_file::Role::Master => "master.args",
        crate::cluster_file::Role::Agent => "agent.args",
    };
    Ok(render(name, context)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
