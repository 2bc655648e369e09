//! The typed client's methods for the security API (see [`crate::security`] for the types).
//!
//! Routes: `GET /api/v1/tokens`, `POST /api/v1/tokens` ([`CreateToken`] → [`CreatedToken`]),
//! `GET /api/v1/tokens/{name}`, `DELETE /api/v1/tokens/{name}` (revokes);
//! `GET /api/v1/policies` (built-ins included), `GET|PUT|DELETE /api/v1/policies/{name}`
//! (a [`Policy`] as JSON); `GET /api/v1/secrets`, `GET|PUT|DELETE /api/v1/secrets/{name}`
//! ([`PutSecret`] → [`SecretInfo`]; a name may hold `/`, kept between encoded segments);
//! `GET /api/v1/whoami`; `GET /api/v1/snapshot` (secrets in it are sealed). No method here ever
//! receives a secret's value.
//!
//! The masters' group: `GET /api/v1/masters`; `POST /api/v1/masters` ([`AddMaster`] → the
//! members after) and `DELETE /api/v1/masters/{id}` (→ the members after), admin only.

use crate::client::{AddMaster, Client, ClientError, MasterInfo, encode};
use crate::security::{CreateToken, CreatedToken, Policy, PutSecret, SecretInfo, TokenInfo, Whoami};
use reqwest::Method;

impl Client {
    /// `GET /api/v1/tokens`: every token, without its secret.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/tokens", None::<&()>).await
    }

    /// `POST /api/v1/tokens`: the answer holds the token itself, which the master shows only
    /// this once.
    pub async fn create_token(&self, request: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.call(Method::POST, "/api/v1/tokens", Some(request)).await
    }

    /// `GET /api/v1/tokens/{name}`.
    pub async fn get_token(&self, name: &str) -> Result<TokenInfo, ClientError> {
        self.call(Method::GET, &format!("/api/v1/tokens/{}", encode(name)), None::<&()>).await
    }

    /// `DELETE /api/v1/tokens/{name}`: the token stops working at once.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/tokens/{}", encode(name)), None::<&()>).await
    }

    /// `GET /api/v1/policies`: the built-in policies and the cluster's own.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        self.call(Method::GET, "/api/v1/policies", None::<&()>).await
    }

    /// `GET /api/v1/policies/{name}`.
    pub async fn get_policy(&self, name: &str) -> Result<Policy, ClientError> {
        self.call(Method::GET, &format!("/api/v1/policies/{}", encode(name)), None::<&()>).await
    }

    /// `PUT /api/v1/policies/{name}` under `policy.name`: creates or replaces it.
    pub async fn put_policy(&self, policy: &Policy) -> Result<Policy, ClientError> {
        self.call(Method::PUT, &format!("/api/v1/policies/{}", encode(&policy.name)), Some(policy)).await
    }

    /// `DELETE /api/v1/policies/{name}`.
    pub async fn delete_policy(&self, name: &str) -> Result<Policy, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/policies/{}", encode(name)), None::<&()>).await
    }

    /// `GET /api/v1/secrets`: every secret's metadata.
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/secrets", None::<&()>).await
    }

    /// `GET /api/v1/secrets/{name}`: the metadata, never the value.
    pub async fn get_secret(&self, name: &str) -> Result<SecretInfo, ClientError> {
        self.call(Method::GET, &secret_path(name), None::<&()>).await
    }

    /// `PUT /api/v1/secrets/{name}`: stores `value` as the secret's next version.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<SecretInfo, ClientError> {
        self.call(Method::PUT, &secret_path(name), Some(&PutSecret { value: value.to_string() })).await
    }

    /// `DELETE /api/v1/secrets/{name}`: forgets every version.
    pub async fn delete_secret(&self, name: &str) -> Result<SecretInfo, ClientError> {
        self.call(Method::DELETE, &secret_path(name), None::<&()>).await
    }

    /// `GET /api/v1/snapshot`: the whole cluster state (admin only), as the master's JSON
    /// (read it with `gantry_master::snapshot`).
    pub async fn snapshot(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/api/v1/snapshot", None::<&()>).await
    }

    /// `GET /api/v1/masters`: the masters' group as the answering master sees it.
    pub async fn list_masters(&self) -> Result<Vec<MasterInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/masters", None::<&()>).await
    }

    /// `POST /api/v1/masters`: adds master `id`, serving at `address` (`host:port`), to the
    /// group (admin only). The master must be running and reachable from the leader; it joins
    /// as a learner and becomes a voter once it has caught up, which can take seconds. Calling
    /// again is safe: a voter at that address is left as it is, and a learner left by an
    /// interrupted call is promoted. Answers the members after the change; `409` when refused
    /// (the id or the address is another member's), `422` for a bad id or address, `503` when
    /// the new master did not catch up in time (call again to finish).
    pub async fn add_master(&self, id: u64, address: &str) -> Result<Vec<MasterInfo>, ClientError> {
        let request = AddMaster { id, address: address.to_string() };
        self.call(Method::POST, "/api/v1/masters", Some(&request)).await
    }

    /// `DELETE /api/v1/masters/{id}`: removes master `id` from the group (admin only); stop
    /// its process afterwards. Removing a master that is not a member changes nothing. Answers
    /// the members after the change; `409` when the removal would leave the group unable to
    /// commit (the last voter, no majority of answering masters) or `id` leads the group.
    pub async fn remove_master(&self, id: u64) -> Result<Vec<MasterInfo>, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/masters/{id}"), None::<&()>).await
    }

    /// `GET /api/v1/whoami`: the identity and policies the master sees for this client.
    pub async fn whoami(&self) -> Result<Whoami, ClientError> {
        self.call(Method::GET, "/api/v1/whoami", None::<&()>).await
    }
}

/// The path of the secret `name`: each `/`-separated segment encoded, the slashes kept.
fn secret_path(name: &str) -> String {
    let segments: Vec<String> = name.split('/').map(encode).collect();
    format!("/api/v1/secrets/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_keep_their_slashes_and_encode_each_segment() {
        assert_eq!(secret_path("db"), "/api/v1/secrets/db");
        assert_eq!(secret_path("team-a/db/password"), "/api/v1/secrets/team-a/db/password");
        assert_eq!(secret_path("a b/c?d"), "/api/v1/secrets/a%20b/c%3Fd");
        assert_eq!(secret_path("x%2Fy"), "/api/v1/secrets/x%252Fy");
    }
}
