//! What a container task runs, worked out by the agent before it starts the executor: the
//! program and its arguments (image entrypoint and cmd, or the app's), the environment (the
//! image's, then the task's), the user (the app's or the image's, looked up in the image's
//! `/etc/passwd` and `/etc/group`), the working directory and the mounts. Pure: it reads only
//! the unpacked layers, so a missing program or user is found here with a clear message, before
//! anything is started.

use super::{BindMount, ContainerLaunch, SANDBOX_PATH};
use gantry_api::protocol::LaunchTask;
use gantry_api::{ContainerSpec, VolumeMode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The parts of a pulled image a container needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageParts {
    /// The manifest digest (what the task runs, whatever the tag says later).
    pub digest: String,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// The image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The image's cmd.
    pub cmd: Option<Vec<String>>,
    /// The image's environment, `NAME=value`.
    pub env: Vec<String>,
    /// The image's working directory.
    pub working_dir: Option<String>,
    /// The image's user: `name`, `uid`, `name:group`, `uid:gid`.
    pub user: Option<String>,
}

/// A container task that cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Neither the app nor the image says what to run.
    #[error("image {image} has no entrypoint or cmd and the app gives no command: set `container.cmd`")]
    NoCommand {
        /// The image reference.
        image: String,
    },
    /// The program is not in the image.
    #[error("image {image} has no `{program}`{searched}: fix `container.cmd` or the image")]
    NoProgram {
        /// The image reference.
        image: String,
        /// The program as written.
        program: String,
        /// Where it was looked for, for a name without `/`.
        searched: String,
    },
    /// The user is not in the image.
    #[error("image {image} has no user `{user}` in /etc/passwd: use a numeric `uid:gid` or a user the image has")]
    NoUser {
        /// The image reference.
        image: String,
        /// The user as written.
        user: String,
    },
}

/// Works out the container of `launch` (whose `container` is `Some`) from the pulled `image`.
/// `env` is the task's environment as for a process task; `sandbox` its host sandbox;
/// `hostname` the name the container sees.
pub fn plan(
    launch: &LaunchTask,
    spec: &ContainerSpec,
    image: &ImageParts,
    env: &BTreeMap<String, String>,
    sandbox: &Path,
    hostname: &str,
) -> Result<ContainerLaunch, PlanError> {
    let mut full_env: BTreeMap<String, String> =
        image.env.iter().filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    full_env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.to_string());
    full_env.entry("HOME".into()).or_insert_with(|| "/".to_string());
    full_env.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    full_env.insert("GANTRY_SANDBOX".into(), SANDBOX_PATH.into());
    full_env.insert("HOSTNAME".into(), hostname.into());

    let expand = |args: &[String]| args.iter().map(|a| expand_vars(a, &full_env)).collect::<Vec<_>>();
    let mut argv = if let Some(cmd) = &launch.cmd {
        vec!["/bin/sh".to_string(), "-c".to_string(), cmd.clone()]
    } else {
        let entrypoint = spec.entrypoint.as_deref().map(&expand).or_else(|| image.entrypoint.clone());
        let cmd = match (&spec.cmd, &launch.args) {
            (Some(cmd), _) => Some(expand(cmd)),
            (None, Some(args)) => Some(args.clone()),
            // An entrypoint given by the app drops the image's cmd, as `docker run --entrypoint`.
            (None, None) if spec.entrypoint.is_some() => None,
            (None, None) => image.cmd.clone(),
        };
        entrypoint.unwrap_or_default().into_iter().chain(cmd.unwrap_or_default()).collect()
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(PlanError::NoCommand { image: spec.image.clone() });
    }
    let path = full_env.get("PATH").cloned().unwrap_or_default();
    argv[0] = resolve_program(&image.layers, &argv[0], &path).ok_or_else(|| PlanError::NoProgram {
        image: spec.image.clone(),
        program: argv[0].clone(),
        searched: if argv[0].contains('/') { String::new() } else { format!(" on PATH {path}") },
    })?;

    let user_text = launch.user.clone().or_else(|| image.user.clone().filter(|u| !u.is_empty()));
    let (uid, gid) = match &user_text {
        None => (0, 0),
        Some(user) => resolve_user(&image.layers, user)
            .ok_or_else(|| PlanError::NoUser { image: spec.image.clone(), user: user.clone() })?,
    };
    let working_dir = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|d| d.starts_with('/')))
        .unwrap_or_else(|| "/".to_string());

    let mut mounts = vec![BindMount { source: sandbox.to_path_buf(), target: SANDBOX_PATH.into(), read_only: false }];
    mounts.extend(launch.volumes.iter().map(|v| BindMount {
        source: PathBuf::from(&v.host_path),
        target: v.container_path.clone(),
        read_only: v.mode == VolumeMode::Ro,
    }));
    let rootfs = sandbox.join(ROOTFS_DIR);
    Ok(ContainerLaunch {
        image: spec.image.clone(),
        digest: image.digest.clone(),
        layers: image.layers.clone(),
        upper: rootfs.join("upper"),
        work: rootfs.join("work"),
        merged: rootfs.join("merged"),
        argv,
        env: full_env,
        uid,
        gid,
        working_dir,
        hostname: hostname.to_string(),
        mounts,
        devices: Vec::new(),
    })
}

