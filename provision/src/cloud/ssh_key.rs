//! The cluster's SSH key: an ed25519 key made on the first `up` in the state dir (0600), whose
//! public half every machine authorises (an EC2 key pair, GCE ssh-keys metadata, an Azure VM's
//! SSH public keys).

use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::path::Path;

/// The public key (OpenSSH format) of the key at `path`, made there first if missing.
pub fn ensure(path: &Path, comment: &str) -> Result<String, String> {
    let key = match std::fs::read_to_string(path) {
        Ok(text) => {
            PrivateKey::from_openssh(&text).map_err(|e| format!("{}: unreadable SSH key: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
                .map_err(|e| format!("cannot make an SSH key: {e}"))?;
            key.set_comment(comment);
            let text = key.to_openssh(LineEnding::LF).map_err(|e| format!("cannot encode the SSH key: {e}"))?;
            gantry_trust::files::write_private(path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            key
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    key.public_key().to_openssh().map_err(|e| format!("cannot encode the public key: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ssh/id_ed25519");
        let first = super::ensure(&path, "gantry-test").expect("make");
        assert!(first.starts_with("ssh-ed25519 "), "{first}");
        assert_eq!(super::ensure(&path, "gantry-test").expect("read"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
