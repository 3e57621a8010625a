//! Which repositories are served from which upstream: `[[proxy]]` rules
//! and the names a request's repository maps to, locally and upstream.

use std::sync::Arc;
use std::time::Duration;

use oci_types::RepositoryName;

use crate::error::{ProxyError, Result};
use crate::upstream::{Upstream, UpstreamOptions};

/// How long a cached tag is trusted before upstream is asked again, unless
/// configured.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(5 * 60);

/// Hosts that are Docker Hub, whose one-component names are `library/`
/// names.
const DOCKER_HUB_HOSTS: &[&str] = &[
    "registry-1.docker.io",
    "docker.io",
    "index.docker.io",
    "registry.hub.docker.com",
];

/// One upstream served under a prefix (`[[proxy]]`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MirrorOptions {
    /// `hub` serves `hub/<name>` from upstream `<name>`; `""` serves every
    /// repository no other prefix matches.
    pub prefix: String,
    /// How to reach the upstream.
    pub upstream: UpstreamOptions,
    /// How long a tag's resolution is trusted before upstream is asked
    /// again.
    pub tag_ttl: Duration,
    /// Docker Hub's `library/` normalisation (`alpine` is
    /// `library/alpine`); `None`: on when the upstream is Docker Hub.
    pub library: Option<bool>,
}

impl MirrorOptions {
    /// `upstream` under `prefix`, with the default tag TTL.
    pub fn new(prefix: impl Into<String>, upstream: UpstreamOptions) -> Self {
        Self {
            prefix: prefix.into(),
            upstream,
            tag_ttl: DEFAULT_TAG_TTL,
            library: None,
        }
    }

    /// With another tag TTL.
    pub fn with_tag_ttl(mut self, ttl: Duration) -> Self {
        self.tag_ttl = ttl;
        self
    }

    /// With `library/` normalisation on or off.
    pub fn with_library(mut self, on: bool) -> Self {
        self.library = Some(on);
        self
    }
}

/// An upstream and how its repositories are named here.
#[derive(Debug)]
pub struct Mirror {
    prefix: String,
    upstream: Upstream,
    tag_ttl: Duration,
    library: bool,
}

impl Mirror {
    /// Its prefix (`""` for a whole-registry mirror).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Its client.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// How long a cached tag is trusted.
    pub fn tag_ttl(&self) -> Duration {
        self.tag_ttl
    }
}

/// A repository served from an upstream.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The upstream.
    pub mirror: Arc<Mirror>,
    /// Where its content is cached here: the prefix and the upstream name
    /// (so `hub/alpine` and `hub/library/alpine` share one cache).
    pub local: RepositoryName,
    /// Its name upstream.
    pub remote: RepositoryName,
}

/// Every `[[proxy]]` rule, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    mirrors: Vec<Arc<Mirror>>,
}

impl Mirrors {
    /// The rules, checked: prefixes are empty or valid repository names,
    /// and distinct; each upstream URL is usable.
    pub fn new(options: &[MirrorOptions]) -> Result<Self> {
        let mut mirrors = Vec::with_capacity(options.len());
        for o in options {
            if !o.prefix.is_empty() && o.prefix.parse::<RepositoryName>().is_err() {
                return Err(ProxyError::Config(format!(
                    "proxy prefix {:?} is not a repository name",
                    o.prefix
                )));
            }
            if options.iter().filter(|p| p.prefix == o.prefix).count() > 1 {
                return Err(ProxyError::Config(format!(
                    "proxy prefix {:?} is configured twice",
                    o.prefix
                )));
            }
            let upstream = Upstream::new(&o.upstream)?;
            let library = o.library.unwrap_or_else(|| {
                upstream
                    .host()
                    .is_some_and(|h| DOCKER_HUB_HOSTS.contains(&h.as_str()))
            });
            mirrors.push(Arc::new(Mirror {
                prefix: o.prefix.clone(),
                upstream,
                tag_ttl: o.tag_ttl,
                library,
            }));
        }
        mirrors.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Ok(Self { mirrors })
    }

    /// Whether no repository is proxied.
    pub fn is_empty(&self) -> bool {
        self.mirrors.is_empty()
    }

