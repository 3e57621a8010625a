//! Recording events: which endpoints want an event, and its append to
//! their outboxes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oci_storage::Storage;
use oci_types::RepositoryName;
use reqwest::header::HeaderMap;
use tokio::sync::Notify;

use crate::delivery::Delivery;
use crate::endpoint::EndpointOptions;
use crate::error::{NotifyError, Result};
use crate::event::{Action, Event, Source};
use crate::telemetry;

/// How often the replica delivering an endpoint looks for events other
/// replicas recorded, by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// What a [`Notifier`] is built with.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The endpoints (`[[notifications.endpoints]]`); names are unique.
    pub endpoints: Vec<EndpointOptions>,
    /// `source.addr` of events: this instance's host name and port.
    pub source_addr: String,
    /// How often the delivering replica lists an outbox for events other
    /// replicas recorded (its own wake it at once).
    pub poll: Duration,
    /// The registry serves HTTPS: `target.url` of events is `https://`.
    pub https: bool,
}

impl NotifierOptions {
    /// Options for `endpoints`, polled every [`DEFAULT_POLL`].
    pub fn new(endpoints: Vec<EndpointOptions>, source_addr: impl Into<String>) -> Self {
        Self {
            endpoints,
            source_addr: source_addr.into(),
            poll: DEFAULT_POLL,
            https: false,
        }
    }
}

/// Records events in the outboxes of the endpoints that want them, and
/// delivers them ([`Notifier::start_delivery`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) storage: Storage,
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    /// Bits of every action some endpoint wants.
    wanted: u8,
    source: Source,
    pub(crate) poll: Duration,
    https: bool,
}

/// One endpoint, ready to deliver to.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) options: EndpointOptions,
    pub(crate) client: reqwest::Client,
    pub(crate) headers: HeaderMap,
    /// Woken when this process recorded an event for it.
    pub(crate) wake: Notify,
}

impl Notifier {
    /// A notifier recording in `storage`. Fails on unusable endpoint
    /// options (see [`EndpointOptions::check`]) or duplicate names.
    pub fn new(storage: Storage, options: NotifierOptions) -> Result<Self> {
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        let mut wanted = 0;
        for e in options.endpoints {
            e.check()?;
            if endpoints.iter().any(|o| o.options.name == e.name) {
                return Err(e.error("the name is used twice".into()));
            }
            wanted |= e.events.iter().fold(0, |bits, a| bits | a.bit());
            let headers = e.header_map()?;
            let client = client(&e)?;
            endpoints.push(Arc::new(Endpoint {
                options: e,
                client,
                headers,
                wake: Notify::new(),
            }));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                storage,
                endpoints,
                wanted,
                source: Source {
                    addr: options.source_addr,
                    instance_id: uuid::Uuid::new_v4().to_string(),
                },
                poll: options.poll.max(Duration::from_millis(10)),
                https: options.https,
            }),
        })
    }

    /// The `source` of this instance's events.
    pub fn source(&self) -> &Source {
        &self.inner.source
    }

    /// The scheme of `target.url`: `https` when the registry serves TLS.
    pub fn url_scheme(&self) -> &'static str {
        if self.inner.https { "https" } else { "http" }
    }

    /// The storage events are recorded in.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The endpoints' options.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointOptions> {
        self.inner.endpoints.iter().map(|e| &e.options)
    }

    /// True if some endpoint wants `action` on `repository` (`blob`: the
    /// event is about a blob). Without an endpoint that wants `action` at
    /// all it costs one bit test.
    pub fn wants(&self, action: Action, repository: &RepositoryName, blob: bool) -> bool {
        self.inner.wanted & action.bit() != 0
            && self
                .inner
                .endpoints
                .iter()
                .any(|e| e.options.wants(action, repository, blob))
    }

    /// Appends `event` (about `repository`) to the outbox of every endpoint
    /// that wants it, and returns how many did. Durable once it returns:
    /// call it before acknowledging the request the event is about.
    pub async fn record(&self, repository: &RepositoryName, event: &Event) -> Result<usize> {
        let blob = event.is_blob();
        let targets: Vec<&Arc<Endpoint>> = self
            .inner
            .endpoints
            .iter()
            .filter(|e| e.options.wants(event.action, repository, blob))
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        let appends = targets.iter().map(|e| {
            let outbox = self.inner.storage.outbox(&e.options.name);
            let body = body.clone();
            async move { outbox.append(body).await }
        });
        futures::future::try_join_all(appends)
            .await
            .map_err(NotifyError::Storage)?;
        for e in &targets {
            telemetry::count(telemetry::QUEUED, e.options.name.as_str());
            e.wake.notify_one();
        }
        Ok(targets.len())
    }

    /// Starts delivering every endpoint's outbox (one task per endpoint;
    /// one replica at a time delivers an endpoint, see [`Delivery`]).
    /// Delivery stops when the handle is dropped or stopped.
    pub fn start_delivery(&self) -> Delivery {
        Delivery::start(self)
    }
}

/// The HTTP client of one endpoint: rustls (TLS 1.2+) with the system's
/// roots for https, no redirects followed (a redirect is a failed
/// attempt), every request bounded by the endpoint's timeout.
fn client(e: &EndpointOptions) -> Result<reqwest::Client> {
    let bad = |why: String| e.error(why);
    let mut roots = rustls::RootCertStore::empty();
    if e.url.scheme() == "https" {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(bad(
                "no trusted root certificates in the system store".into()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| bad(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(e.timeout)
        .timeout(e.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "oci-registry-notifications/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|err| bad(err.to_string()))
}
