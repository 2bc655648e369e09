//! moto's server (PyPI `moto[server]`): where it is installed, and running it on a free
//! loopback port inside the lab's cgroup, so the lab's teardown (or a later cleanup of a
//! crashed run) kills it.

use super::AwsLabError;
use crate::testhosts::Lab;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the `moto_server` executable to use.
pub const MOTO_ENV: &str = "GANTRY_LAB_MOTO";
/// The moto release the lab is tested with (what `scripts/test` installs).
pub const MOTO_VERSION: &str = "5.2.6";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPTS: usize = 3;

/// The `moto_server` executable: the one `GANTRY_LAB_MOTO` names, else the one of the
/// workspace's virtualenv `target/lab-venv` (what `scripts/test` installs as root), else the
/// one on `PATH`.
pub fn find_moto_server() -> Result<PathBuf, AwsLabError> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lab-venv/bin/moto_server");
    find(std::env::var_os(MOTO_ENV).map(PathBuf::from), &venv, std::env::var_os("PATH"))
}

fn find(named: Option<PathBuf>, venv: &Path, path: Option<std::ffi::OsString>) -> Result<PathBuf, AwsLabError> {
    if let Some(named) = named {
        return if named.is_file() {
            Ok(named)
        } else {
            Err(AwsLabError::MotoMissing(format!("{MOTO_ENV} names {}, which does not exist", named.display())))
        };
    }
    if venv.is_file() {
        return Ok(venv.to_path_buf());
    }
    if let Some(found) =
        path.iter().flat_map(std::env::split_paths).map(|d| d.join("moto_server")).find(|p| p.is_file())
    {
        return Ok(found);
    }
    Err(AwsLabError::MotoMissing(format!("no moto_server in {} nor on PATH", venv.display())))
}

/// A running moto server.
#[derive(Debug)]
pub(super) struct Moto {
    pub child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts `exe` on a free loopback port, logging to `log`, and waits until it accepts
    /// connections.
    pub(super) fn start(lab: &Lab, exe: &Path, log: &Path) -> Result<Moto, AwsLabError> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(AwsLabError::io(format!("open {}", log.display())))?;
            let stderr = file.try_clone().map_err(AwsLabError::io("duplicate the moto log fd"))?;
            let child = lab
                .command("moto", exe)?
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(stderr)
                .spawn()
                .map_err(AwsLabError::io(format!("start {}", exe.display())))?;
            let mut moto = Moto { child, port };
            match moto.wait_ready() {
                Ok(()) => return Ok(moto),
                Err(message) => {
                    moto.stop();
                    last = message;
                }
            }
        }
        let tail: String = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .fold(String::new(), |acc, l| format!("{l}\n{acc}"));
        Err(AwsLabError::Moto(format!("{last}; {}:\n{tail}", log.display())))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto_server exited ({status}) before it listened on port {}", self.port));
            }
            if Instant::now() >= deadline {
                return Err(format!("moto_server did not listen on port {} in {START_TIMEOUT:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and reaps it.
    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, AwsLabError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(AwsLabError::io("find a free port"))?;
    Ok(listener.local_addr().map_err(AwsLabError::io("find a free port"))?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_is_found_by_name_then_in_the_venv_then_on_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let venv = dir.path().join("venv/bin/moto_server");
        let on_path = dir.path().join("bin");
        std::fs::create_dir_all(venv.parent().expect("a parent")).expect("mkdir");
        std::fs::create_dir_all(&on_path).expect("mkdir");
        let named = dir.path().join("my-moto");

        let missing = find(None, &venv, Some(on_path.clone().into_os_string())).expect_err("nothing installed");
        let message = missing.to_string();
        assert!(message.contains("pip install 'moto[server]==5.2.6'"), "{message}");
        assert!(message.contains(MOTO_ENV), "{message}");

        std::fs::write(on_path.join("moto_server"), "").expect("write");
        assert_eq!(
            find(None, &venv, Some(on_path.clone().into_os_string())).expect("found"),
            on_path.join("moto_server")
        );
        std::fs::write(&venv, "").expect("write");
        assert_eq!(find(None, &venv, Some(on_path.clone().into_os_string())).expect("found"), venv);
        let wrong = find(Some(named.clone()), &venv, None).expect_err("named one missing");
        assert!(wrong.to_string().contains("my-moto"), "{wrong}");
        std::fs::write(&named, "").expect("write");
        assert_eq!(find(Some(named.clone()), &venv, None).expect("found"), named);
    }
}
