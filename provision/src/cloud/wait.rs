//! Waiting on cloud machines: exponential backoff between polls, and a booted machine's port.

use std::time::Duration;

/// Exponential waits between polls: from `first`, doubling, at most `max`.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice as long each time, up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// Waits until `target` (`address:port`) accepts a TCP connection, polling with backoff, for at
/// most `timeout`; the error says how long it waited.
pub async fn wait_for_port(target: &str, timeout: Duration) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let connect = tokio::net::TcpStream::connect(target);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(format!("{target} accepts no connection after {timeout:?}"));
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_port_is_found_and_a_closed_one_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("address").to_string();
        wait_for_port(&open, Duration::from_secs(5)).await.expect("open");
        drop(listener);
        let error = wait_for_port(&open, Duration::from_millis(1)).await.expect_err("closed");
        assert!(error.contains("accepts no connection"), "{error}");
    }
}
