//! Secrets sealed at rest: the seal key, its file, and sealing and opening one secret value with
//! XChaCha20-Poly1305. A sealed value is bound to the secret's name and version, so it cannot be
//! moved to another secret or replayed as another version.
//!
//! This module owns only the key file and the bytes of one value; storing sealed values is the
//! store's job.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The length of the random nonce that starts every sealed value.
const NONCE_LEN: usize = 24;

/// The length of the Poly1305 authentication tag that ends every sealed value.
const TAG_LEN: usize = 16;

/// The length of a key file's contents, in hex characters, without the newline.
const KEY_HEX_LEN: usize = 64;

/// An error loading a seal key or opening a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or written.
    #[error("cannot {action} the seal key file {}: {source}", path.display())]
    Io {
        /// What was being done: `read` or `write`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The key file can be read by users other than its owner.
    #[error(
        "the seal key file {} can be read by other users; run `chmod 600 {}` and check who else has read it",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not hold a key.
    #[error("the seal key file {} does not hold a key: it must be 64 hex characters and an optional newline", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// A sealed value too short to hold a nonce and a tag.
    #[error("the sealed secret {name} v{version} is {len} bytes, too short to be a sealed value")]
    TooShort {
        /// The secret's name.
        name: String,
        /// The secret's version.
        version: u64,
        /// The length of the sealed value.
        len: usize,
    },
    /// A sealed value that does not authenticate with this key, name and version.
    #[error(
        "the secret {name} v{version} does not open with this key: the store and the key file do not belong \
         together, or the store was altered"
    )]
    DoesNotOpen {
        /// The secret's name.
        name: String,
        /// The secret's version.
        version: u64,
    },
}

/// The 256-bit key that seals a cluster's secrets; its `Debug` never shows the key.
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A new random key.
    pub fn generate() -> Self {
        SealKey(crate::random_bytes())
    }

    /// Loads the key from `path`, or, when there is no such file, generates one and writes it
    /// there with mode 0600. Returns the key and whether it was created. Refuses a key file that
    /// other users can read, or one that does not hold 64 hex characters and an optional newline.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SealError> {
        let io_error = |action: &'static str| move |source| SealError::Io { action, path: path.to_owned(), source };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SealKey::generate();
                let text = format!("{}\n", crate::hex(&key.0));
                crate::files::write_private(path, text.as_bytes()).map_err(io_error("write"))?;
                return Ok((key, true));
            }
            Err(e) => return Err(io_error("read")(e)),
        };
        if crate::files::readable_by_others(path).map_err(io_error("read"))? {
            return Err(SealError::Exposed { path: path.to_owned() });
        }
        let hex = text.strip_suffix(b"\n").unwrap_or(&text);
        let key = parse_hex_key(hex).ok_or_else(|| SealError::Malformed { path: path.to_owned() })?;
        Ok((SealKey(key), false))
    }

    /// Seals `plaintext` as version `version` of the secret `name`: a random 24-byte nonce
    /// followed by the ciphertext and its tag.
    pub fn seal(&self, name: &str, version: u64, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = crate::random_bytes();
        let aad = aad(name, version);
        #[allow(clippy::expect_used)]
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("XChaCha20-Poly1305 fails to seal only values of hundreds of gigabytes");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a value [`SealKey::seal`] sealed as version `version` of the secret `name`; fails
    /// when it was sealed with another key, name or version, or was altered.
    pub fn open(&self, name: &str, version: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::TooShort { name: name.to_owned(), version, len: sealed.len() });
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = aad(name, version);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| SealError::DoesNotOpen { name: name.to_owned(), version })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

/// The associated data that binds a sealed value to its secret's name and version.
fn aad(name: &str, version: u64) -> String {
    format!("gantry-secret:{name}:{version}")
}

/// The 32 bytes written as exactly 64 hex characters (either case), or `None`.
fn parse_hex_key(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != KEY_HEX_LEN {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_name_and_version() {
        let key = SealKey::generate();
        let sealed = key.seal("db-password", 3, b"hunter2");
        assert_eq!(key.open("db-password", 3, &sealed).expect("opens"), b"hunter2");
        let empty = key.seal("empty", 1, b"");
        assert_eq!(key.open("empty", 1, &empty).expect("opens"), b"");
    }

    #[test]
    fn another_name_version_or_key_does_not_open() {
        let key = SealKey::generate();
        let sealed = key.seal("db-password", 3, b"hunter2");
        for (name, version) in [("api-key", 3), ("db-password", 2), ("db-password", 4)] {
            let err = key.open(name, version, &sealed).expect_err("bound to name and version");
            assert!(matches!(err, SealError::DoesNotOpen { .. }), "{err}");
        }
        let err = SealKey::generate().open("db-password", 3, &sealed).expect_err("another key");
        assert!(err.to_string().contains("does not open with this key"), "{err}");
    }

    #[test]
    fn altered_or_short_values_do_not_open() {
        let key = SealKey::generate();
        let sealed = key.seal("s", 1, b"value");
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert!(matches!(key.open("s", 1, &altered), Err(SealError::DoesNotOpen { .. })), "byte {i}");
        }
        assert!(matches!(key.open("s", 1, &sealed[..NONCE_LEN + TAG_LEN - 1]), Err(SealError::TooShort { .. })));
        assert!(matches!(key.open("s", 1, &sealed[..sealed.len() - 1]), Err(SealError::DoesNotOpen { .. })));
    }

    #[test]
    fn sealing_twice_differs_and_hides_the_plaintext() {
        let key = SealKey::generate();
        let plaintext = b"a rather recognisable plaintext";
        let (one, two) = (key.seal("s", 1, plaintext), key.seal("s", 1, plaintext));
        assert_ne!(one, two, "a fresh nonce each time");
        assert_eq!(one.len(), NONCE_LEN + plaintext.len() + TAG_LEN);
        assert!(!one.windows(plaintext.len()).any(|w| w == plaintext));
        assert!(!one.windows(8).any(|w| w == &plaintext[..8]));
    }

    #[test]
    fn the_key_file_is_created_private_then_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state").join("seal.key");
        let (key, created) = SealKey::load_or_create(&path).expect("creates");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), KEY_HEX_LEN + 1);
        assert!(text.ends_with('\n'));

        let (again, created) = SealKey::load_or_create(&path).expect("loads");
        assert!(!created);
        let sealed = key.seal("s", 1, b"value");
        assert_eq!(again.open("s", 1, &sealed).expect("the same key"), b"value");

        std::fs::write(&path, text.trim_end().to_uppercase()).expect("rewrite without newline, upper case");
        let (upper, _) = SealKey::load_or_create(&path).expect("loads");
        assert_eq!(upper.open("s", 1, &sealed).expect("the same key"), b"value");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("seal.key");
        SealKey::load_or_create(&path).expect("creates");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SealKey::load_or_create(&path).expect_err("exposed");
        assert!(matches!(err, SealError::Exposed { .. }), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("seal.key");
        let good = "ab".repeat(32);
        for bad in [String::new(), "ab".repeat(31), format!("{good}\n\n"), format!("{good} "), "zz".repeat(32)] {
            crate::files::write_private(&path, bad.as_bytes()).expect("write");
            let err = SealKey::load_or_create(&path).expect_err("malformed");
            assert!(matches!(err, SealError::Malformed { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SealKey([0xab; 32]);
        assert_eq!(format!("{key:?}"), "SealKey(..)");
    }
}
