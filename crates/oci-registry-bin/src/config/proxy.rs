//! `[[proxy]]`: other registries served, and cached, under a prefix.

use std::path::PathBuf;
use std::time::Duration;

use oci_proxy::{MirrorOptions, Mirrors, PullThrough, UpstreamOptions};
use serde::{Deserialize, Serialize};

use super::{ConfigError, REDACTED};

/// One upstream registry served under `prefix` (see the README's
/// "Pull-through cache").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `hub` serves `hub/<name>` from upstream `<name>`; `""` makes the
    /// whole registry a mirror of this upstream (docker's
    /// `registry-mirrors`, containerd's `hosts.toml`). Repositories outside
    /// every prefix stay local.
    pub prefix: String,
    /// The upstream's base URL, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// A user name at the upstream (with `password` or `password_file`);
    /// anonymous without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its password or access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// How long a tag's resolution is trusted before upstream is asked
    /// again (with a HEAD). Default `5m`.
    #[serde(default = "default_tag_ttl", with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// Docker Hub's `library/` normalisation (`alpine` is
    /// `library/alpine`). Default: on when `url` is Docker Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<bool>,
    /// Connect and read timeout of upstream requests. Default `30s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_tag_ttl() -> Duration {
    oci_proxy::DEFAULT_TAG_TTL
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl ProxyConfig {
    /// The cache's options for this upstream (the password file read).
    fn mirror_options(&self, index: usize) -> Result<MirrorOptions, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("proxy[{index}].{field}"),
            message,
        };
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "password_file",
                    "give password or password_file, not both".into(),
                ));
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| invalid("password_file", format!("{}: {e}", file.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let mut upstream = UpstreamOptions::new(&self.url);
        upstream.timeout = self.timeout;
        match (&self.username, password) {
            (Some(user), Some(password)) => upstream = upstream.with_credentials(user, &password),
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid("password", "a username needs a password".into()));
            }
            (None, Some(_)) => {
                return Err(invalid("username", "a password needs a username".into()));
            }
        }
        let mut options = MirrorOptions::new(&self.prefix, upstream).with_tag_ttl(self.tag_ttl);
        if let Some(library) = self.library {
            options = options.with_library(library);
        }
        Ok(options)
    }
}

/// The upstreams of every `[[proxy]]`, checked (prefixes, URLs,
/// credentials).
pub fn mirrors(proxies: &[ProxyConfig]) -> Result<Mirrors, ConfigError> {
    let options = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| p.mirror_options(i))
        .collect::<Result<Vec<_>, _>>()?;
    Mirrors::new(&options).map_err(|e| ConfigError::Invalid {
        key: "proxy".into(),
        message: e.to_string(),
    })
}

/// The pull-through cache over `storage`, when any `[[proxy]]` is
/// configured.
pub fn pull_through(
    proxies: &[ProxyConfig],
    storage: &oci_storage::Storage,
) -> Result<Option<PullThrough>, ConfigError> {
    let mirrors = mirrors(proxies)?;
    Ok((!mirrors.is_empty()).then(|| PullThrough::new(storage.clone(), mirrors)))
}

/// Hides the passwords of printed configurations.
pub(super) fn redact(proxies: &mut [ProxyConfig]) {
    for p in proxies {
        if p.password.is_some() {
            p.password = Some(REDACTED.into());
        }
    }
}
