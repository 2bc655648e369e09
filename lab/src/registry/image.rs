//! Test images made from local files (never pulled from outside) and pushed to a
//! [`TestRegistry`] through the registry HTTP API: blobs by `POST /v2/<name>/blobs/uploads/`
//! then `PUT <location>?digest=`, manifests by `PUT /v2/<name>/manifests/<tag>`. Docker v2
//! schema 2 or OCI media types; gzip, zstd or uncompressed layers; whiteouts and opaque
//! directories for layer tests; multi-platform indexes by [`push_index`].

use super::TestRegistry;
use anyhow::{Context, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Every entry's modification time (fixed, so a layer's digest depends on its content only).
const MTIME: u64 = 1_700_000_000;

/// The busybox applets the [`TestImage::busybox`] image links to `/bin/busybox`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "cp", "dd", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id", "kill", "ls",
    "mkdir", "mv", "printf", "ps", "pwd", "rm", "sed", "seq", "sleep", "sync", "tail", "test", "touch", "true", "wc",
    "wget", "whoami", "yes",
];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`tar.gzip` / `tar+gzip` media types), fastest level.
    #[default]
    Gzip,
    /// zstd (`tar+zstd`; OCI only, Docker has no such media type).
    Zstd,
    /// A plain tar.
    None,
}

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Docker v2 schema 2 (manifest list for indexes).
    #[default]
    Docker,
    /// OCI image manifest (image index for indexes).
    Oci,
}

#[derive(Debug, Clone)]
enum Kind {
    File(Arc<Vec<u8>>),
    HostFile(PathBuf),
    Dir,
    Symlink(String),
    Hardlink(String),
    CharDevice(u32, u32),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// One layer of a [`TestImage`]: entries in the order they go into the tar. Parent
/// directories are added (0755, root) where not given.
#[derive(Debug, Clone, Default)]
pub struct TestLayer {
    entries: Vec<Entry>,
    compression: Compression,
}

impl TestLayer {
    /// An empty gzip layer.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, path: &str, kind: Kind, mode: u32) -> Self {
        let path = path.trim_start_matches('/').to_string();
        self.entries.push(Entry { path, kind, mode, uid: 0, gid: 0 });
        self
    }

