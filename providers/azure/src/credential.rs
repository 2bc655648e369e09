//! Where the provider's bearer tokens come from: the standard Azure credential chain of
//! `azure_identity` (a service principal from AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/
//! AZURE_TENANT_ID, a workload or managed identity, the Azure CLI's login; or the one kind
//! `AZURE_CREDENTIAL_KIND` names), or, with `GANTRY_AZURE_CREDENTIALS=lab`, a fixed token that
//! only the cloud lab accepts.

use azure_core::auth::{AccessToken, TokenCredential};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The environment variable that selects the lab's fake credentials (value `lab`).
pub const LAB_ENV: &str = "GANTRY_AZURE_CREDENTIALS";

/// The credentials the chain tries, in order; named in credential errors.
pub const CHAIN: &str = "the environment (AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or a certificate, and \
AZURE_TENANT_ID), a workload identity (AZURE_FEDERATED_TOKEN_FILE), a managed identity (App Service, Azure VM) \
and the Azure CLI (`az login`)";

/// The credential to use: the lab's when [`LAB_ENV`] says `lab`, else the standard chain.
pub fn from_env() -> azure_core::Result<Arc<dyn TokenCredential>> {
    if std::env::var(LAB_ENV).is_ok_and(|v| v == "lab") {
        return Ok(Arc::new(LabToken));
    }
    azure_identity::create_credential()
}

/// A fixed bearer token for the cloud lab, which accepts any token. Never sent elsewhere: it
/// is only chosen by [`LAB_ENV`], which the lab exports.
#[derive(Debug, Clone, Copy)]
pub struct LabToken;

impl TokenCredential for LabToken {
    fn get_token<'a, 'b, 'c, 'f>(
        &'a self,
        _scopes: &'b [&'c str],
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Box::pin(async {
            let expires = azure_core::date::parse_rfc3339("2999-01-01T00:00:00Z")?;
            Ok(AccessToken::new("gantry-lab", expires))
        })
    }

    fn clear_cache<'a, 'f>(&'a self) -> Pin<Box<dyn Future<Output = azure_core::Result<()>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lab_token_is_a_fixed_far_future_bearer_token() {
        let token = LabToken.get_token(&["http://127.0.0.1:1/.default"]).await.expect("a token");
        assert_eq!(token.token.secret(), "gantry-lab");
        assert!(token.expires_on > azure_core::date::parse_rfc3339("2100-01-01T00:00:00Z").expect("date"));
    }
}
