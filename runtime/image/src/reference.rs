//! Image references as users write them: `[registry/]repository[:tag][@sha256:<64 hex>]`, with
//! Docker Hub's defaults (no registry → `docker.io`, a one-part repository → `library/<name>`,
//! no tag and no digest → `latest`). Parsing only; nothing here talks to a registry.

use crate::error::ImageError;
use std::fmt;

/// The default registry for references that name none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `host[:port]` of the registry.
    pub registry: String,
    /// The repository path, e.g. `team/web` or `library/busybox`.
    pub repository: String,
    /// The tag, when one was given (or `latest` when neither tag nor digest was).
    pub tag: Option<String>,
    /// The manifest digest `sha256:<hex>`, when one was given; it wins over the tag.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference; errors say which part is wrong.
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        let bad =
            |reason: &str| ImageError::InvalidReference { reference: input.to_string(), reason: reason.to_string() };
        if input.is_empty() {
            return Err(bad("it is empty; write e.g. registry.example.com/team/web:1.4"));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(bad("it contains whitespace"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest).map_err(|r| bad(&r))?)),
            None => (input, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| bad(&r))?;
        }
        let (registry, repository) = split_registry(name);
        check_registry(registry).map_err(|r| bad(&r))?;
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        check_repository(&repository).map_err(|r| bad(&r))?;
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self { registry: registry.to_string(), repository, tag, digest })
    }

    /// The same repository at another manifest digest (no tag).
    pub fn with_digest(&self, digest: &str) -> Self {
        Self { digest: Some(digest.to_string()), tag: None, ..self.clone() }
    }

    /// The reference in oci-client's form.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.digest, &self.tag) {
            (Some(digest), _) => oci_client::Reference::with_digest(registry, repository, digest.clone()),
            (None, tag) => {
                oci_client::Reference::with_tag(registry, repository, tag.clone().unwrap_or_else(|| "latest".into()))
            }
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageReference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the registry: the first path component is one when it has a `.` or `:` or is
/// `localhost` (Docker's rule); otherwise the registry is Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (first, rest),
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// Validates a `sha256:<64 lowercase hex>` digest and returns it.
pub(crate) fn parse_digest(digest: &str) -> Result<String, String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} has no algorithm; write sha256:<64 hex digits>"));
    };
    if algorithm != "sha256" {
        return Err(format!("digest algorithm {algorithm:?} is not supported; only sha256 is"));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("digest {digest:?} is not sha256: followed by 64 lowercase hex digits"));
    }
    Ok(digest.to_string())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid_first = tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let valid_rest = tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.is_empty() || tag.len() > 128 || !valid_first || !valid_rest {
        return Err(format!(
            "tag {tag:?} is not valid: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err(format!("registry {registry:?} has an unclosed '['")),
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !host_ok {
        return Err(format!("registry host {host:?} is not a host name or address"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("registry port {port:?} is not a port number"));
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_string());
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(format!("repository {repository:?} has an empty path component"));
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("repository {repository:?} must be lowercase"));
        }
        let chars_ok =
            component.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        let ends_ok = component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !chars_ok || !ends_ok {
            return Err(format!(
                "repository component {component:?} may hold only lowercase letters, digits and \
                 '.', '_', '-' between them"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parsed(s: &str) -> ImageReference {
        ImageReference::parse(s).expect("valid reference")
    }

    #[test]
    fn docker_hub_defaults() {
        let r = parsed("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(parsed("team/web:2").to_string(), "docker.io/team/web:2");
    }

    #[test]
    fn registry_port_tag_and_digest() {
        let r = parsed("127.0.0.1:5000/team/web:1.4");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/web", Some("1.4"))
        );
        let d = parsed(&format!("registry.example.com/team/web@sha256:{HEX}"));
        assert_eq!(d.tag, None);
        assert_eq!(d.digest.as_deref(), Some(format!("sha256:{HEX}").as_str()));
        assert_eq!(parsed("localhost/web").registry, "localhost");
        assert_eq!(parsed("[::1]:5000/web:1").registry, "[::1]:5000");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let reason = |s: &str| ImageReference::parse(s).expect_err("invalid").to_string();
        assert!(reason("").contains("empty"));
        assert!(reason("Team/web").contains("lowercase"));
        assert!(reason("web:-x").contains("tag"));
        assert!(reason("web@md5:abc").contains("only sha256"));
        assert!(reason("web@sha256:abc").contains("64 lowercase hex"));
        assert!(reason("host:99999/web").contains("port"));
        assert!(reason("reg.io//web").contains("empty path component"));
    }
}
