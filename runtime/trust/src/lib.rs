//! gantry's trust material, shared by the master, the agent, the command line and the
//! provisioner: the cluster CA and its certificates ([`pki`]), join and API tokens ([`token`]),
//! the identity a certificate names ([`identity`]), policies ([`policy`]), secrets sealed at rest
//! ([`sealed`]), and the rustls configurations every link uses ([`tls`]).
//!
//! Everything here is pure or touches only the files it is handed; it holds no server and makes
//! no network call, so each piece is tested without a socket.

pub mod files;
pub mod identity;
pub mod listener;
pub mod pki;
pub mod policy;
pub mod sealed;
pub mod tls;
pub mod token;

pub use identity::Identity;
pub use pki::{Ca, IssuedCert, PkiError};
pub use token::{JoinToken, TokenError};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of a hex text (either case); `None` when it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a caller can recover from.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips_and_junk_is_refused() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::from_hex(&super::hex(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(super::from_hex("ABff").as_deref(), Some(&[0xab, 0xff][..]));
        for junk in ["a", "zz", "0g"] {
            assert_eq!(super::from_hex(junk), None, "{junk}");
        }
    }
}
