//! The middleware in front of every route: it finds out who calls (an agent's or master's
//! certificate, or a bearer token), checks that against the route's [`Requirement`], hands the
//! [`Caller`] to the handler, filters lists down to what a token may read, and writes an audit
//! line for every write. Refusals are `401` (no or bad credentials) and `403` (naming the missing
//! capability) in the API's JSON error shape; a refused request changes nothing.

use super::access::{Requirement, required};
use crate::api::ApiFailure;
use crate::master::Master;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gantry_api::Millis;
use gantry_api::security::{Kind, Level, Policy};
use gantry_trust::Identity;
use gantry_trust::listener::Peer;
use gantry_trust::policy;
use std::sync::Arc;
use tracing::{info, warn};

/// Who a request comes from, as the middleware established it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A bearer token.
    Token {
        /// Its name.
        name: String,
        /// Its policies, resolved.
        policies: Vec<Policy>,
        /// When it expires.
        expires_at: Option<Millis>,
    },
    /// An agent's certificate.
    Agent(String),
    /// A master's certificate.
    Master(String),
}

impl Caller {
    /// How logs and errors name the caller.
    pub fn describe(&self) -> String {
        match self {
            Self::Token { name, .. } => format!("token {name}"),
            Self::Agent(id) => format!("agent {id}"),
            Self::Master(id) => format!("master {id}"),
        }
    }

    /// Refuses a definition that names secrets the caller may not read: whoever deploys a task
    /// that reads a secret could read the secret.
    pub fn may_read_secrets<'a>(&self, names: impl Iterator<Item = &'a String>) -> Result<(), ApiFailure> {
        for name in names {
            if !self.may(Kind::Secrets, Level::Read, Some(name)) {
                return Err(forbidden(format!(
                    "{} may not read secrets `{name}`, so it may not deploy a task that reads it",
                    self.describe()
                )));
            }
        }
        Ok(())
    }

    /// Whether the caller may do `level` on `kind` for `id`.
    pub fn may(&self, kind: Kind, level: Level, id: Option<&str>) -> bool {
        match self {
            Self::Token { policies, .. } => policy::allows(policies, kind, level, id),
            _ => false,
        }
    }
}

fn unauthorized(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(StatusCode::UNAUTHORIZED, message)
}

fn forbidden(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(StatusCode::FORBIDDEN, message)
}

/// Establishes the caller from the request's token or its connection's certificate.
pub fn identify(master: &Master, peer: Option<&Peer>, headers: &HeaderMap) -> Result<Caller, ApiFailure> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let hash = gantry_trust::token::api_token_hash(token).map_err(|e| unauthorized(e.to_string()))?;
        let records = master.security().records();
        let record =
            records.token_by_hash(&hash).ok_or_else(|| unauthorized("the token is not valid: unknown or revoked"))?;
        if let Some(expires_at) = record.expires_at
            && expires_at <= gantry_api::now_millis()
        {
            return Err(unauthorized(format!("token {} expired at {}", record.name, format_millis(expires_at))));
        }
        let policies = record.policies.iter().filter_map(|name| records.policy(name)).collect();
        return Ok(Caller::Token { name: record.name.clone(), policies, expires_at: record.expires_at });
    }
    match peer.and_then(|p| p.identity.clone()) {
        Some(Identity::Agent(id)) => {
            if master.security().records().agent_revoked(&id) {
                return Err(unauthorized(format!(
                    "the certificate of agent {id} was revoked: the agent must join again with the join token"
                )));
            }
            Ok(Caller::Agent(id))
        }
        Some(Identity::Master(id)) => Ok(Caller::Master(id)),
        Some(Identity::User(name)) => Err(unauthorized(format!(
            "user certificates (user:{name}) are not accepted yet: use a token (--token or GANTRY_TOKEN)"
        ))),
        None => Err(unauthorized(
            "no credentials: send a bearer token (gantry's --token or GANTRY_TOKEN) or a client certificate of the cluster CA",
        )),
    }
}

/// Whether `caller` meets `requirement`; `Ok(Some(..))` asks for a list to be filtered.
pub fn check(caller: &Caller, requirement: &Requirement) -> Result<Option<(Kind, &'static str)>, ApiFailure> {
    match (requirement, caller) {
        (Requirement::Public | Requirement::Authenticated, _) => Ok(None),
        (Requirement::AnyAgent, Caller::Agent(_)) => Ok(None),
        (Requirement::Agent(id), Caller::Agent(agent)) if agent == id => Ok(None),
        (Requirement::Agent(id), Caller::Agent(agent)) => {
            Err(forbidden(format!("agent {agent} may not act for agent {id}")))
        }
        (Requirement::AnyAgent | Requirement::Agent(_), other) => Err(forbidden(format!(
            "{} may not call the agent protocol: it takes an agent's certificate",
            other.describe()
        ))),
        (Requirement::Admin, Caller::Token { policies, .. }) => {
            match Kind::ALL.into_iter().find(|kind| !policy::allows(policies, *kind, Level::Write, None)) {
                None => Ok(None),
                Some(kind) => Err(forbidden(format!(
                    "{} is not an admin: it may not write {kind}, and this takes a token that may write everything",
                    caller.describe()
                ))),
            }
        }
        (
            Requirement::Api { .. } | Requirement::List { .. } | Requirement::Admin,
            Caller::Agent(_) | Caller::Master(_),
        ) => Err(forbidden(format!(
            "{} may not call the API: agent and master certificates serve the agent protocol only",
            caller.describe()
        ))),
        (Requirement::Api { kind, level, id }, Caller::Token { policies, .. }) => {
            if policy::allows(policies, *kind, *level, id.as_deref()) {
                return Ok(None);
            }
            let object = id.as_ref().map(|id| format!(" `{id}`")).unwrap_or_default();
            Err(forbidden(format!("{} may not {level} {kind}{object}", caller.describe())))
        }
        (Requirement::List { kind, field }, Caller::Token { policies, .. }) => {
            if policy::allows(policies, *kind, Level::Read, None) {
                Ok(None)
            } else if policy::allows_some(policies, *kind, Level::Read) {
                Ok(Some((*kind, field)))
            } else {
                Err(forbidden(format!("{} may not read {kind}", caller.describe())))
            }
        }
    }
}

