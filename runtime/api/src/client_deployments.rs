//! The typed client's calls for app versions and deployments: an extra `impl Client` block.
//!
//! Routes: `GET /api/v1/apps/{id}/versions`, `POST /api/v1/apps/{id}/rollback`
//! (`{"to": VERSION}`, optional); `GET /api/v1/deployments?app=ID`,
//! `GET /api/v1/deployments/{id}`, `POST /api/v1/deployments/{id}/cancel`,
//! `POST /api/v1/deployments/{id}/promote`.

use crate::app::App;
use crate::client::{Client, ClientError};
use crate::deployment::{AppVersion, Deployment, RollbackRequest};
use crate::error::ApiError;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;
use std::time::Duration;

/// One HTTP client for these calls (the main client's is private to its module).
fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default()
    })
}

fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    async fn deployment_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let mut request = http().request(method, format!("{}{}", self.base(), path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport =
            |e: reqwest::Error| ClientError::Transport { url: self.base().to_string(), message: e.to_string() };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Transport {
                url: self.base().to_string(),
                message: format!("unexpected answer to {path}: {e}"),
            });
        }
        let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            message: format!("{} {}", status.as_u16(), String::from_utf8_lossy(&bytes).trim()),
            field: None,
        });
        Err(ClientError::Api { status: status.as_u16(), error })
    }

    /// `GET /api/v1/apps/{id}/versions`: every stored version, oldest first.
    pub async fn app_versions(&self, id: &str) -> Result<Vec<AppVersion>, ClientError> {
        self.deployment_call(Method::GET, &format!("/api/v1/apps/{}/versions", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/apps/{id}/rollback`: deploys version `to` (the one before the current
    /// version if `None`) again, as a new version.
    pub async fn rollback_app(&self, id: &str, to: Option<u64>) -> Result<App, ClientError> {
        let body = RollbackRequest { to };
        self.deployment_call(Method::POST, &format!("/api/v1/apps/{}/rollback", encode(id)), Some(&body)).await
    }

    /// `GET /api/v1/deployments`: active and recent deployments, of one app if given.
    pub async fn list_deployments(&self, app: Option<&str>) -> Result<Vec<Deployment>, ClientError> {
        let path = match app {
            Some(app) => format!("/api/v1/deployments?app={}", encode(app)),
            None => "/api/v1/deployments".to_string(),
        };
        self.deployment_call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /api/v1/deployments/{id}`.
    pub async fn get_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.deployment_call(Method::GET, &format!("/api/v1/deployments/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/deployments/{id}/cancel`: stops it and deploys the previous version again.
    pub async fn cancel_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.deployment_call(Method::POST, &format!("/api/v1/deployments/{}/cancel", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/deployments/{id}/promote`: lets a deployment waiting on its canaries go on.
    pub async fn promote_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.deployment_call(Method::POST, &format!("/api/v1/deployments/{}/promote", encode(id)), None::<&()>).await
    }
}
