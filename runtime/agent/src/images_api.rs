//! The agent's image cache on its endpoint, for `gantry image list|prune` through the master:
//! `GET /images` answers an [`ImageCache`] (each image flagged when a live task uses it) and
//! `POST /images/prune` (`{"all": bool}`) removes images no live task uses — every one with
//! `all`, else least recently used ones until the cache is at most its size — and answers an
//! [`ImagePruneReport`]. Where containers cannot run here both answer 409 with the reason.
//!
//! Served beside the file endpoint ([`crate::files::router`]) and behind the same check: only
//! a master's certificate is answered. It never removes an image a live task uses.

use crate::tasks::Supervisor;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::ApiError;
use gantry_api::image::{CachedImage, ImageCache, ImagePruneReport, PruneImagesRequest};
use gantry_image::{ImageInfo, ImageStore, PruneReport};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// The image routes, answered from the container executor of `supervisor`.
pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new().route("/images", get(list)).route("/images/prune", post(prune)).with_state(supervisor)
}

type Rejection = (StatusCode, Json<ApiError>);

fn reject(status: StatusCode, message: String) -> Rejection {
    (status, Json(ApiError { message, field: None }))
}

/// The image store and the manifest digests live tasks use, or (409) why containers cannot run
/// on this agent; the message is the reason alone, the master names the agent.
fn cache_of(supervisor: &Supervisor) -> Result<(Arc<ImageStore>, HashSet<String>), Rejection> {
    let executors = supervisor.executors();
    let Some(container) = executors.iter().find_map(|e| e.as_container()) else {
        return Err(reject(StatusCode::CONFLICT, "the agent has no container executor".into()));
    };
    match container.store() {
        Some(store) => Ok((Arc::clone(store), container.in_use())),
        None => {
            let capabilities = crate::executors::TaskExecutor::capabilities(container);
            let reason = capabilities.unavailable.unwrap_or_else(|| "its image store is not open".into());
            Err(reject(StatusCode::CONFLICT, reason))
        }
    }
}

async fn list(State(supervisor): State<Arc<Supervisor>>) -> Result<Json<ImageCache>, Rejection> {
    let (store, in_use) = cache_of(&supervisor)?;
    Ok(Json(cache(&store.list(), store.total_bytes(), store.max_bytes(), &in_use)))
}

async fn prune(State(supervisor): State<Arc<Supervisor>>, body: Bytes) -> Result<Json<ImagePruneReport>, Rejection> {
    let request: PruneImagesRequest = if body.is_empty() {
        PruneImagesRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            reject(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid prune body: {e}; send {{\"all\": true|false}}"))
        })?
    };
    let (store, in_use) = cache_of(&supervisor)?;
    let target = prune_target(request.all, store.max_bytes());
    let remove = move || {
        let report = store.prune(&in_use, target);
        (report, in_use)
    };
    match tokio::task::spawn_blocking(remove).await {
        Ok((report, in_use)) => Ok(Json(prune_report(report, &in_use))),
        Err(error) => Err(reject(StatusCode::INTERNAL_SERVER_ERROR, format!("the prune failed: {error}"))),
    }
}

/// The size a prune brings the cache down to: nothing with `all` (every image not in use
/// goes), else the cache's own limit.
pub fn prune_target(all: bool, max_bytes: u64) -> u64 {
    if all { 0 } else { max_bytes }
}

/// The wire form of a store's listing.
pub fn cache(images: &[ImageInfo], total_bytes: u64, max_bytes: u64, in_use: &HashSet<String>) -> ImageCache {
    ImageCache { total_bytes, max_bytes, images: images.iter().map(|i| cached(i, in_use)).collect() }
}

/// The wire form of a store's prune report.
pub fn prune_report(report: PruneReport, in_use: &HashSet<String>) -> ImagePruneReport {
    ImagePruneReport {
        removed: report.removed.iter().map(|i| cached(i, in_use)).collect(),
        freed_bytes: report.freed_bytes,
        remaining_bytes: report.remaining_bytes,
        failures: report.failures,
    }
}

/// One image; in use when a live task runs from its digest or one of its references (as the
/// store's prune decides).
fn cached(info: &ImageInfo, in_use: &HashSet<String>) -> CachedImage {
    let last_used = info.last_used.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    CachedImage {
        references: info.references.clone(),
        manifest_digest: info.manifest_digest.clone(),
        size_bytes: info.size_bytes,
        last_used,
        in_use: in_use.contains(&info.manifest_digest) || info.references.iter().any(|r| in_use.contains(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(digest: &str, reference: &str, secs: u64) -> ImageInfo {
        ImageInfo {
            references: vec![reference.to_string()],
            manifest_digest: digest.to_string(),
            size_bytes: 100,
            last_used: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn images_used_by_digest_or_reference_are_flagged() {
        let images = [info("sha256:a", "r/a:1", 3), info("sha256:b", "r/b:1", 2), info("sha256:c", "r/c:1", 1)];
        let in_use: HashSet<String> = ["sha256:a".to_string(), "r/b:1".to_string()].into();
        let cache = cache(&images, 250, 1000, &in_use);
        let flags: Vec<(&str, bool, u64)> =
            cache.images.iter().map(|i| (i.manifest_digest.as_str(), i.in_use, i.last_used)).collect();
        assert_eq!(flags, vec![("sha256:a", true, 3000), ("sha256:b", true, 2000), ("sha256:c", false, 1000)]);
        assert_eq!((cache.total_bytes, cache.max_bytes), (250, 1000));
    }

    #[test]
    fn a_prune_report_keeps_its_figures_and_failures() {
        let report = PruneReport {
            removed: vec![info("sha256:c", "r/c:1", 1)],
            freed_bytes: 100,
            remaining_bytes: 200,
            failures: vec!["layer sha256:x: busy".into()],
        };
        let wire = prune_report(report, &HashSet::new());
        assert_eq!(wire.removed.len(), 1);
        assert!(!wire.removed[0].in_use);
        assert_eq!((wire.freed_bytes, wire.remaining_bytes), (100, 200));
        assert_eq!(wire.failures, vec!["layer sha256:x: busy".to_string()]);
    }

    #[test]
    fn all_prunes_to_nothing_otherwise_to_the_limit() {
        assert_eq!(prune_target(true, 500), 0);
        assert_eq!(prune_target(false, 500), 500);
    }
}
