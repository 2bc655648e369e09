//! A subscriber of the master's server-sent events (`GET /api/v1/events`): every event with the
//! instant this process received it.

use futures_util::StreamExt;
use gantry_api::Event;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Subscribes (the subscription exists when this returns) and forwards events until the stream
/// or the receiver ends.
pub async fn subscribe(master_url: &str) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, Event)>> {
    let response =
        reqwest::Client::new().get(format!("{master_url}/api/v1/events")).send().await?.error_for_status()?;
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
