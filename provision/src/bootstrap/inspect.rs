//! `inspect`: what the host is — OS, architecture, whether systemd runs (`/run/systemd/system`)
//! — and whether gantry's directory can be written there, so a login user without the rights
//! is told to use sudo before anything is uploaded.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome, quote};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// What `inspect` found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -s`, e.g. `Linux`.
    pub os: String,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
    /// Whether systemd is the running init system.
    pub systemd: bool,
}

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Inspect;

const SCRIPT: &str = "uname -s; uname -m; if test -d /run/systemd/system; then echo systemd; else echo none; fi";

/// Prints `writable`, or `read-only DIR` with the nearest existing directory of `root`.
fn writable_script(root: &str) -> String {
    format!(
        "d={}; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; \
         if [ -w \"$d\" ]; then echo writable; else echo \"read-only $d\"; fi",
        quote(root)
    )
}

impl Phase for Inspect {
    fn name(&self) -> &'static str {
        "inspect"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let root = host.access.layout.root.display().to_string();
            let script = format!("{SCRIPT}; {}", writable_script(&root));
            let output = host.sh(self.name(), &script, Duration::from_secs(30)).await?;
            let mut lines = output.stdout.lines().map(str::trim);
            let os = lines.next().unwrap_or_default().to_string();
            let arch = lines.next().unwrap_or_default().to_string();
            let systemd = lines.next() == Some("systemd");
            if let Some(dir) = lines.next().and_then(|l| l.strip_prefix("read-only ")) {
                return Err(BootstrapError::Unsupported {
                    host: host.name.clone(),
                    message: format!(
                        "the login user cannot write {dir}, where gantry installs {root} \
                         (hint: set `sudo = true` for this host or in [ssh], or choose an install_dir it can write)"
                    ),
                });
            }
            if os != "Linux" {
                return Err(BootstrapError::Unsupported {
                    host: host.name.clone(),
                    message: format!("gantry runs on Linux, this host runs `{os}`"),
                });
            }
            if arch != std::env::consts::ARCH {
                return Err(BootstrapError::Unsupported {
                    host: host.name.clone(),
                    message: format!("the host is {arch} but this gantry binary is {}", std::env::consts::ARCH),
                });
            }
            let facts = HostFacts { os, arch, systemd };
            let init = if host.access.use_systemd && systemd { "systemd" } else { "gantry supervisor" };
            let summary = format!("{} {}, {init}", facts.os, facts.arch);
            host.facts = Some(facts);
            Ok(PhaseOutcome::Done(summary))
        })
    }
}
