//! A task's container: the OCI image it runs from and the host directories it sees. Apps write
//! it as `[container]` and `[[volumes]]`, jobs as `[run.container]` and `[[run.volumes]]`; the
//! agent pulls the image itself (no daemon) and runs the task in its own namespaces on an overlay
//! of the image's layers.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

/// The image a task runs from, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// `registry/repository:tag` or `registry/repository@sha256:<digest>`; Docker v2 and OCI
    /// manifests, multi-arch indexes (the agent's platform is picked).
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's cmd (the arguments after the entrypoint). `$NAME` and `${NAME}` are
    /// replaced with the task's environment, e.g. `"$PORT_HTTP"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Whether the agent asks the registry again when it has the image already.
    #[serde(default)]
    pub pull: PullPolicy,
    /// A secret whose value is `user:password` for the registry (basic auth or token auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<String>,
    /// The working directory inside the container; default: the image's, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// When an image is fetched from its registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Use the agent's cached image for this reference when it has one (the default).
    #[default]
    IfNotPresent,
    /// Resolve the reference at the registry at every launch (a moved tag is followed).
    Always,
}

/// A host directory mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// An absolute path on the agent's host; it must exist there.
    pub host_path: String,
    /// An absolute path inside the container (created when missing).
    pub container_path: String,
    /// `ro` (the default) or `rw`.
    #[serde(default)]
    pub mode: VolumeMode,
}

/// Whether a task may write to a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeMode {
    /// Read-only.
    #[default]
    Ro,
    /// Read-write.
    Rw,
}

impl ContainerSpec {
    /// Checks the image reference, the command and the secret name; `prefix` is the caller's
    /// path to `container` (`""` for an app, `"run."` for a job).
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let at = |field: &str| format!("{prefix}container.{field}");
        check_image_reference(&self.image).map_err(|m| ValidationError::new(at("image"), m))?;
        for (field, list) in [("entrypoint", &self.entrypoint), ("cmd", &self.cmd)] {
            if let Some(list) = list
                && (list.is_empty() && field == "entrypoint" || list.iter().any(|a| a.contains('\0')))
            {
                return Err(ValidationError::new(
                    at(field),
                    format!("`{field}` needs at least the program to run and no NUL characters"),
                ));
            }
        }
        if let Some(dir) = &self.working_dir
            && !dir.starts_with('/')
        {
            return Err(ValidationError::new(at("working_dir"), "the working directory must be an absolute path"));
        }
        if let Some(name) = &self.registry_auth {
            crate::security::validate_secret_name(name).map_err(|m| ValidationError::new(at("registry_auth"), m))?;
        }
        Ok(())
    }
}