    /// A regular file with `data`.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.push(path, Kind::File(Arc::new(data.into())), mode)
    }

    /// A regular file with the content of `host_path` on this machine (read when built).
    pub fn host_file(self, path: &str, host_path: impl Into<PathBuf>, mode: u32) -> Self {
        self.push(path, Kind::HostFile(host_path.into()), mode)
    }

    /// A file of `bytes` random (incompressible) bytes from /dev/urandom.
    pub fn random_file(self, path: &str, bytes: usize) -> anyhow::Result<Self> {
        let mut data = vec![0u8; bytes];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .context("reading /dev/urandom")?;
        Ok(self.file(path, data, 0o644))
    }

    /// A directory.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(path, Kind::Dir, mode)
    }

    /// A symlink at `path` pointing to `target` (as written, relative or absolute).
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, Kind::Symlink(target.to_string()), 0o777)
    }

    /// A hard link at `path` to the earlier entry `target` (a path in the layer).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(path, Kind::Hardlink(target.trim_start_matches('/').to_string()), 0o644)
    }

    /// A character device node.
    pub fn char_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        self.push(path, Kind::CharDevice(major, minor), mode)
    }

    /// An OCI whiteout: `path` (from a lower layer) is deleted (`<dir>/.wh.<name>`).
    pub fn whiteout(self, path: &str) -> Self {
        let path = path.trim_start_matches('/');
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let marker = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
        self.file(&marker, Vec::new(), 0o644)
    }

    /// An OCI opaque marker: `dir`'s content in lower layers is hidden (`<dir>/.wh..wh..opq`).
    pub fn opaque(self, dir: &str) -> Self {
        let dir = dir.trim_matches('/');
        self.file(&format!("{dir}/.wh..wh..opq"), Vec::new(), 0o644)
    }

    /// Sets the owner of the last entry added.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        if let Some(last) = self.entries.last_mut() {
            last.uid = uid;
            last.gid = gid;
        }
        self
    }

    /// How the layer blob is compressed (gzip by default).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// `/bin/busybox` (this machine's, from Debian's busybox-static) with its applets as
    /// symlinks, the usual top-level directories, and `/etc/passwd` and `/etc/group` with
    /// root and nobody.
    pub fn busybox() -> anyhow::Result<Self> {
        let busybox = PathBuf::from("/bin/busybox");
        if !busybox.is_file() {
            bail!("/bin/busybox is missing (Debian package busybox-static)");
        }
        let mut layer = Self::new();
        for dir in ["bin", "etc", "dev", "proc", "sys", "root", "var", "www"] {
            layer = layer.dir(dir, 0o755);
        }
        layer = layer.dir("tmp", 0o1777).host_file("bin/busybox", busybox, 0o755);
        for applet in BUSYBOX_APPLETS {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
        Ok(layer
            .file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                0o644,
            )
            .file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644))
    }

    /// The tar blob, its media type in `format`, and the digest of the uncompressed tar.
    fn build(&self, format: ManifestFormat) -> anyhow::Result<(Vec<u8>, &'static str, String)> {
        let tar = self.tar()?;
        let diff_id = digest(&tar);
        let (blob, media_type) = match (self.compression, format) {
            (Compression::Gzip, ManifestFormat::Docker) => {
                (gzip(&tar)?, "application/vnd.docker.image.rootfs.diff.tar.gzip")
            }
            (Compression::Gzip, ManifestFormat::Oci) => (gzip(&tar)?, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (Compression::Zstd, ManifestFormat::Oci) => (
                ruzstd::encoding::compress_to_vec(tar.as_slice(), ruzstd::encoding::CompressionLevel::Fastest),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (Compression::Zstd, ManifestFormat::Docker) => {
                bail!("Docker manifests have no zstd layer media type: use ManifestFormat::Oci")
            }
            (Compression::None, ManifestFormat::Docker) => (tar, "application/vnd.docker.image.rootfs.diff.tar"),
            (Compression::None, ManifestFormat::Oci) => (tar, "application/vnd.oci.image.layer.v1.tar"),
        };
        Ok((blob, media_type, diff_id))
    }

    fn tar(&self) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::HashSet::new();
        for entry in &self.entries {
            let path = entry.path.trim_end_matches('/');
            let mut parent = String::new();
            for part in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
                parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
                if dirs.insert(parent.clone()) {
                    append(
                        &mut builder,
                        &Entry { path: parent.clone(), kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0 },
                    )?;
                }
            }
            if matches!(entry.kind, Kind::Dir) && !dirs.insert(path.to_string()) {
                continue;
            }
            append(&mut builder, entry)?;
        }
        builder.into_inner().context("finishing a tar")
    }
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(MTIME);
    header.set_size(0);
    let path = entry.path.as_str();
    let result = match &entry.kind {
        Kind::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_slice())
        }
        Kind::HostFile(host) => {
            let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_slice())
        }
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, format!("{path}/"), std::io::empty())
        }
        Kind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, path, target)
        }
        Kind::Hardlink(target) => {
            header.set_entry_type(tar::EntryType::Link);
            builder.append_link(&mut header, path, target)
        }
        Kind::CharDevice(major, minor) => {
            header.set_entry_type(tar::EntryType::Char);
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
            builder.append_data(&mut header, path, std::io::empty())
        }
    };
    result.with_context(|| format!("adding {path} to a tar"))
}

/// An image: layers (bottom first), config, media types and platform.
#[derive(Debug, Clone)]
pub struct TestImage {
    layers: Vec<TestLayer>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    format: ManifestFormat,
    os: String,
    architecture: String,
}

/// What a push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The manifest's digest (`sha256:<hex>`).
    pub manifest_digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's size in bytes.
    pub manifest_size: usize,
    /// The config blob's digest.
    pub config_digest: String,
    /// The layer blobs' digests, bottom first.
    pub layer_digests: Vec<String>,
    /// The layer blobs' sizes in bytes, bottom first.
    pub layer_sizes: Vec<usize>,
}

