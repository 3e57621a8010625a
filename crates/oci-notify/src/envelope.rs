//! How events are put on the wire: distribution's envelope, or a
//! CloudEvents 1.0 event in structured JSON mode.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde_json::json;

use crate::event::{Action, Event};

/// `Content-Type` of distribution's envelope.
pub const DISTRIBUTION_CONTENT_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";
/// `Content-Type` of a structured-mode CloudEvent (CloudEvents JSON event
/// format, §3 "Envelope").
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The envelope an endpoint receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// distribution's: `{"events":[...]}`, one event per request.
    #[default]
    Distribution,
    /// One CloudEvents 1.0 event per request, structured JSON mode, the
    /// distribution event as its `data`.
    CloudEvents,
}

impl Format {
    /// Its name in configurations.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Distribution => "distribution",
            Format::CloudEvents => "cloudevents",
        }
    }

    /// The `Content-Type` of a request.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Distribution => DISTRIBUTION_CONTENT_TYPE,
            Format::CloudEvents => CLOUDEVENTS_CONTENT_TYPE,
        }
    }

    /// The body of the request delivering `event`.
    pub fn body(self, event: &Event) -> Bytes {
        let value = match self {
            Format::Distribution => json!({ "events": [event] }),
            Format::CloudEvents => cloud_event(event),
        };
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "distribution" => Ok(Format::Distribution),
            "cloudevents" => Ok(Format::CloudEvents),
            _ => Err(format!(
                "{text:?} is no format: distribution or cloudevents"
            )),
        }
    }
}

/// The CloudEvents `type` of an event: `registry.image.pushed`,
/// `registry.image.pulled`, `registry.image.deleted`,
/// `registry.blob.mounted`, and for blob pushes and pulls
/// `registry.blob.pushed` and `registry.blob.pulled`.
pub fn cloud_event_type(event: &Event) -> &'static str {
    match (event.is_blob(), event.action) {
        (_, Action::Mount) => "registry.blob.mounted",
        (false, Action::Push) => "registry.image.pushed",
        (false, Action::Pull) => "registry.image.pulled",
        (_, Action::Delete) => "registry.image.deleted",
        (true, Action::Push) => "registry.blob.pushed",
        (true, Action::Pull) => "registry.blob.pulled",
    }
}

/// CloudEvents 1.0 (spec §3.1 "Context Attributes"): `id`, `source` (a
/// URI-reference naming the registry instance), `specversion`, `type`, and
/// the optional `time`, `subject` (`<repository>:<tag>` or
/// `<repository>@<digest>`) and `datacontenttype`.
fn cloud_event(event: &Event) -> serde_json::Value {
    let t = &event.target;
    let subject = match (&t.tag, &t.digest) {
        (Some(tag), _) => format!("{}:{tag}", t.repository),
        (None, Some(digest)) => format!("{}@{digest}", t.repository),
        (None, None) => t.repository.clone(),
    };
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("//{}/{}", event.source.addr, event.source.instance_id),
        "type": cloud_event_type(event),
        "time": event.timestamp,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, RequestInfo, Source, Target};

    fn event(action: Action, media_type: Option<&str>) -> Event {
        Event {
            id: "id-1".into(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            action,
            target: Target {
                media_type: media_type.map(Into::into),
                digest: Some("sha256:ab".into()),
                repository: "team/app".into(),
                ..Target::default()
            },
            request: RequestInfo::default(),
            actor: Actor::default(),
            source: Source {
                addr: "registry:5000".into(),
                instance_id: "inst".into(),
            },
        }
    }

    #[test]
    fn distribution_envelope() {
        let e = event(
            Action::Push,
            Some("application/vnd.oci.image.manifest.v1+json"),
        );
        let body: serde_json::Value =
            serde_json::from_slice(&Format::Distribution.body(&e)).unwrap();
        assert_eq!(body["events"][0]["id"], "id-1");
        assert_eq!(body["events"][0]["action"], "push");
        assert_eq!(body["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn cloud_events_attributes() {
        let e = event(
            Action::Push,
            Some("application/vnd.oci.image.manifest.v1+json"),
        );
        let body: serde_json::Value =
            serde_json::from_slice(&Format::CloudEvents.body(&e)).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "registry.image.pushed");
        assert_eq!(body["id"], "id-1");
        assert_eq!(body["subject"], "team/app@sha256:ab");
        assert_eq!(body["source"], "//registry:5000/inst");
        assert_eq!(body["data"]["target"]["repository"], "team/app");
        let types: Vec<_> = [
            event(Action::Delete, None),
            event(Action::Pull, Some("x")),
            event(Action::Mount, Some(crate::event::BLOB_MEDIA_TYPE)),
            event(Action::Push, Some(crate::event::BLOB_MEDIA_TYPE)),
        ]
        .iter()
        .map(cloud_event_type)
        .collect();
        assert_eq!(
            types,
            [
                "registry.image.deleted",
                "registry.image.pulled",
                "registry.blob.mounted",
                "registry.blob.pushed"
            ]
        );
    }
}
