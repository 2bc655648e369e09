//! Reading what a registry returns: image manifests and multi-platform indexes (Docker v2
//! schema 2 and OCI, which share a shape), the platform pick, and the image config. Pure
//! functions of bytes; errors are reasons for [`crate::ImageError::BadImage`].

use crate::options::Platform;
use serde::{Deserialize, Serialize};

/// Docker v2 schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The manifest media types a pull accepts, in its `Accept` header.
pub const ACCEPTED: [&str; 4] = [DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX];

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
}

/// An image manifest: one config and the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub digest: String,
    pub platform: Option<(String, String, Option<String>)>,
}

/// What a manifest request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    Image(ImageManifest),
    Index(Vec<IndexEntry>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<RawIndexEntry>>,
}

#[derive(Deserialize)]
struct RawIndexEntry {
    digest: String,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Parses a manifest or index; `Err` says why it is not one gantry can run.
pub(crate) fn parse(bytes: &[u8]) -> Result<Fetched, String> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    match raw.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(
                "it has a Docker schema 1 manifest, which is not supported: push it again with a current tool".into()
            );
        }
        other => return Err(format!("unsupported manifest schemaVersion {other:?}")),
    }
    let media_type = raw.media_type.as_deref().unwrap_or_default();
    if let Some(manifests) = raw.manifests {
        if !matches!(media_type, "" | DOCKER_MANIFEST_LIST | OCI_INDEX) {
            return Err(format!("an index of media type {media_type} is not supported"));
        }
        let entries = manifests
            .into_iter()
            .map(|m| IndexEntry { digest: m.digest, platform: m.platform.map(|p| (p.os, p.architecture, p.variant)) })
            .collect();
        return Ok(Fetched::Index(entries));
    }
    if !matches!(media_type, "" | DOCKER_MANIFEST | OCI_MANIFEST) {
        return Err(format!("a manifest of media type {media_type} is not supported"));
    }
    let (Some(config), Some(layers)) = (raw.config, raw.layers) else {
        return Err("the manifest has no config or no layers".into());
    };
    if !matches!(
        config.media_type.as_str(),
        "application/vnd.docker.container.image.v1+json" | "application/vnd.oci.image.config.v1+json"
    ) {
        return Err(format!(
            "its config has media type {}, not a container image config (is this an artifact such as a Helm chart?)",
            config.media_type
        ));
    }
    for layer in &layers {
        let known = layer.media_type.starts_with("application/vnd.oci.image.layer.")
            || layer.media_type.starts_with("application/vnd.docker.image.rootfs.");
        if !known {
            return Err(format!(
                "layer {} has media type {}, not a container image layer",
                layer.digest, layer.media_type
            ));
        }
    }
    Ok(Fetched::Image(ImageManifest { config, layers }))
}

/// Picks the index entry for `wanted`; `Err` lists the platforms the index has.
pub(crate) fn pick_platform(entries: &[IndexEntry], wanted: &Platform) -> Result<String, Vec<String>> {
    let matching = entries
        .iter()
        .filter(|e| e.platform.as_ref().is_some_and(|(os, arch, _)| *os == wanted.os && *arch == wanted.architecture));
    // arm64 images may say variant v8 or nothing; prefer those over other variants.
    let mut best: Option<&IndexEntry> = None;
    for entry in matching {
        let plain = entry.platform.as_ref().is_some_and(|(_, _, v)| v.as_deref().is_none_or(|v| v == "v8"));
        if best.is_none() || plain {
            best = Some(entry);
            if plain {
                break;
            }
        }
    }
    best.map(|e| e.digest.clone()).ok_or_else(|| {
        entries
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .filter(|(os, arch, _)| os != "unknown" && arch != "unknown")
            .map(|(os, arch, variant)| match variant {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
            .collect()
    })
}

/// How a container from the image runs, from its config blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The entrypoint (may be empty).
    pub entrypoint: Vec<String>,
    /// The default arguments, or the command when there is no entrypoint (may be empty).
    pub cmd: Vec<String>,
    /// Environment entries, `KEY=VALUE`, as the image declares them.
    pub env: Vec<String>,
    /// The working directory, when set.
    pub working_dir: Option<String>,
    /// The user (`name`, `uid`, `uid:gid`, `name:group`), when set.
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct RawConfigFile {
    config: Option<RawConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

/// Parses an image config blob.
pub(crate) fn parse_config(bytes: &[u8]) -> Result<ImageConfig, String> {
    let file: RawConfigFile = serde_json::from_slice(bytes).map_err(|e| format!("its config is not valid: {e}"))?;
    let Some(c) = file.config else {
        return Ok(ImageConfig::default());
    };
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_and_oci_manifests() {
        for (manifest, config, layer) in [
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ] {
            let json = format!(
                r#"{{"schemaVersion":2,"mediaType":"{manifest}","config":{{"mediaType":"{config}","digest":"{D}","size":3}},"layers":[{{"mediaType":"{layer}","digest":"{D}","size":5}}]}}"#
            );
            let Ok(Fetched::Image(m)) = parse(json.as_bytes()) else { panic!("not parsed: {json}") };
            assert_eq!(m.layers.len(), 1);
            assert_eq!(m.config.size, 3);
        }
    }

    #[test]
    fn artifacts_and_schema1_are_refused() {
        let helm = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D}","size":1}},"layers":[]}}"#
        );
        assert!(parse(helm.as_bytes()).expect_err("helm").contains("not a container image config"));
        assert!(parse(br#"{"schemaVersion":1}"#).expect_err("v1").contains("schema 1"));
    }

    #[test]
    fn index_picks_the_platform_or_lists_what_it_has() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"digest":"sha256:a","platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"digest":"sha256:b","platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"digest":"sha256:c","platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        );
        let Ok(Fetched::Index(entries)) = parse(json.as_bytes()) else { panic!("index not parsed") };
        assert_eq!(pick_platform(&entries, &Platform::new("linux", "amd64")), Ok("sha256:b".to_string()));
        assert_eq!(
            pick_platform(&entries, &Platform::new("linux", "s390x")),
            Err(vec!["linux/arm/v7".to_string(), "linux/amd64".to_string()])
        );
    }

    #[test]
    fn config_fields() {
        let json = br#"{"architecture":"amd64","config":{"Entrypoint":["/bin/httpd"],"Cmd":null,"Env":["PATH=/bin"],"WorkingDir":"/www","User":""}}"#;
        let config = parse_config(json).expect("config");
        assert_eq!(config.entrypoint, vec!["/bin/httpd"]);
        assert!(config.cmd.is_empty());
        assert_eq!(config.working_dir.as_deref(), Some("/www"));
        assert_eq!(config.user, None);
    }
}