impl Default for TestImage {
    fn default() -> Self {
        Self {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
            user: None,
            workdir: None,
            format: ManifestFormat::Docker,
            os: "linux".to_string(),
            architecture: host_architecture().to_string(),
        }
    }
}

impl TestImage {
    /// An image without layers, Docker media types, for linux on this machine's architecture.
    pub fn new() -> Self {
        Self::default()
    }

    /// One [`TestLayer::busybox`] layer, command `/bin/sh`.
    pub fn busybox() -> anyhow::Result<Self> {
        Ok(Self::new().layer(TestLayer::busybox()?).cmd(&["/bin/sh"]))
    }

    /// The busybox image plus a layer holding `/data/random`, `bytes` of incompressible data
    /// (e.g. 50 MB for the pull benchmark).
    pub fn busybox_with_random(bytes: usize) -> anyhow::Result<Self> {
        Ok(Self::busybox()?.layer(TestLayer::new().random_file("data/random", bytes)?))
    }

    /// Adds a layer on top.
    pub fn layer(mut self, layer: TestLayer) -> Self {
        self.layers.push(layer);
        self
    }

    /// The entrypoint.
    pub fn entrypoint(mut self, entrypoint: &[&str]) -> Self {
        self.entrypoint = Some(entrypoint.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The command (arguments to the entrypoint, if any).
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = Some(cmd.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds an environment entry `KEY=VALUE`.
    pub fn env(mut self, entry: &str) -> Self {
        self.env.push(entry.to_string());
        self
    }

    /// The user (`name`, `uid` or `uid:gid`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// The working directory.
    pub fn workdir(mut self, dir: &str) -> Self {
        self.workdir = Some(dir.to_string());
        self
    }

    /// The media types (Docker by default).
    pub fn format(mut self, format: ManifestFormat) -> Self {
        self.format = format;
        self
    }

    /// The platform the config (and an index entry) names.
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.to_string();
        self.architecture = architecture.to_string();
        self
    }

    /// Pushes the image's blobs and manifest to `registry` as `name` (`repository[:tag]`;
    /// without a tag, by digest only). Returns what was stored.
    pub async fn push(&self, registry: &TestRegistry, name: &str) -> anyhow::Result<PushedImage> {
        let (repository, tag) = split_name(name);
        let pusher = Pusher::new(registry)?;
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        for layer in &self.layers {
            let (blob, media_type, diff_id) = layer.build(self.format)?;
            let blob_digest = digest(&blob);
            pusher.blob(repository, &blob, &blob_digest).await?;
            diff_ids.push(diff_id);
            layers.push(json!({"mediaType": media_type, "size": blob.len(), "digest": blob_digest}));
        }
        let mut config = serde_json::Map::new();
        let optional = [
            ("Entrypoint", json!(self.entrypoint)),
            ("Cmd", json!(self.cmd)),
            ("User", json!(self.user)),
            ("WorkingDir", json!(self.workdir)),
        ];
        for (key, value) in optional {
            if !value.is_null() {
                config.insert(key.to_string(), value);
            }
        }
        config.insert("Env".to_string(), json!(self.env));
        let config = serde_json::to_vec(&json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "gantry-lab TestImage"}],
        }))?;
        let config_digest = digest(&config);
        pusher.blob(repository, &config, &config_digest).await?;
        let (media_type, config_type) = match self.format {
            ManifestFormat::Docker => (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
            ),
            ManifestFormat::Oci => {
                ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json")
            }
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": layers,
        }))?;
        let manifest_digest = pusher.manifest(repository, tag, &manifest, media_type).await?;
        Ok(PushedImage {
            manifest_digest,
            media_type: media_type.to_string(),
            manifest_size: manifest.len(),
            config_digest,
            layer_digests: layers.iter().filter_map(|l| l["digest"].as_str().map(str::to_string)).collect(),
            layer_sizes: layers.iter().filter_map(|l| l["size"].as_u64().map(|s| s as usize)).collect(),
        })
    }
}

