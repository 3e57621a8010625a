//! Where events go: one configured webhook, and which events it wants.

use std::time::Duration;

use oci_storage::QueueName;
use oci_types::{RepositoryName, RepositoryPattern};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::envelope::Format;
use crate::error::{NotifyError, Result};
use crate::event::Action;

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts at one event before it is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default wait after the first failed attempt (doubled after each).
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Default longest wait between attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Events sent by default: pushes and deletes.
pub const DEFAULT_EVENTS: [Action; 2] = [Action::Push, Action::Delete];

/// One webhook (`[[notifications.endpoints]]`).
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Its name: the metrics label and its outbox in storage.
    pub name: QueueName,
    /// Where events are POSTed (http or https).
    pub url: Url,
    /// Headers sent with every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bound on one request, from connecting to the answer's head.
    pub timeout: Duration,
    /// The actions it receives.
    pub events: Vec<Action>,
    /// Only events of these repositories (empty: all).
    pub repositories: Vec<RepositoryPattern>,
    /// Also blob pushes and pulls (distribution sends them; most
    /// receivers ignore them). Mounts are always about blobs.
    pub blobs: bool,
    /// The envelope.
    pub format: Format,
    /// Attempts at one event before it goes to the dead letters.
    pub max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl EndpointOptions {
    /// An endpoint with the defaults: pushes and deletes of every
    /// repository, distribution's envelope.
    pub fn new(name: QueueName, url: Url) -> Self {
        Self {
            name,
            url,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            events: DEFAULT_EVENTS.to_vec(),
            repositories: Vec::new(),
            blobs: false,
            format: Format::Distribution,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// Checks what serde cannot: the URL's scheme, header names and
    /// values, and that the bounds are usable.
    pub fn check(&self) -> Result<()> {
        self.header_map().map(|_| ())?;
        let bad = |reason: &str| self.error(reason.to_owned());
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(bad("url must be http or https"));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be more than 0s"));
        }
        if self.max_attempts == 0 {
            return Err(bad("max_attempts must be at least 1"));
        }
        if self.backoff.is_zero() || self.max_backoff < self.backoff {
            return Err(bad("backoff must be more than 0s and at most max_backoff"));
        }
        Ok(())
    }

    pub(crate) fn error(&self, reason: String) -> NotifyError {
        NotifyError::Config {
            endpoint: self.name.to_string(),
            reason,
        }
    }

    /// The headers as sent.
    pub(crate) fn header_map(&self) -> Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.error(format!("{name:?} is no header name")))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| self.error(format!("the value of header {name} is not valid")))?;
            v.set_sensitive(true);
            map.append(n, v);
        }
        Ok(map)
    }

    /// True if it wants `action` on `repository` (`blob`: the event is
    /// about a blob).
    pub fn wants(&self, action: Action, repository: &RepositoryName, blob: bool) -> bool {
        self.events.contains(&action)
            && (!blob || self.blobs || action == Action::Mount)
            && (self.repositories.is_empty()
                || self.repositories.iter().any(|p| p.matches(repository)))
    }

    /// The wait after `attempts` failed attempts.
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> EndpointOptions {
        EndpointOptions::new("ci".parse().unwrap(), "http://x/hook".parse().unwrap())
    }

    #[test]
    fn filters() {
        let mut e = endpoint();
        let team: RepositoryName = "team/app".parse().unwrap();
        let other: RepositoryName = "other".parse().unwrap();
        assert!(e.wants(Action::Push, &team, false));
        assert!(!e.wants(Action::Pull, &team, false));
        assert!(!e.wants(Action::Push, &team, true));
        e.repositories = vec!["team/**".parse().unwrap()];
        assert!(e.wants(Action::Delete, &team, false));
        assert!(!e.wants(Action::Delete, &other, false));
        e.events.push(Action::Mount);
        assert!(e.wants(Action::Mount, &team, true));
        e.blobs = true;
        assert!(e.wants(Action::Push, &team, true));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let e = endpoint();
        let waits: Vec<u64> = (1..=12).map(|n| e.backoff_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(e.backoff_after(200).as_secs(), 300);
    }

    #[test]
    fn checks() {
        let mut e = endpoint();
        e.check().unwrap();
        e.headers = vec![("Authorization".into(), "Bearer x".into())];
        e.check().unwrap();
        e.headers = vec![("Bad Name".into(), "x".into())];
        assert!(e.check().is_err());
        e.headers.clear();
        e.url = "ftp://x/".parse().unwrap();
        assert!(e.check().is_err());
        e.url = "http://x/".parse().unwrap();
        e.max_attempts = 0;
        assert!(e.check().is_err());
    }
}
