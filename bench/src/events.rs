//! A subscriber of the master's server-sent events (`GET /api/v1/events`): every event with the
//! instant this process received it.

use futures_util::StreamExt;
use gantry_api::{Client, Event};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the stream may stay open: it replaces the client's per-request timeout (30 s),
/// which would end a stream that outlives it.
const STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Subscribes with `client`'s token and TLS settings (the subscription exists when this
/// returns) and forwards events until the stream or the receiver ends.
pub async fn subscribe(client: &Client) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, Event)>> {
    let response = client
        .request(reqwest::Method::GET, "/api/v1/events")
        .timeout(STREAM_TIMEOUT)
        .send()
        .await?
        .error_for_status()?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(Ok(bytes)) = stream.next().await {
            let received = Instant::now();
            buffer.extend_from_slice(&bytes);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Some(data) = line.trim_ascii().strip_prefix(b"data:") else { continue };
                if let Ok(event) = serde_json::from_slice::<Event>(data.trim_ascii())
                    && sender.send((received, event)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(receiver)
}
