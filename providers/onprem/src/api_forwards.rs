//! The masters' APIs behind a bastion (`[ssh.bastion]`): this machine reaches a master's API only
//! through a local port forwarded through the bastion (SSH direct-tcpip). Each master gets its
//! own forward, opened the first time a URL of it is called and kept as long as the forwards, so
//! a client that moves from master to master (a failover, a master that does not answer) finds
//! every one of them.

use gantry_provision::provider::{ErrorKind, ProviderError};
use gantry_provision::transport::{LocalForward, SshSettings, forward_local};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Local ports forwarded through the bastion to the masters' APIs; see the module docs.
#[derive(Debug)]
pub struct ApiForwards {
    bastion: SshSettings,
    api_port: u16,
    /// By the master's `host:port` (as the URL writes it).
    open: Mutex<BTreeMap<String, LocalForward>>,
}

impl ApiForwards {
    /// Forwards through `bastion` to masters serving their API on `api_port`.
    pub fn new(bastion: SshSettings, api_port: u16) -> Self {
        Self { bastion, api_port, open: Mutex::new(BTreeMap::new()) }
    }

    /// `url` as this machine reaches it: a master's URL (`https://HOST:API_PORT…`) becomes the
    /// same URL at the local end of a forward to `HOST:API_PORT`; any other URL stays as it is.
    /// The first call for a master logs in to the bastion (it blocks, within the bastion's
    /// `connect_timeout`); later calls reuse the forward, or open it again if the bastion closed
    /// it.
    pub fn reach(&self, url: &str) -> Result<String, ProviderError> {
        let Some((authority, host, rest)) = self.master_of(url) else { return Ok(url.to_string()) };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |e: gantry_provision::transport::TransportError| {
            let kind = if e.is_retryable() { ErrorKind::Transient } else { ErrorKind::Auth };
            ProviderError::Call {
                provider: "onprem".to_string(),
                operation: "connect",
                host: authority.to_string(),
                kind,
                message: format!("cannot forward the master API at {authority} through the bastion: {e}"),
            }
        };
        match open.get_mut(authority) {
            // A forward whose bastion session was closed opens again (on a new local port).
            Some(forward) => {
                forward.reopen_if_closed().map_err(failed)?;
            }
            None => {
                let forward = forward_local(&self.bastion, (host.to_string(), self.api_port)).map_err(failed)?;
                open.insert(authority.to_string(), forward);
            }
        }
        Ok(format!("https://{}{rest}", open[authority].addr()))
    }

    /// `(host:port, host, the rest of the URL)` of a master's URL.
    fn master_of<'u>(&self, url: &'u str) -> Option<(&'u str, &'u str, &'u str)> {
        let after = url.strip_prefix("https://")?;
        let (authority, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
        let (host, port) = authority.rsplit_once(':')?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        (port.parse::<u16>().ok()? == self.api_port && !host.is_empty()).then_some((authority, host, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwards() -> ApiForwards {
        ApiForwards::new(SshSettings::new("192.0.2.1", "root"), 5050)
    }

    #[test]
    fn master_urls_are_recognised_by_scheme_and_api_port() {
        let f = forwards();
        assert_eq!(f.master_of("https://10.0.0.4:5050"), Some(("10.0.0.4:5050", "10.0.0.4", "")));
        assert_eq!(
            f.master_of("https://10.0.0.4:5050/v1/apps?x=1"),
            Some(("10.0.0.4:5050", "10.0.0.4", "/v1/apps?x=1"))
        );
        assert_eq!(f.master_of("https://[fd00::4]:5050/health"), Some(("[fd00::4]:5050", "fd00::4", "/health")));
        assert_eq!(f.master_of("https://10.0.0.4:6060"), None, "another port");
        assert_eq!(f.master_of("http://10.0.0.4:5050"), None, "not the API's scheme");
        assert_eq!(f.master_of("https://10.0.0.4"), None, "no port");
    }

    #[test]
    fn other_urls_are_reached_as_they_are_without_the_bastion() {
        let f = forwards();
        assert_eq!(f.reach("https://127.0.0.1:7000/x").expect("as is"), "https://127.0.0.1:7000/x");
        assert!(f.open.lock().expect("lock").is_empty(), "no forward was opened");
    }
}
