//! The Azure Resource Manager client: the three official management crates (compute, network,
//! resources) on one credential and one endpoint, and the follow-up of their long-running
//! operations.
//!
//! Requests are sent with the crates' `send()` (one PUT or DELETE), not their `.await`: the
//! generated `.await` re-sends a PUT to poll it, sleeps Azure's `Retry-After` (30 s when absent)
//! and reports a failed operation as "Long running operation failed" without Azure's code. Here
//! [`Arm::wait`] follows `Azure-AsyncOperation` (else `Location`) with short backoff, so a lab
//! operation of 200 ms is seen in about that long and a failure keeps its code and message.

use crate::credential;
use crate::error::{self, Failure};
use crate::settings::{DEFAULT_ENDPOINT, ENDPOINT_ENV, SUBSCRIPTION_ENV};
use azure_core::auth::TokenCredential;
use azure_core::headers::Headers;
use azure_core::headers::{AZURE_ASYNCOPERATION, LOCATION};
use azure_core::{HttpClient, Method, Request, Response, StatusCode, Url};
use gantry_provision::cloud::{BOOT_TIMEOUT, Backoff};
use gantry_provision::provider::{ErrorKind, ProviderError};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The compute API (api-version 2024-07-01).
pub use azure_mgmt_compute::package_2024_07_01 as compute;
/// The network API (api-version 2024-03-01).
pub use azure_mgmt_network::package_2024_03 as network;
/// The resources API (api-version 2021-04-01).
pub use azure_mgmt_resources::package_resources_2021_04 as resources;

/// The reads that following an operation needs (its status and result resources).
pub const OPERATION_ACTIONS: &[&str] = &[
    "Microsoft.Compute/locations/operations/read",
    "Microsoft.Network/locations/operations/read",
    "Microsoft.Network/locations/operationResults/read",
    "Microsoft.Resources/subscriptions/operationresults/read",
];

/// A Resource Manager client of one subscription.
#[derive(Clone)]
pub struct Arm {
    /// The subscription every call names.
    pub subscription: String,
    /// The Resource Manager endpoint.
    pub endpoint: Url,
    /// Microsoft.Compute (virtual machines), api-version 2024-07-01.
    pub compute: compute::Client,
    /// Microsoft.Network (virtual networks, security groups, NICs, public IPs), 2024-03-01.
    pub network: network::Client,
    /// Microsoft.Resources (resource groups), 2021-04-01.
    pub resources: resources::Client,
    credential: Arc<dyn TokenCredential>,
    scopes: Vec<String>,
    http: Arc<dyn HttpClient>,
}

impl fmt::Debug for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arm")
            .field("subscription", &self.subscription)
            .field("endpoint", &self.endpoint.as_str())
            .finish()
    }
}

fn connect_error(kind: ErrorKind, message: String) -> ProviderError {
    error::other("connect", "*", kind, message)
}