/// Pushes each image by digest, then an index (Docker manifest list or OCI image index) of
/// them as `name`, each entry with its image's platform. Returns the index's digest.
pub async fn push_index(
    registry: &TestRegistry,
    name: &str,
    images: &[&TestImage],
    format: ManifestFormat,
) -> anyhow::Result<String> {
    let (repository, tag) = split_name(name);
    let mut manifests = Vec::new();
    for image in images {
        let pushed = image.push(registry, repository).await?;
        manifests.push(json!({
            "mediaType": pushed.media_type,
            "size": pushed.manifest_size,
            "digest": pushed.manifest_digest,
            "platform": {"architecture": image.architecture, "os": image.os},
        }));
    }
    let media_type = match format {
        ManifestFormat::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        ManifestFormat::Oci => "application/vnd.oci.image.index.v1+json",
    };
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}))?;
    Pusher::new(registry)?.manifest(repository, tag, &index, media_type).await
}

/// `repository[:tag]` → (repository, tag).
fn split_name(name: &str) -> (&str, Option<&str>) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// OCI's name for this machine's architecture.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The registry's push API (over HTTPS trusting its CA alone when it serves TLS), with the
/// registry's basic auth if it has one.
struct Pusher {
    client: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Pusher {
    fn new(registry: &TestRegistry) -> anyhow::Result<Self> {
        // reqwest wants a rustls provider even for plain HTTP; the workspace's is ring
        // (deprecated by rustls only for its lack of post-quantum key exchange).
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = registry.ca_pem() {
            let pem = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).context("the test CA")?);
        }
        let client = builder.build().context("building an HTTP client")?;
        let auth = registry.basic_auth().map(|(u, p)| (u.to_string(), p.to_string()));
        Ok(Self { client, base: registry.base_url(), auth })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url);
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads a blob unless the repository has it.
    async fn blob(&self, repository: &str, bytes: &[u8], digest: &str) -> anyhow::Result<()> {
        let head = self
            .request(reqwest::Method::HEAD, &format!("{}/v2/{repository}/blobs/{digest}", self.base))
            .send()
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        let started = self
            .request(reqwest::Method::POST, &format!("{}/v2/{repository}/blobs/uploads/", self.base))
            .send()
            .await?;
        if started.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "starting an upload to {repository}: {} {}",
                started.status(),
                started.text().await.unwrap_or_default()
            );
        }
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .context("the registry's upload answer has no Location")?
            .to_string();
        let url = if location.starts_with("http") { location } else { format!("{}{location}", self.base) };
        let separator = if url.contains('?') { '&' } else { '?' };
        let done = self
            .request(reqwest::Method::PUT, &format!("{url}{separator}digest={digest}"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await?;
        if done.status() != reqwest::StatusCode::CREATED {
            bail!(
                "uploading blob {digest} to {repository}: {} {}",
                done.status(),
                done.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Stores a manifest under `tag` (or its digest); returns its digest.
    async fn manifest(
        &self,
        repository: &str,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<String> {
        let manifest_digest = digest(bytes);
        let reference = tag.unwrap_or(&manifest_digest);
        let answer = self
            .request(reqwest::Method::PUT, &format!("{}/v2/{repository}/manifests/{reference}", self.base))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await?;
        if answer.status() != reqwest::StatusCode::CREATED {
            bail!(
                "putting manifest {repository}:{reference}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(manifest_digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_tag() {
        assert_eq!(split_name("team/web:1.4"), ("team/web", Some("1.4")));
        assert_eq!(split_name("team/web"), ("team/web", None));
    }

    #[test]
    fn layers_hold_parents_whiteouts_and_links() {
        let layer = TestLayer::new()
            .file("a/b/c.txt", "x", 0o600)
            .owner(1000, 1000)
            .whiteout("a/gone")
            .opaque("d")
            .hardlink("a/h", "a/b/c.txt");
        let tar = layer.tar().expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, ["a/", "a/b/", "a/b/c.txt", "a/.wh.gone", "d/", "d/.wh..wh..opq", "a/h"]);
    }
}
