//! The typed client's calls for app versions and deployments: an extra `impl Client` block.
//!
//! Routes: `GET /api/v1/apps/{id}/versions`, `POST /api/v1/apps/{id}/rollback`
//! (`{"to": VERSION}`, optional); `GET /api/v1/deployments?app=ID`,
//! `GET /api/v1/deployments/{id}`, `POST /api/v1/deployments/{id}/cancel`,
//! `POST /api/v1/deployments/{id}/promote`.

use crate::app::App;
use crate::client::{Client, ClientError, encode};
use crate::deployment::{AppVersion, Deployment, RollbackRequest};
use reqwest::Method;

impl Client {
    /// `GET /api/v1/apps/{id}/versions`: every stored version, oldest first.
    pub async fn app_versions(&self, id: &str) -> Result<Vec<AppVersion>, ClientError> {
        self.call(Method::GET, &format!("/api/v1/apps/{}/versions", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/apps/{id}/rollback`: deploys version `to` (the one before the current
    /// version if `None`) again, as a new version.
    pub async fn rollback_app(&self, id: &str, to: Option<u64>) -> Result<App, ClientError> {
        let body = RollbackRequest { to };
        self.call(Method::POST, &format!("/api/v1/apps/{}/rollback", encode(id)), Some(&body)).await
    }

    /// `GET /api/v1/deployments`: active and recent deployments, of one app if given.
    pub async fn list_deployments(&self, app: Option<&str>) -> Result<Vec<Deployment>, ClientError> {
        let path = match app {
            Some(app) => format!("/api/v1/deployments?app={}", encode(app)),
            None => "/api/v1/deployments".to_string(),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /api/v1/deployments/{id}`.
    pub async fn get_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.call(Method::GET, &format!("/api/v1/deployments/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/deployments/{id}/cancel`: stops it and deploys the previous version again.
    pub async fn cancel_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.call(Method::POST, &format!("/api/v1/deployments/{}/cancel", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/deployments/{id}/promote`: lets a deployment waiting on its canaries go on.
    pub async fn promote_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.call(Method::POST, &format!("/api/v1/deployments/{}/promote", encode(id)), None::<&()>).await
    }
}