/// The middleware; see the module docs.
pub async fn authorize(State(master): State<Arc<Master>>, mut request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let requirement = by_app(&master, required(&method, &path));
    if requirement == Requirement::Public {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.clone());
    let outcome = identify(&master, peer.as_ref(), request.headers())
        .and_then(|caller| check(&caller, &requirement).map(|filter| (caller, filter)));
    let (caller, filter) = match outcome {
        Ok(found) => found,
        Err(failure) => {
            warn!(
                target: "gantry::audit",
                method, route = %path, peer = ?peer.as_ref().map(|p| p.addr), status = failure.status.as_u16(),
                reason = %failure.error.message, "Request refused."
            );
            return failure.into_response();
        }
    };
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if !matches!(method.as_str(), "GET" | "HEAD") {
        let object = match &requirement {
            Requirement::Api { id, .. } => id.clone(),
            _ => None,
        };
        info!(
            target: "gantry::audit",
            caller = %caller.describe(), method, route = %path, object = object.as_deref().unwrap_or("-"),
            status = response.status().as_u16(), "API write."
        );
    }
    match filter {
        Some((kind, field)) if response.status().is_success() => filter_list(response, &caller, kind, field).await,
        _ => response,
    }
}

/// A deployment is authorised by the id of the app it rolls out, so per-prefix policies on
/// `deployments` mean the same apps as on `apps`. An unknown deployment keeps its own id (the
/// handler answers 404).
fn by_app(master: &Master, requirement: Requirement) -> Requirement {
    match requirement {
        Requirement::Api { kind: Kind::Deployments, level, id: Some(id) } => {
            let app = crate::api::deployments::app_of(&master.lock(), &id);
            Requirement::Api { kind: Kind::Deployments, level, id: Some(app.unwrap_or(id)) }
        }
        other => other,
    }
}

/// Keeps the elements of a JSON array answer that `caller` may read.
async fn filter_list(response: Response, caller: &Caller, kind: Kind, field: &str) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "could not read the answer to filter it")
            .into_response();
    };
    let Ok(mut items) = serde_json::from_slice::<Vec<serde_json::Value>>(&bytes) else {
        return ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "the answer to filter is not a list")
            .into_response();
    };
    items.retain(|item| {
        item.get(field).and_then(|v| v.as_str()).is_some_and(|id| caller.may(kind, Level::Read, Some(id)))
    });
    let body = serde_json::to_vec(&items).unwrap_or_default();
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn format_millis(millis: Millis) -> String {
    let secs = i64::try_from(millis / 1000).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_else(|_| format!("{millis} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(policies: &[&str]) -> Caller {
        Caller::Token {
            name: "ci".to_string(),
            policies: policies.iter().filter_map(|p| policy::builtin(p)).collect(),
            expires_at: None,
        }
    }

    #[test]
    fn refusals_name_the_missing_capability() {
        let read_only = token(&["read-only"]);
        let write = Requirement::Api { kind: Kind::Apps, level: Level::Write, id: Some("web".into()) };
        let err = check(&read_only, &write).expect_err("read-only writes");
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.error.message, "token ci may not write apps `web`");
        assert!(check(&token(&["deployer"]), &write).is_ok());
        let agent = Caller::Agent("a1".into());
        assert_eq!(check(&agent, &write).expect_err("agent as admin").status, StatusCode::FORBIDDEN);
        assert!(check(&agent, &Requirement::Agent("a1".into())).is_ok());
        let err = check(&agent, &Requirement::Agent("b2".into())).expect_err("a for b");
        assert_eq!(err.error.message, "agent a1 may not act for agent b2");
        assert!(check(&token(&["admin"]), &Requirement::AnyAgent).is_err());
    }

    #[test]
    fn only_a_token_that_may_write_everything_is_an_admin() {
        assert!(check(&token(&["admin"]), &Requirement::Admin).is_ok());
        let err = check(&token(&["deployer", "read-only"]), &Requirement::Admin).expect_err("deployer");
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert!(err.error.message.contains("is not an admin: it may not write logs"), "{}", err.error.message);
        assert!(check(&Caller::Master("m2".into()), &Requirement::Admin).is_err());
    }

    #[test]
    fn lists_are_filtered_only_for_prefix_grants() {
        let list = Requirement::List { kind: Kind::Apps, field: "id" };
        assert_eq!(check(&token(&["admin"]), &list).expect("admin"), None);
        let team = Caller::Token {
            name: "team".into(),
            policies: vec![
                policy::parse_toml("name = \"t\"\n[rules]\napps = { \"team-a-\" = \"read\" }\n", "t.toml")
                    .expect("policy"),
            ],
            expires_at: None,
        };
        assert_eq!(check(&team, &list).expect("team"), Some((Kind::Apps, "id")));
        assert!(team.may(Kind::Apps, Level::Read, Some("team-a-web")));
        assert!(!team.may(Kind::Apps, Level::Read, Some("team-b-web")));
        assert!(check(&team, &Requirement::List { kind: Kind::Jobs, field: "id" }).is_err());
    }
}