/// The sandbox directory holding the container's overlay (upper, work and mount point).
pub const ROOTFS_DIR: &str = "rootfs";

/// `PATH` of a container whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Replaces `$NAME` and `${NAME}` with their values in `env` (unknown names stay as written;
/// `$$` is a literal `$`).
pub fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        match env.get(name).filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[at..at + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// Finds `path` (absolute, inside the container) in the layers, top layer first, following
/// symlinks inside the image; returns the layer path of the entry, or `None` when no layer has
/// it or an upper layer deleted it (a whiteout).
pub fn find_in_layers(layers: &[PathBuf], path: &str) -> Option<PathBuf> {
    let mut current = path.to_string();
    for _ in 0..16 {
        let relative = current.trim_start_matches('/');
        let mut found = None;
        for layer in layers.iter().rev() {
            let candidate = layer.join(relative);
            if is_whiteout(&candidate) {
                return None;
            }
            if candidate.symlink_metadata().is_ok() {
                found = Some(candidate);
                break;
            }
        }
        let entry = found?;
        match std::fs::read_link(&entry) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                current = if target.starts_with('/') {
                    target
                } else {
                    let parent = Path::new(&current).parent().map_or("/".into(), |p| p.display().to_string());
                    format!("{}/{target}", parent.trim_end_matches('/'))
                };
            }
            Err(_) => return Some(entry),
        }
    }
    None
}

fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

use std::os::unix::fs::MetadataExt;

