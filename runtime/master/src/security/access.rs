//! Which credential each route needs: a pure function of the method and the path, so the whole
//! table is read in one place and tested without a server.

use gantry_api::protocol::PREFIX;
use gantry_api::security::{Kind, Level};

/// What a request must show to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: reveals nothing sensitive (`/health`, `/version`, the CA certificate, and the
    /// join exchange, which checks the join token itself).
    Public,
    /// Any valid credential (`/api/v1/whoami`, routes that do not exist).
    Authenticated,
    /// The certificate of any agent (registration: the body's id is checked by the handler).
    AnyAgent,
    /// The certificate of this agent.
    Agent(String),
    /// A token that may write every kind of resource (the built-in `admin` policy, or one as
    /// broad): for what holds everything, such as a snapshot of the whole state.
    Admin,
    /// A token whose policies grant `level` on `kind` for the object `id` (`None`: not about
    /// one object, so the policy's default for the kind decides).
    Api {
        /// The resource kind.
        kind: Kind,
        /// The level needed.
        level: Level,
        /// The object, when the path names one.
        id: Option<String>,
    },
    /// A list: served to a token with read access to some of `kind`; the answer keeps only the
    /// objects it may read (`field` names the id each element carries).
    List {
        /// The resource kind.
        kind: Kind,
        /// The JSON field of each element that the policy's prefixes apply to.
        field: &'static str,
    },
}

/// The requirement of `method` on `path` (no query string).
pub fn required(method: &str, path: &str) -> Requirement {
    let read = matches!(method, "GET" | "HEAD");
    let level = if read { Level::Read } else { Level::Write };
    if matches!(path, "/health" | "/version" | "/internal/v1/ca" | "/internal/v1/join") {
        return Requirement::Public;
    }
    if let Some(rest) = path.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')) {
        return match rest.split_once('/') {
            None if rest == "register" => Requirement::AnyAgent,
            Some((id, _)) if !id.is_empty() => Requirement::Agent(decode(id)),
            _ => Requirement::Authenticated,
        };
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Requirement::Authenticated;
    };
    let mut segments = rest.splitn(2, '/');
    let resource = segments.next().unwrap_or_default();
    let tail = segments.next().filter(|t| !t.is_empty());
    let (kind, field) = match resource {
        "apps" => (Kind::Apps, "id"),
        "jobs" => (Kind::Jobs, "id"),
        "tasks" => (Kind::Tasks, "app_id"),
        "agents" => (Kind::Agents, "id"),
        "deployments" => (Kind::Deployments, "app_id"),
        "tokens" => (Kind::Tokens, "name"),
        "policies" => (Kind::Policies, "name"),
        "secrets" => (Kind::Secrets, "name"),
        "events" => return Requirement::Api { kind: Kind::Tasks, level: Level::Read, id: None },
        "snapshot" => return Requirement::Admin,
        // Who the masters are and who leads: nothing sensitive, for any valid credential;
        // changing who they are decides where the whole state lives: admin only.
        "masters" if read => return Requirement::Authenticated,
        "masters" => return Requirement::Admin,
        _ => return Requirement::Authenticated,
    };
    let Some(tail) = tail else {
        return if read { Requirement::List { kind, field } } else { Requirement::Api { kind, level, id: None } };
    };
    // Secret names hold slashes; every other resource's id is one segment.
    let (id, action) = match kind {
        Kind::Secrets => (tail, None),
        _ => match tail.split_once('/') {
            Some((id, action)) => (id, Some(action)),
            None => (tail, None),
        },
    };
    let id = Some(decode(id));
    match (kind, action) {
        (Kind::Tasks, Some("logs")) => Requirement::Api { kind: Kind::Logs, level: Level::Read, id },
        (Kind::Apps, Some("versions")) => Requirement::Api { kind, level: Level::Read, id },
        // Draining (POST) or cancelling a drain (DELETE) moves workloads off an agent: the
        // agents' write level, as removing one (DELETE /api/v1/agents/{id}); reading it, read.
        (Kind::Agents, Some("drain")) => Requirement::Api { kind, level, id },
        // An agent's image cache: listing it reads the agent, pruning it (POST .../images/prune)
        // changes the agent, as a drain does.
        (Kind::Agents, Some("images" | "images/prune")) => Requirement::Api { kind, level, id },
        _ => Requirement::Api { kind, level, id },
    }
}