    /// The upstream serving `name`, if any: the longest prefix `p` with
    /// `name` = `p/<rest>` (or the `""` mirror), and the names of `<rest>`
    /// here and upstream.
    pub fn route(&self, name: &RepositoryName) -> Option<Routed> {
        let name = name.as_str();
        self.mirrors.iter().find_map(|m| {
            let rest = if m.prefix.is_empty() {
                name
            } else {
                name.strip_prefix(m.prefix.as_str())?.strip_prefix('/')?
            };
            let remote = if m.library && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_owned()
            };
            let local = if m.prefix.is_empty() {
                remote.clone()
            } else {
                format!("{}/{remote}", m.prefix)
            };
            // Both are names made of valid components; only `library/`
            // can push one past the length limit, and then the name is
            // used as asked.
            let (local, remote) = match (local.parse(), remote.parse()) {
                (Ok(local), Ok(remote)) => (local, remote),
                _ => (name.parse().ok()?, rest.parse().ok()?),
            };
            Some(Routed {
                mirror: Arc::clone(m),
                local,
                remote,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(rules: &[(&str, &str, Option<bool>)]) -> Mirrors {
        let options: Vec<MirrorOptions> = rules
            .iter()
            .map(|(prefix, url, library)| {
                let mut o = MirrorOptions::new(*prefix, UpstreamOptions::new(*url));
                o.library = *library;
                o
            })
            .collect();
        Mirrors::new(&options).unwrap()
    }

    fn route(m: &Mirrors, name: &str) -> Option<(String, String, String)> {
        m.route(&name.parse().unwrap()).map(|r| {
            (
                r.mirror.prefix().to_owned(),
                r.local.to_string(),
                r.remote.to_string(),
            )
        })
    }

    fn owned(a: &str, b: &str, c: &str) -> Option<(String, String, String)> {
        Some((a.into(), b.into(), c.into()))
    }

    #[test]
    fn prefixes_route_by_whole_components_longest_first() {
        let m = mirrors(&[
            ("hub", "https://registry-1.docker.io", None),
            ("ghcr", "https://ghcr.io", None),
            ("ghcr/special", "https://example.com", None),
        ]);
        assert_eq!(
            route(&m, "hub/alpine"),
            owned("hub", "hub/library/alpine", "library/alpine")
        );
        assert_eq!(
            route(&m, "hub/library/alpine"),
            owned("hub", "hub/library/alpine", "library/alpine")
        );
        assert_eq!(
            route(&m, "hub/grafana/grafana"),
            owned("hub", "hub/grafana/grafana", "grafana/grafana")
        );
        // Not Docker Hub: no library/.
        assert_eq!(route(&m, "ghcr/foo"), owned("ghcr", "ghcr/foo", "foo"));
        assert_eq!(
            route(&m, "ghcr/special/x"),
            owned("ghcr/special", "ghcr/special/x", "x")
        );
        // Whole components only, and the prefix alone is not proxied.
        assert_eq!(route(&m, "hubx/alpine"), None);
        assert_eq!(route(&m, "hub"), None);
        assert_eq!(route(&m, "team/app"), None);
    }

    #[test]
    fn the_empty_prefix_mirrors_the_rest() {
        let m = mirrors(&[
            ("", "http://127.0.0.1:1", Some(true)),
            ("local-only", "http://127.0.0.1:2", None),
        ]);
        assert_eq!(
            route(&m, "alpine"),
            owned("", "library/alpine", "library/alpine")
        );
        assert_eq!(
            route(&m, "library/alpine"),
            owned("", "library/alpine", "library/alpine")
        );
        assert_eq!(
            route(&m, "local-only/x"),
            owned("local-only", "local-only/x", "x")
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let bad = |rules: &[MirrorOptions]| Mirrors::new(rules).unwrap_err().to_string();
        let up = || UpstreamOptions::new("https://example.com");
        assert!(bad(&[MirrorOptions::new("Hub", up())]).contains("not a repository name"));
        assert!(bad(&[MirrorOptions::new("hub/", up())]).contains("not a repository name"));
        assert!(
            bad(&[MirrorOptions::new("a", up()), MirrorOptions::new("a", up())]).contains("twice")
        );
        let ftp = MirrorOptions::new("a", UpstreamOptions::new("ftp://example.com"));
        assert!(bad(&[ftp]).contains("http or https"));
    }
}