impl Arm {
    /// A client of `subscription_id` (else `AZURE_SUBSCRIPTION_ID`) at `endpoint_url` (else
    /// `GANTRY_AZURE_ENDPOINT_URL`, else Azure's own), with credentials from the standard chain
    /// (or the lab's), which are asked for a token now so that missing credentials fail here with
    /// the way to log in, not at the first call.
    pub async fn connect(subscription_id: Option<&str>, endpoint_url: Option<&str>) -> Result<Arm, ProviderError> {
        let subscription = match subscription_id {
            Some(id) => id.to_string(),
            None => std::env::var(SUBSCRIPTION_ENV).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
                connect_error(
                    ErrorKind::Auth,
                    format!(
                        "no subscription: set [azure] subscription_id or export {SUBSCRIPTION_ENV} (`az account show \
                         --query id -o tsv` prints the current one)"
                    ),
                )
            })?,
        };
        let endpoint_text = match endpoint_url {
            Some(url) => url.to_string(),
            None => std::env::var(ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_ENDPOINT.to_string()),
        };
        let endpoint = Url::parse(&endpoint_text).map_err(|e| {
            connect_error(
                ErrorKind::Other,
                format!(
                    "endpoint `{endpoint_text}` is not a URL: {e} (hint: fix [azure] endpoint_url or {ENDPOINT_ENV})"
                ),
            )
        })?;
        let credential = credential::from_env().map_err(|e| {
            connect_error(
                ErrorKind::Auth,
                format!("no Azure credentials: {e}; tried {} ({})", credential::CHAIN, error::LOGIN_HINT),
            )
        })?;
        let scope = endpoint
            .join(azure_core::auth::DEFAULT_SCOPE_SUFFIX)
            .map_err(|e| connect_error(ErrorKind::Other, format!("endpoint `{endpoint}`: {e}")))?
            .to_string();
        if let Err(e) = credential.get_token(&[scope.as_str()]).await {
            return Err(connect_error(
                ErrorKind::Auth,
                format!(
                    "no Azure credentials: {}\ntried {} (hint: {})",
                    Failure::from_sdk(&e).message,
                    credential::CHAIN,
                    error::LOGIN_HINT
                ),
            ));
        }
        let build_error =
            |e: azure_core::Error| connect_error(ErrorKind::Other, format!("cannot build the client: {e}"));
        Ok(Arm {
            compute: compute::Client::builder(credential.clone())
                .endpoint(endpoint.clone())
                .build()
                .map_err(build_error)?,
            network: network::Client::builder(credential.clone())
                .endpoint(endpoint.clone())
                .build()
                .map_err(build_error)?,
            resources: resources::Client::builder(credential.clone())
                .endpoint(endpoint.clone())
                .build()
                .map_err(build_error)?,
            subscription,
            endpoint,
            credential,
            scopes: vec![scope],
            http: azure_core::new_http_client(),
        })
    }

    /// Sends a create-or-update (`call`: an SDK request's `send()`) and waits for its operation;
    /// answers the resource as the PUT returned it.
    pub async fn put<R: Into<Response>>(
        &self,
        call: impl Future<Output = azure_core::Result<R>>,
    ) -> Result<serde_json::Value, Failure> {
        let response: Response = call.await.map_err(|e| Failure::from_sdk(&e))?.into();
        let (status, headers, body) = response.deconstruct();
        let body = body.collect().await.map_err(|e| Failure::from_sdk(&e))?;
        self.wait(status, &headers).await?;
        Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    /// Sends a delete or an action (`call`) and waits for its operation; a resource that does not
    /// exist is deleted already.
    pub async fn delete<R: Into<Response>>(
        &self,
        call: impl Future<Output = azure_core::Result<R>>,
    ) -> Result<(), Failure> {
        let response: Response = match call.await {
            Ok(response) => response.into(),
            Err(e) => {
                let failure = Failure::from_sdk(&e);
                return if failure.is_not_found() { Ok(()) } else { Err(failure) };
            }
        };
        self.wait(response.status(), response.headers()).await
    }

    /// Waits for the operation a PUT, DELETE or action answered (`status`, `headers`) to end; its
    /// failure is Azure's error. An answer without an operation (a synchronous one) is done.
    pub async fn wait(&self, status: StatusCode, headers: &Headers) -> Result<(), Failure> {
        let status_url: Option<String> = headers.get_optional_string(&AZURE_ASYNCOPERATION);
        let location: Option<String> = headers.get_optional_string(&LOCATION);
        let (url, by_status) = match (status_url, location) {
            (Some(url), _) => (url, true),
            (None, Some(url)) if status == StatusCode::Accepted => (url, false),
            _ => return Ok(()),
        };
        let url = Url::parse(&url).map_err(|e| Failure::new(None, "InvalidOperationUrl", &format!("{url}: {e}")))?;
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            backoff.wait().await;
            match self.poll(&url, by_status).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(f) if error::kind_of(&f) == ErrorKind::Transient => {
                    tracing::debug!(code = %f.code, message = %f.message, "Operation poll failed; polling again.")
                }
                Err(f) => return Err(f),
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(Failure::new(
                    None,
                    "OperationTimedOut",
                    &format!("{url} still runs after {BOOT_TIMEOUT:?}"),
                ));
            }
        }
    }

    /// One look at an operation: `Ok(true)` when it succeeded, `Ok(false)` while it runs.
    async fn poll(&self, url: &Url, by_status: bool) -> Result<bool, Failure> {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let token = self.credential.get_token(&scopes).await.map_err(|e| Failure::from_sdk(&e))?;
        let mut request = Request::new(url.clone(), Method::Get);
        request.insert_header(azure_core::headers::AUTHORIZATION, format!("Bearer {}", token.token.secret()));
        let response = self.http.execute_request(&request).await.map_err(|e| Failure::from_sdk(&e))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| Failure::from_sdk(&e))?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let failure = |json: &serde_json::Value| {
            let error = json.get("error").unwrap_or(json);
            let text = |k: &str| error.get(k).and_then(serde_json::Value::as_str).unwrap_or("no detail").to_string();
            Failure::new(Some(u16::from(status)), &text("code"), &text("message"))
        };
        if !status.is_success() {
            return Err(failure(&json));
        }
        if !by_status {
            return Ok(status != StatusCode::Accepted);
        }
        match json.get("status").and_then(serde_json::Value::as_str) {
            Some("Succeeded") => Ok(true),
            Some("Failed" | "Canceled" | "Cancelled") => Err(failure(&json)),
            _ => Ok(false),
        }
    }
}

/// The resource a GET (`call`) answers; `None` when it (or its group) does not exist.
pub async fn get<R: Into<Response>>(
    call: impl Future<Output = azure_core::Result<R>>,
) -> Result<Option<serde_json::Value>, Failure> {
    match call.await {
        Ok(response) => {
            let response: Response = response.into();
            let body = response.into_body().collect().await.map_err(|e| Failure::from_sdk(&e))?;
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| Failure::new(None, "InvalidResponse", &format!("unreadable answer: {e}")))
        }
        Err(e) => {
            let failure = Failure::from_sdk(&e);
            if failure.is_not_found() { Ok(None) } else { Err(failure) }
        }
    }
}

/// A resource's `properties.provisioningState`.
pub fn provisioning_state(resource: &serde_json::Value) -> Option<&str> {
    resource.pointer("/properties/provisioningState")?.as_str()
}

/// A resource's `id`.
pub fn id(resource: &serde_json::Value) -> Option<&str> {
    resource.get("id")?.as_str()
}