/// The absolute in-container path of `program`: as written when it has a `/`, else the first
/// `PATH` entry whose directory holds it. `None` when the image has no such file.
fn resolve_program(layers: &[PathBuf], program: &str, path: &str) -> Option<String> {
    if program.contains('/') {
        let absolute = if program.starts_with('/') { program.to_string() } else { format!("/{program}") };
        return find_in_layers(layers, &absolute).map(|_| absolute);
    }
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
        .find(|candidate| find_in_layers(layers, candidate).is_some_and(|p| p.is_file()))
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`) against the image's `/etc/passwd`
/// and `/etc/group`.
fn resolve_user(layers: &[PathBuf], user: &str) -> Option<(u32, u32)> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = find_in_layers(layers, "/etc/passwd").and_then(|p| std::fs::read_to_string(p).ok());
    let entry = passwd.as_deref().and_then(|text| {
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && (f[0] == user_part || f[2] == user_part && user_part.parse::<u32>().is_ok()))
    });
    let (uid, primary_gid) = match (entry, user_part.parse::<u32>()) {
        (Some(f), _) => (f[2].parse().ok()?, f[3].parse().ok()?),
        // A numeric uid need not be in the image's passwd (gid = uid then, as runc).
        (None, Ok(uid)) => (uid, uid),
        (None, Err(_)) => return None,
    };
    let gid = match group_part {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = find_in_layers(layers, "/etc/group").and_then(|p| std::fs::read_to_string(p).ok())?;
                groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[0] == group)?[2]
                    .parse()
                    .ok()?
            }
        },
    };
    Some((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{PullPolicy, Resources, Volume};

    fn launch() -> LaunchTask {
        LaunchTask {
            task_id: "web.1".into(),
            app_id: "web".into(),
            cmd: None,
            args: None,
            env: BTreeMap::new(),
            resources: Resources::default(),
            ports: Vec::new(),
            health_checks: Vec::new(),
            kill_grace_period_secs: 1.0,
            secrets: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            secret_values: Default::default(),
            user: None,
            container: None,
            volumes: vec![Volume {
                host_path: "/srv/data".into(),
                container_path: "/data".into(),
                mode: Default::default(),
            }],
        }
    }

    fn spec(cmd: Option<&[&str]>) -> ContainerSpec {
        ContainerSpec {
            image: "team/web:1.4".into(),
            entrypoint: None,
            cmd: cmd.map(|c| c.iter().map(|s| s.to_string()).collect()),
            pull: PullPolicy::IfNotPresent,
            registry_auth: None,
            working_dir: None,
        }
    }

    /// Two layers: busybox and its links in the lower, a user and a deleted file in the upper.
    fn layers(dir: &Path) -> Vec<PathBuf> {
        let (lower, upper) = (dir.join("l1"), dir.join("l2"));
        for d in [lower.join("bin"), lower.join("etc"), upper.join("etc"), upper.join("bin")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(lower.join("bin/busybox"), b"\x7fELF").expect("write");
        std::os::unix::fs::symlink("busybox", lower.join("bin/httpd")).expect("link");
        std::os::unix::fs::symlink("/bin/busybox", lower.join("bin/sh")).expect("link");
        std::fs::write(lower.join("bin/gone"), b"x").expect("write");
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").expect("write");
        std::fs::write(upper.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nwww:x:33:34::/:/bin/sh\n").expect("write");
        std::fs::write(upper.join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("write");
        // A whiteout as the image store leaves it needs mknod (root); a plain file stands in
        // where it cannot be made, and the test of whiteouts is skipped.
        let _ = nix::sys::stat::mknod(
            &upper.join("bin/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        );
        vec![lower, upper]
    }

    #[test]
    fn the_image_command_runs_with_the_image_env_under_the_task_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = ImageParts {
            digest: "sha256:d".into(),
            layers: layers(dir.path()),
            entrypoint: None,
            cmd: Some(vec!["httpd".into(), "-f".into()]),
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: Some("/www".into()),
            user: Some("www".into()),
        };
        let env = BTreeMap::from([("MODE".to_string(), "task".to_string()), ("PORT_HTTP".into(), "31001".into())]);
        let sandbox = dir.path().join("sandbox");
        let planned = plan(&launch(), &spec(None), &image, &env, &sandbox, "h1").expect("plan");
        assert_eq!(planned.argv, ["/bin/httpd", "-f"]);
        assert_eq!(planned.env["MODE"], "task");
        assert_eq!(planned.env["PATH"], "/bin");
        assert_eq!(planned.env["GANTRY_SANDBOX"], SANDBOX_PATH);
        assert_eq!((planned.uid, planned.gid), (33, 34), "the upper layer's passwd wins");
        assert_eq!(planned.working_dir, "/www");
        assert_eq!(planned.upper, sandbox.join("rootfs/upper"));
        assert_eq!(planned.mounts[0].target, SANDBOX_PATH);
        assert_eq!(planned.mounts[1].target, "/data");
        assert!(planned.mounts[1].read_only, "volumes are read-only by default");

        let with_cmd = spec(Some(&["/bin/httpd", "-p", "$PORT_HTTP", "${MODE}", "$$HOME", "$NOPE"]));
        let planned = plan(&launch(), &with_cmd, &image, &env, &sandbox, "h1").expect("plan");
        assert_eq!(planned.argv, ["/bin/httpd", "-p", "31001", "task", "$HOME", "$NOPE"]);

        let shell = LaunchTask { cmd: Some("echo hi".into()), user: Some("0:staff".into()), ..launch() };
        let planned = plan(&shell, &spec(None), &image, &env, &sandbox, "h1").expect("plan");
        assert_eq!(planned.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!((planned.uid, planned.gid), (0, 50));
    }

    #[test]
    fn a_missing_program_command_or_user_is_named_before_anything_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = ImageParts { layers: layers(dir.path()), ..ImageParts::default() };
        let sandbox = dir.path().join("sandbox");
        let env = BTreeMap::new();
        let error = plan(&launch(), &spec(None), &image, &env, &sandbox, "h").expect_err("no command");
        assert!(error.to_string().contains("set `container.cmd`"), "{error}");
        let error = plan(&launch(), &spec(Some(&["nginx"])), &image, &env, &sandbox, "h").expect_err("absent");
        assert!(error.to_string().contains("has no `nginx` on PATH /usr/local/sbin"), "{error}");
        let error = plan(&launch(), &spec(Some(&["/usr/bin/nginx"])), &image, &env, &sandbox, "h").expect_err("abs");
        assert_eq!(
            error,
            PlanError::NoProgram {
                image: "team/web:1.4".into(),
                program: "/usr/bin/nginx".into(),
                searched: "".into()
            }
        );
        let ghost = LaunchTask { user: Some("ghost".into()), ..launch() };
        let error = plan(&ghost, &spec(Some(&["/bin/sh"])), &image, &env, &sandbox, "h").expect_err("user");
        assert!(error.to_string().contains("no user `ghost`"), "{error}");
        let numeric = LaunchTask { user: Some("1234".into()), ..launch() };
        let planned = plan(&numeric, &spec(Some(&["/bin/sh"])), &image, &env, &sandbox, "h").expect("uid");
        assert_eq!((planned.uid, planned.gid), (1234, 1234));
        if nix::unistd::Uid::effective().is_root() {
            let error = plan(&launch(), &spec(Some(&["/bin/gone"])), &image, &env, &sandbox, "h").expect_err("wh");
            assert!(matches!(error, PlanError::NoProgram { .. }), "a whiteout hides the lower file: {error}");
        }
    }
}
