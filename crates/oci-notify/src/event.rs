//! The event model: what happened, to what, asked by whom, seen where.
//!
//! Field names are those of distribution's notifications
//! (`docs/content/about/notifications.md`, "Events"), so the stored form
//! of an event is the element of a distribution envelope's `events` list.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The media type distribution gives blobs in events.
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest (or, with `blobs`, a blob) was pushed.
    Push,
    /// A manifest (or, with `blobs`, a blob) was pulled.
    Pull,
    /// A manifest or a tag was deleted.
    Delete,
    /// A blob was mounted from another repository.
    Mount,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 4] = [Action::Push, Action::Pull, Action::Delete, Action::Mount];

    /// Its name in configurations and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }

    /// A bit of its own, for sets of actions.
    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| format!("{text:?} is no event: push, pull, delete or mount"))
    }
}

/// One event, as delivered (distribution's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (a UUID); receivers deduplicate on it (delivery is at
    /// least once).
    pub id: String,
    /// When it happened, RFC 3339 in UTC.
    pub timestamp: String,
    /// What was done.
    pub action: Action,
    /// What it was done to.
    pub target: Target,
    /// The request that did it.
    pub request: RequestInfo,
    /// Who asked.
    pub actor: Actor,
    /// The registry instance that saw it.
    pub source: Source,
}

impl Event {
    /// True when it is about a blob (a mount, or a blob push or pull).
    pub fn is_blob(&self) -> bool {
        self.action == Action::Mount || self.target.media_type.as_deref() == Some(BLOB_MEDIA_TYPE)
    }
}

/// What an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Media type of the manifest (`application/octet-stream` for blobs);
    /// absent for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Digest of the content; absent for a tag delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The same as `size` (distribution keeps both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// The repository.
    pub repository: String,
    /// Where the content can be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The tag, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For a mount: the repository the blob came from, if the client
    /// named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_repository: Option<String>,
}

/// The request behind an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// The request id (`X-Request-Id`).
    pub id: String,
    /// The client's address and port.
    pub addr: String,
    /// The `Host` the client asked for.
    pub host: String,
    /// The HTTP method.
    pub method: String,
    /// The client's `User-Agent`.
    pub useragent: String,
}

/// Who asked: empty for anonymous callers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The authenticated user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The registry instance that saw the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Host name and port of the instance.
    pub addr: String,
    /// A random id of the running process.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// The longest request field (user agent, host) kept in an event: what a
/// client sends never makes an event large.
pub const MAX_FIELD_LEN: usize = 256;

/// `text` cut to [`MAX_FIELD_LEN`] bytes, on a character boundary.
pub fn clip(text: &str) -> String {
    if text.len() <= MAX_FIELD_LEN {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The current time as events carry it: RFC 3339, UTC, nanoseconds.
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_distribution_names() {
        let event = Event {
            id: "e1".into(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            action: Action::Push,
            target: Target {
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                digest: Some("sha256:ab".into()),
                size: Some(7),
                length: Some(7),
                repository: "team/app".into(),
                url: Some("http://r/v2/team/app/manifests/sha256:ab".into()),
                tag: Some("v1".into()),
                from_repository: None,
            },
            request: RequestInfo {
                id: "r1".into(),
                addr: "127.0.0.1:5".into(),
                host: "r".into(),
                method: "PUT".into(),
                useragent: "docker".into(),
            },
            actor: Actor::default(),
            source: Source {
                addr: "h:5000".into(),
                instance_id: "i".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(json["source"]["instanceID"], "i");
        assert_eq!(json["request"]["useragent"], "docker");
        assert_eq!(json["actor"], serde_json::json!({}));
        assert!(json["target"].get("fromRepository").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert!(!event.is_blob());
    }

    #[test]
    fn clips_on_char_boundaries() {
        let long = "é".repeat(300);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_FIELD_LEN);
        assert!(long.starts_with(&clipped));
    }
}