/// Checks volumes; `prefix` as for [`ContainerSpec::validate`]. Volumes need a container.
pub fn validate_volumes(prefix: &str, volumes: &[Volume], has_container: bool) -> Result<(), ValidationError> {
    if !volumes.is_empty() && !has_container {
        return Err(ValidationError::new(
            format!("{prefix}volumes"),
            "volumes are mounted into a container: add a `container` section with an image",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = |field: &str| format!("{prefix}volumes[{i}].{field}");
        for (field, path) in [("host_path", &volume.host_path), ("container_path", &volume.container_path)] {
            let clean = path.starts_with('/') && !path.split('/').any(|part| part == "..") && !path.contains('\0');
            if !clean {
                return Err(ValidationError::new(at(field), format!("`{path}` must be an absolute path without `..`")));
            }
        }
        if volume.container_path.trim_end_matches('/').is_empty() {
            return Err(ValidationError::new(at("container_path"), "a volume cannot replace the container's `/`"));
        }
        if !seen.insert(volume.container_path.trim_end_matches('/')) {
            return Err(ValidationError::new(
                at("container_path"),
                format!("`{}` is mounted twice", volume.container_path),
            ));
        }
    }
    Ok(())
}

/// A light check of an image reference (the agent parses it fully): a name of lowercase
/// letters, digits, separators and `/`, optionally a registry host, a `:tag` and/or an
/// `@sha256:` digest of 64 hex digits.
pub fn check_image_reference(reference: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{reference}` is not an image reference ({why}); write e.g. `registry.example.com/team/web:1.4` or `team/web@sha256:<64 hex digits>`"
        ))
    };
    if reference.is_empty() || reference.len() > 4096 || reference.chars().any(char::is_whitespace) {
        return bad("empty, too long or with spaces");
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return bad("a digest is `sha256:` and 64 lowercase hex digits");
        }
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !tag.starts_with(['.', '-']);
        if !ok {
            return bad("a tag is 1 to 128 letters, digits, `_`, `.` and `-`");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    let path_ok = parts.iter().all(|part| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    });
    if name.is_empty() || !path_ok {
        return bad("repository names use lowercase letters, digits, `.`, `_`, `-` and `/`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_of_every_form_are_accepted_and_bad_ones_say_why() {
        for good in [
            "busybox",
            "team/web:1.4",
            "registry.example.com/team/web:1.4",
            "127.0.0.1:5000/web",
            "localhost:5000/team/web:v2",
            "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "r.io/web:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image_reference(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Team/Web", "lowercase"),
            ("web:", "a tag is"),
            ("web:bad tag", "spaces"),
            ("web@sha256:abc", "64 lowercase hex"),
            ("team//web", "lowercase letters"),
        ] {
            let message = check_image_reference(bad).expect_err(bad);
            assert!(message.contains(why), "{bad}: {message}");
            assert!(message.contains("write e.g."), "{message}");
        }
    }

    #[test]
    fn volumes_need_a_container_and_clean_distinct_paths() {
        let volume = |host: &str, inside: &str| Volume {
            host_path: host.into(),
            container_path: inside.into(),
            mode: VolumeMode::Ro,
        };
        assert_eq!(validate_volumes("", &[volume("/srv/data", "/data")], true), Ok(()));
        let error = validate_volumes("run.", &[volume("/srv/data", "/data")], false).expect_err("no container");
        assert_eq!(error.field, "run.volumes");
        let error = validate_volumes("", &[volume("srv", "/data")], true).expect_err("relative");
        assert_eq!(error.field, "volumes[0].host_path");
        let error = validate_volumes("", &[volume("/a", "/x/../etc")], true).expect_err("dot-dot");
        assert_eq!(error.field, "volumes[0].container_path");
        let error = validate_volumes("", &[volume("/a", "/")], true).expect_err("root");
        assert!(error.message.contains("`/`"));
        let error = validate_volumes("", &[volume("/a", "/d"), volume("/b", "/d/")], true).expect_err("twice");
        assert_eq!(error.field, "volumes[1].container_path");
    }

    #[test]
    fn container_sections_parse_with_their_defaults_and_refuse_unknown_keys() {
        let spec: ContainerSpec = toml_like(r#"{"image":"team/web:1.4","cmd":["/bin/httpd","-p","$PORT_HTTP"]}"#);
        assert_eq!(spec.pull, PullPolicy::IfNotPresent);
        assert_eq!(spec.validate(""), Ok(()));
        let spec: ContainerSpec = toml_like(r#"{"image":"web","pull":"always","entrypoint":[]}"#);
        assert_eq!(spec.pull, PullPolicy::Always);
        assert_eq!(spec.validate("run.").expect_err("empty entrypoint").field, "run.container.entrypoint");
        assert!(serde_json::from_str::<ContainerSpec>(r#"{"image":"web","imgae":"x"}"#).is_err());
        let volume: Volume = toml_like(r#"{"host_path":"/srv","container_path":"/data","mode":"rw"}"#);
        assert_eq!(volume.mode, VolumeMode::Rw);
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).expect("valid")
    }
}
