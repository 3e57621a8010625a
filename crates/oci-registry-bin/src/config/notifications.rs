//! `[notifications]` and `[[notifications.endpoints]]`: event webhooks
//! (see the README's "Notifications").

use std::collections::BTreeMap;
use std::time::Duration;

use oci_notify::endpoint::{
    DEFAULT_BACKOFF, DEFAULT_EVENTS, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_TIMEOUT,
};
use oci_notify::{Action, EndpointOptions, Format, NotifierOptions};
use oci_types::RepositoryPattern;
use serde::{Deserialize, Serialize};

use super::{ConfigError, REDACTED};

/// `[notifications]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How often the replica delivering an endpoint looks for events other
    /// replicas recorded (its own are sent at once). Default `1s`.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// `[[notifications.endpoints]]`: where events go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConfig>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            poll: oci_notify::notifier::DEFAULT_POLL,
            endpoints: Vec::new(),
        }
    }
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Its name: the metrics label, and its outbox in storage
    /// (`_events/<name>/`). 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Bound on one request. Default `5s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `push`, `pull`, `delete`, `mount`. Default push and delete.
    #[serde(default = "default_events")]
    pub events: Vec<Action>,
    /// Only events of repositories these globs match (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepositoryPattern>,
    /// Also blob (layer, config) pushes and pulls. Default false.
    #[serde(default)]
    pub blobs: bool,
    /// `distribution` or `cloudevents`. Default `distribution`.
    #[serde(default)]
    pub format: Format,
    /// Attempts at one event before it goes to the dead letters.
    /// Default 10.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each. Default `1s`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between attempts. Default `5m`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_events() -> Vec<Action> {
    DEFAULT_EVENTS.to_vec()
}
fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}

impl EndpointConfig {
    fn options(&self, index: usize) -> Result<EndpointOptions, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("notifications.endpoints[{index}].{field}"),
            message,
        };
        let name = self
            .name
            .parse()
            .map_err(|e| invalid("name", format!("{e}")))?;
        let url = url::Url::parse(&self.url).map_err(|e| invalid("url", e.to_string()))?;
        let mut options = EndpointOptions::new(name, url);
        options.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        options.timeout = self.timeout;
        options.events = self.events.clone();
        options.repositories = self.repositories.clone();
        options.blobs = self.blobs;
        options.format = self.format;
        options.max_attempts = self.max_attempts;
        options.backoff = self.backoff;
        options.max_backoff = self.max_backoff;
        options
            .check()
            .map_err(|e| invalid("", e.to_string()).trim_dot())?;
        Ok(options)
    }
}

impl NotificationsConfig {
    /// The notifier's options, checked; `None` without endpoints. `https`:
    /// the registry serves TLS; `source_addr`: this instance's host and
    /// port.
    pub fn notifier_options(
        &self,
        https: bool,
        source_addr: &str,
    ) -> Result<Option<NotifierOptions>, ConfigError> {
        if self.endpoints.is_empty() {
            return Ok(None);
        }
        let mut endpoints: Vec<EndpointOptions> = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let options = e.options(i)?;
            if endpoints.iter().any(|o| o.name == options.name) {
                return Err(ConfigError::Invalid {
                    key: format!("notifications.endpoints[{i}].name"),
                    message: format!("{} names two endpoints", e.name),
                });
            }
            endpoints.push(options);
        }
        let mut options = NotifierOptions::new(endpoints, source_addr);
        options.poll = self.poll;
        options.https = https;
        Ok(Some(options))
    }

    /// Hides header values that look secret in printed configurations.
    pub(super) fn redact(&mut self) {
        for e in &mut self.endpoints {
            for (name, value) in &mut e.headers {
                if looks_secret(name, value) {
                    *value = REDACTED.into();
                }
            }
        }
    }
}

/// Credentials travel in headers named like these, or as schemes.
fn looks_secret(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let value = value.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "key",
        "password",
        "credential",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|w| name.contains(w))
        || ["bearer ", "basic ", "token "]
            .iter()
            .any(|s| value.starts_with(s))
}

impl ConfigError {
    /// `a.b.` (a key with an empty last field) becomes `a.b`.
    fn trim_dot(self) -> Self {
        match self {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: key.trim_end_matches('.').to_owned(),
                message,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NotificationsConfig {
        toml::from_str::<super::super::Config>(text)
            .unwrap()
            .notifications
    }

    #[test]
    fn defaults_and_full_form() {
        let n =
            parse("[[notifications.endpoints]]\nname = \"ci\"\nurl = \"http://ci.example/hook\"\n");
        let e = &n.endpoints[0];
        assert_eq!(e.events, [Action::Push, Action::Delete]);
        assert_eq!(e.format, Format::Distribution);
        assert_eq!(e.timeout, Duration::from_secs(5));
        let options = n.notifier_options(false, "h:1").unwrap().unwrap();
        assert_eq!(options.endpoints.len(), 1);

        let n = parse(
            r#"
[notifications]
poll = "250ms"
[[notifications.endpoints]]
name = "ci"
url = "https://ci.example/hook"
headers = { Authorization = "Bearer abc", X-Team = "infra" }
timeout = "2s"
events = ["push", "pull", "delete", "mount"]
repositories = ["team/**"]
format = "cloudevents"
max_attempts = 3
backoff = "100ms"
max_backoff = "1s"
"#,
        );
        assert_eq!(n.poll, Duration::from_millis(250));
        let options = n.notifier_options(true, "h:1").unwrap().unwrap();
        assert!(options.https);
        assert_eq!(options.endpoints[0].format, Format::CloudEvents);
        assert_eq!(options.endpoints[0].max_attempts, 3);
    }

    #[test]
    fn faults_name_the_key() {
        for (text, key) in [
            (
                "name = \"a/b\"\nurl = \"http://x/\"",
                "notifications.endpoints[0].name",
            ),
            (
                "name = \"a\"\nurl = \"not a url\"",
                "notifications.endpoints[0].url",
            ),
            (
                "name = \"a\"\nurl = \"ftp://x/\"",
                "notifications.endpoints[0]",
            ),
            (
                "name = \"a\"\nurl = \"http://x/\"\nmax_attempts = 0",
                "notifications.endpoints[0]",
            ),
        ] {
            let n = parse(&format!("[[notifications.endpoints]]\n{text}\n"));
            match n.notifier_options(false, "h") {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let n = parse(
            "[[notifications.endpoints]]\nname = \"a\"\nurl = \"http://x/\"\n[[notifications.endpoints]]\nname = \"a\"\nurl = \"http://y/\"\n",
        );
        assert!(n.notifier_options(false, "h").is_err());
        // Unknown events and formats fail to parse.
        for bad in ["events = [\"poke\"]", "format = \"xml\""] {
            let text =
                format!("[[notifications.endpoints]]\nname = \"a\"\nurl = \"http://x/\"\n{bad}\n");
            assert!(
                toml::from_str::<super::super::Config>(&text).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_headers_are_redacted() {
        let mut n = parse(
            "[[notifications.endpoints]]\nname = \"a\"\nurl = \"http://x/\"\nheaders = { Authorization = \"Bearer S3CR3T\", X-Api-Key = \"K3Y\", X-Custom = \"Token T0K\", X-Team = \"infra\" }\n",
        );
        n.redact();
        let h = &n.endpoints[0].headers;
        assert_eq!(h["Authorization"], REDACTED);
        assert_eq!(h["X-Api-Key"], REDACTED);
        assert_eq!(h["X-Custom"], REDACTED);
        assert_eq!(h["X-Team"], "infra");
    }
}
