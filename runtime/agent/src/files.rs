//! The agent's HTTPS endpoint: `GET /files/{task_id}/{stream}` serves pieces of a task's stdout
//! or stderr as [`FileChunk`]s, `GET /health` says the agent is up. Read-only; it serves nothing
//! outside the sandboxes and only the two output streams. It is served over mutual TLS: only a
//! client with a master's certificate of the cluster CA is answered. The image cache's routes
//! ([`crate::images_api`]) are served beside it, behind the same check.

use crate::sandbox;
use crate::tasks::Supervisor;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::ApiError;
use gantry_api::protocol::FileChunk;
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

/// Bytes returned when `length` is not given.
pub const DEFAULT_LENGTH: u64 = 64 * 1024;
/// The most bytes one request returns.
pub const MAX_LENGTH: u64 = 1024 * 1024;

/// The query of a file request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ChunkQuery {
    /// Where to start; negative counts from the end (a tail). Default 0.
    #[serde(default)]
    pub offset: Option<i64>,
    /// How many bytes at most; default [`DEFAULT_LENGTH`], capped at [`MAX_LENGTH`].
    #[serde(default)]
    pub length: Option<u64>,
}

#[derive(Debug, Clone)]
struct FilesState {
    work_dir: PathBuf,
}

/// The agent's HTTP routes, for the sandboxes under `work_dir` and the image cache of
/// `supervisor`'s container executor ([`crate::images_api`]).
pub fn router(work_dir: PathBuf, supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/files/{task_id}/{stream}", get(file))
        .with_state(FilesState { work_dir })
        .merge(crate::images_api::router(supervisor))
        .layer(axum::middleware::from_fn(only_masters))
}

type Rejection = (StatusCode, Json<ApiError>);

fn reject(status: StatusCode, message: String) -> Rejection {
    (status, Json(ApiError { message, field: None }))
}

async fn file(
    State(state): State<FilesState>,
    Path((task_id, stream)): Path<(String, String)>,
    Query(query): Query<ChunkQuery>,
) -> Result<Json<FileChunk>, Rejection> {
    if stream != "stdout" && stream != "stderr" {
        return Err(reject(StatusCode::BAD_REQUEST, format!("unknown stream `{stream}`; use stdout or stderr")));
    }
    let sandbox = sandbox::tasks_dir(&state.work_dir).join(&task_id);
    if !sandbox::is_valid_task_id(&task_id) || !sandbox.is_dir() {
        return Err(reject(StatusCode::NOT_FOUND, format!("task `{task_id}` is unknown to this agent")));
    }
    let read = move || {
        let terminal = is_terminal(&sandbox);
        read_chunk(&sandbox.join(&stream), query, terminal)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(chunk)) => Ok(Json(chunk)),
        Ok(Err(error)) => Err(reject(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the file: {error}"))),
        Err(error) => Err(reject(StatusCode::INTERNAL_SERVER_ERROR, format!("the read failed: {error}"))),
    }
}

/// Whether nothing more will be written to the sandbox's streams.
fn is_terminal(sandbox: &std::path::Path) -> bool {
    sandbox.join(sandbox::EXIT_FILE).exists()
        || sandbox::read_json::<sandbox::TaskStateFile>(&sandbox.join(sandbox::STATE_FILE))
            .ok()
            .flatten()
            .is_some_and(|s| s.state.is_terminal())
}

/// Reads a chunk of `path` (a missing file reads as empty). `eof` is set when `terminal` and the
/// chunk reaches the end of the file.
pub fn read_chunk(path: &std::path::Path, query: ChunkQuery, terminal: bool) -> std::io::Result<FileChunk> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => Some(file),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let size = match &file {
        Some(file) => file.metadata()?.len(),
        None => 0,
    };
    let offset = match query.offset.unwrap_or(0) {
        negative if negative < 0 => size.saturating_sub(negative.unsigned_abs()),
        positive => (positive as u64).min(size),
    };
    let length = query.length.unwrap_or(DEFAULT_LENGTH).min(MAX_LENGTH);
    let mut data = Vec::new();
    if let Some(file) = file.as_mut() {
        file.seek(SeekFrom::Start(offset))?;
        file.take(length).read_to_end(&mut data)?;
    }
    let next_offset = offset + data.len() as u64;
    Ok(FileChunk {
        offset,
        data: String::from_utf8_lossy(&data).into_owned(),
        next_offset,
        eof: terminal && next_offset >= size,
    })
}

/// Serves a request only when its connection presented a master's certificate (the TLS
/// listener already refused certificates of another CA and connections without one).
async fn only_masters(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let peer = request.extensions().get::<axum::extract::ConnectInfo<gantry_trust::listener::Peer>>();
    match peer.and_then(|p| p.0.identity.clone()) {
        Some(gantry_trust::Identity::Master(_)) => next.run(request).await,
        other => {
            let who = other.map_or_else(|| "a client without a certificate".to_string(), |i| i.to_string());
            let message = format!("{who} may not call the agent's endpoint: only masters may");
            (StatusCode::FORBIDDEN, Json(ApiError { message, field: None })).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(offset: Option<i64>, length: Option<u64>) -> ChunkQuery {
        ChunkQuery { offset, length }
    }

    #[test]
    fn reads_from_the_start_the_middle_and_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout");
        std::fs::write(&path, b"hello world").expect("write");
        let all = read_chunk(&path, query(None, None), false).expect("read");
        assert_eq!((all.offset, all.data.as_str(), all.next_offset, all.eof), (0, "hello world", 11, false));
        let middle = read_chunk(&path, query(Some(6), Some(3)), true).expect("read");
        assert_eq!((middle.data.as_str(), middle.next_offset, middle.eof), ("wor", 9, false));
        let tail = read_chunk(&path, query(Some(-5), None), true).expect("read");
        assert_eq!((tail.offset, tail.data.as_str(), tail.eof), (6, "world", true));
        let past = read_chunk(&path, query(Some(100), None), true).expect("read");
        assert_eq!((past.offset, past.data.as_str(), past.eof), (11, "", true));
        let missing = read_chunk(&dir.path().join("stderr"), query(Some(-5), None), false).expect("read");
        assert_eq!((missing.offset, missing.next_offset), (0, 0));
    }

    #[test]
    fn caps_the_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout");
        std::fs::write(&path, vec![b'x'; (MAX_LENGTH + 10) as usize]).expect("write");
        let chunk = read_chunk(&path, query(None, Some(u64::MAX)), false).expect("read");
        assert_eq!(chunk.next_offset, MAX_LENGTH);
    }
}