/// A path segment, percent-decoded (an undecodable one stays as it is).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8().map_or_else(|_| segment.to_string(), |s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(kind: Kind, level: Level, id: Option<&str>) -> Requirement {
        Requirement::Api { kind, level, id: id.map(str::to_string) }
    }

    #[test]
    fn every_route_has_the_requirement_of_its_resource() {
        let cases = [
            ("GET", "/health", Requirement::Public),
            ("GET", "/version", Requirement::Public),
            ("GET", "/internal/v1/ca", Requirement::Public),
            ("POST", "/internal/v1/join", Requirement::Public),
            ("POST", "/internal/v1/agents/register", Requirement::AnyAgent),
            ("GET", "/internal/v1/agents/a1/commands", Requirement::Agent("a1".into())),
            ("POST", "/internal/v1/agents/a1/status", Requirement::Agent("a1".into())),
            ("GET", "/api/v1/apps", Requirement::List { kind: Kind::Apps, field: "id" }),
            ("POST", "/api/v1/apps", api(Kind::Apps, Level::Write, None)),
            ("PUT", "/api/v1/apps/web", api(Kind::Apps, Level::Write, Some("web"))),
            ("GET", "/api/v1/apps/web/versions", api(Kind::Apps, Level::Read, Some("web"))),
            ("POST", "/api/v1/apps/web/scale", api(Kind::Apps, Level::Write, Some("web"))),
            ("GET", "/api/v1/tasks", Requirement::List { kind: Kind::Tasks, field: "app_id" }),
            ("POST", "/api/v1/tasks/web.1/kill", api(Kind::Tasks, Level::Write, Some("web.1"))),
            ("GET", "/api/v1/tasks/web.1/logs", api(Kind::Logs, Level::Read, Some("web.1"))),
            ("POST", "/api/v1/jobs/nightly/runs", api(Kind::Jobs, Level::Write, Some("nightly"))),
            ("GET", "/api/v1/agents/a1", api(Kind::Agents, Level::Read, Some("a1"))),
            ("DELETE", "/api/v1/agents/a1", api(Kind::Agents, Level::Write, Some("a1"))),
            ("POST", "/api/v1/agents/a1/drain", api(Kind::Agents, Level::Write, Some("a1"))),
            ("DELETE", "/api/v1/agents/a1/drain", api(Kind::Agents, Level::Write, Some("a1"))),
            ("GET", "/api/v1/agents/a1/drain", api(Kind::Agents, Level::Read, Some("a1"))),
            ("GET", "/api/v1/agents/a1/images", api(Kind::Agents, Level::Read, Some("a1"))),
            ("POST", "/api/v1/agents/a1/images/prune", api(Kind::Agents, Level::Write, Some("a1"))),
            ("GET", "/api/v1/events", api(Kind::Tasks, Level::Read, None)),
            ("PUT", "/api/v1/secrets/db/password", api(Kind::Secrets, Level::Write, Some("db/password"))),
            ("DELETE", "/api/v1/tokens/ci", api(Kind::Tokens, Level::Write, Some("ci"))),
            ("PUT", "/api/v1/policies/team-a", api(Kind::Policies, Level::Write, Some("team-a"))),
            ("GET", "/api/v1/whoami", Requirement::Authenticated),
            ("GET", "/api/v1/snapshot", Requirement::Admin),
            ("GET", "/api/v1/masters", Requirement::Authenticated),
            ("POST", "/api/v1/masters", Requirement::Admin),
            ("DELETE", "/api/v1/masters/4", Requirement::Admin),
            ("GET", "/nowhere", Requirement::Authenticated),
            ("GET", "/api/v1/apps/te%2Dam", api(Kind::Apps, Level::Read, Some("te-am"))),
        ];
        for (method, path, expected) in cases {
            assert_eq!(required(method, path), expected, "{method} {path}");
        }
    }
}
