//! The client of one upstream registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use oci_types::{Digest, Reference, RepositoryName};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::challenge::Challenge;
use crate::error::{ProxyError, Result};
use crate::telemetry::{self, Kind};

/// Largest manifest accepted from upstream (the registry's own limit for
/// pushed manifests).
pub const MANIFEST_LIMIT: usize = 4 << 20;

/// Media types a manifest request accepts (what docker and containerd ask).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Tokens without `expires_in` live this long (token.md: 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How long requests stay away from an upstream that answered 429
/// without `Retry-After`.
const DEFAULT_QUIET: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured (a hostile or broken upstream must
/// not silence a cache for days).
const MAX_QUIET: Duration = Duration::from_secs(10 * 60);

/// Cached tokens at most (scopes are per repository).
const MAX_TOKENS: usize = 1024;

/// How to reach an upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamOptions {
    /// Its base URL (`https://registry-1.docker.io`).
    pub url: String,
    /// Credentials, if any: sent to its token endpoint, or as HTTP Basic.
    pub username: Option<String>,
    /// The password of `username`.
    pub password: Option<String>,
    /// Connect and request-head timeout. Default 30 s.
    pub timeout: Duration,
}

impl UpstreamOptions {
    /// Anonymous access to `url`, default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// With credentials.
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.username = Some(username.to_owned());
        self.password = Some(password.to_owned());
        self
    }
}

/// A manifest as upstream answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamManifest {
    /// Its digest (`Docker-Content-Digest`, or computed from the body).
    pub digest: Digest,
    /// Its media type (`Content-Type`).
    pub media_type: String,
    /// Its bytes (a GET; `None` for a HEAD).
    pub body: Option<Bytes>,
}

/// A blob being streamed from upstream.
pub struct UpstreamBlob {
    /// Its length, when upstream said.
    pub size: Option<u64>,
    /// Its bytes, as they arrive (unverified: the caller hashes them).
    pub stream: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for UpstreamBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A client of one upstream registry. Cheap to clone; clones share the
/// connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
    /// Tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Tokens fetched from the realm so far.
    fetched: AtomicU64,
    /// Until when upstream asked us to stop (its last 429).
    quiet_until: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Upstream {
    /// A client of `options.url`: rustls (TLS 1.2+) with the system's root
    /// certificates for `https`, redirects followed for blobs (to a CDN;
    /// reqwest drops `Authorization` on a redirect to another host).
    pub fn new(options: &UpstreamOptions) -> Result<Self> {
        let bad = |why: String| ProxyError::Config(format!("upstream {}: {why}", options.url));
        let base = Url::parse(options.url.trim_end_matches('/')).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(bad("the URL must be http or https".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 && base.scheme() == "https" {
            return Err(bad(
                "no trusted root certificates in the system store".into()
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("oci-registry-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let credentials = match (&options.username, &options.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                client,
                credentials,
                tokens: Mutex::new(HashMap::new()),
                fetched: AtomicU64::new(0),
                quiet_until: Mutex::new(None),
            }),
        })
    }

    /// Tokens fetched from upstream's token endpoint so far (cache misses).
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.fetched.load(Ordering::Relaxed)
    }

    /// HEAD (`get` false) or GET of `name`'s manifest `reference`. A
    /// manifest fetched by digest is verified against it.
    pub async fn manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        get: bool,
    ) -> Result<UpstreamManifest> {
        let path = format!("/v2/{name}/manifests/{reference}");
        let method = if get { Method::GET } else { Method::HEAD };
        let response = self
            .send(Kind::Manifest, method, &path, name, |r| {
                r.header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let body = if get {
            Some(read_bounded(response, MANIFEST_LIMIT).await?)
        } else {
            None
        };
        let digest = match (&body, reference, announced) {
            (Some(body), Reference::Digest(asked), _) => {
                let actual = Digest::of_with(asked.algorithm(), body);
                if &actual != asked {
                    return Err(ProxyError::DigestMismatch {
                        expected: asked.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            (Some(body), _, _) => Digest::of(body),
            (None, Reference::Digest(asked), _) => asked.clone(),
            (None, _, Some(announced)) => announced,
            (None, _, None) => {
                return Err(ProxyError::BadAnswer(format!(
                    "{path}: a HEAD without Docker-Content-Digest"
                )));
            }
        };
        Ok(UpstreamManifest {
            digest,
            media_type,
            body,
        })
    }

    /// The size of `name`'s blob `digest` (a HEAD), when upstream says.
    pub async fn blob_head(&self, name: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let path = format!("/v2/{name}/blobs/{digest}");
        let response = self
            .send(Kind::Blob, Method::HEAD, &path, name, |r| r)
            .await?;
        Ok(response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// The referrers index of `name`'s manifest `digest` (distribution-spec
    /// "Listing Referrers"), filtered by `artifact_type` when given: its
    /// bytes (at most [`MANIFEST_LIMIT`]) and whether upstream applied the
    /// filter.
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<(Bytes, bool)> {
        let path = format!("/v2/{name}/referrers/{digest}");
        let response = self
            .send(
                Kind::Referrers,
                Method::GET,
                &path,
                name,
                |r| match artifact_type {
                    Some(t) => r.query(&[("artifactType", t)]),
                    None => r,
                },
            )
            .await?;
        let filtered = response.headers().contains_key("oci-filters-applied");
        Ok((read_bounded(response, MANIFEST_LIMIT).await?, filtered))
    }

    /// A page of `name`'s tags (distribution-spec "Listing Tags": at most
    /// `n` after `last`; every tag upstream returns at once without `n`),
    /// and whether upstream links a next page.
    pub async fn tags(
        &self,
        name: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let path = format!("/v2/{name}/tags/list");
        let response = self
            .send(Kind::Tags, Method::GET, &path, name, |r| {
                let r = match n {
                    Some(n) => r.query(&[("n", n.to_string())]),
                    None => r,
                };
                match last {
                    Some(last) => r.query(&[("last", last)]),
                    None => r,
                }
            })
            .await?;
        let more = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("rel=\"next\""));
        let body = read_bounded(response, MANIFEST_LIMIT).await?;
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| ProxyError::BadAnswer(format!("tags of {name} upstream: {e}")))?;
        Ok((list.tags.unwrap_or_default(), more))
    }

    /// The upstream's host name.
    pub fn host(&self) -> Option<String> {
        self.inner.base.host_str().map(str::to_owned)
    }

    /// Streams `name`'s blob `digest` (the caller verifies the bytes).
    pub async fn blob(&self, name: &RepositoryName, digest: &Digest) -> Result<UpstreamBlob> {
        let path = format!("/v2/{name}/blobs/{digest}");
        let response = self
            .send(Kind::Blob, Method::GET, &path, name, |r| r)
            .await?;
        let size = response.content_length();
        let url = path.clone();
        let stream = response
            .bytes_stream()
            .map_err(move |e| ProxyError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })
            .boxed();
        Ok(UpstreamBlob { size, stream })
    }

    /// Sends a request for `path`, answering a 401 challenge once (a token
    /// for pull on `name`, or Basic credentials), and maps error statuses.
    async fn send(
        &self,
        kind: Kind,
        method: Method,
        path: &str,
        name: &RepositoryName,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let started = Instant::now();
        let result = self.send_once(method, path, name, decorate).await;
        telemetry::upstream(kind, started.elapsed(), &result);
        result
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        name: &RepositoryName,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        if let Some(left) = self.quiet_for() {
            return Err(ProxyError::TooManyRequests {
                retry_after: Some(left.max(Duration::from_secs(1))),
            });
        }
        let url = self.url(path)?;
        let scope = format!("repository:{name}:pull");
        let cached = self.cached_token(&scope);
        let request = |authorization: Option<&str>| {
            let r = decorate(self.inner.client.request(method.clone(), url.clone()));
            match authorization {
                Some(a) => r.header(AUTHORIZATION, a),
                None => r,
            }
        };
        let first = cached.as_ref().map(|t| format!("Bearer {t}"));
        let response = request(first.as_deref())
            .send()
            .await
            .map_err(|e| unreachable(path, &e))?;
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ProxyError::Unauthorized(path.to_owned()))?;
            let authorization = match Challenge::parse(challenge)? {
                Challenge::Basic => self
                    .basic()
                    .ok_or_else(|| ProxyError::Unauthorized(path.to_owned()))?,
                Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                } => {
                    let scope = asked.unwrap_or(scope);
                    format!(
                        "Bearer {}",
                        self.token(&realm, service.as_deref(), &scope).await?
                    )
                }
            };
            request(Some(&authorization))
                .send()
                .await
                .map_err(|e| unreachable(path, &e))?
        } else {
            response
        };
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(ProxyError::NotFound(path.to_owned())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(ProxyError::Unauthorized(path.to_owned()))
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = retry_after(&response);
                self.keep_quiet(retry_after.unwrap_or(DEFAULT_QUIET));
                Err(ProxyError::TooManyRequests { retry_after })
            }
            s => Err(ProxyError::Status {
                status: s.as_u16(),
                url: path.to_owned(),
            }),
        }
    }

    /// Honours a 429: no request goes upstream for `wait` (capped at
    /// [`MAX_QUIET`]); callers get [`ProxyError::TooManyRequests`] at once
    /// (and the cache serves what it holds).
    fn keep_quiet(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_QUIET);
        let mut quiet = self
            .inner
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *quiet = Some(quiet.map_or(until, |q| q.max(until)));
    }

    /// How long upstream still asked us to wait, if it did.
    fn quiet_for(&self) -> Option<Duration> {
        let quiet = self
            .inner
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        quiet.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn url(&self, path: &str) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.set_path(&format!(
            "{}{path}",
            self.inner.base.path().trim_end_matches('/')
        ));
        Ok(url)
    }

    /// `Basic <credentials>`, if configured.
    fn basic(&self) -> Option<String> {
        self.inner.credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// A token from `realm` for `scope` (token.md: GET with `service` and
    /// `scope`, Basic credentials when configured), cached until shortly
    /// before it expires.
    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        if let Some(token) = self.cached_token(scope) {
            return Ok(token);
        }
        let mut url =
            Url::parse(realm).map_err(|e| ProxyError::BadAuth(format!("realm {realm}: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.inner.client.get(url.clone());
        if let Some(basic) = self.basic() {
            request = request.header(AUTHORIZATION, basic);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| unreachable(realm, &e));
        telemetry::upstream(Kind::Token, started.elapsed(), &response);
        let response = response?;
        self.inner.fetched.fetch_add(1, Ordering::Relaxed);
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(ProxyError::Unauthorized(realm.to_owned()));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = retry_after(&response);
                self.keep_quiet(retry_after.unwrap_or(DEFAULT_QUIET));
                return Err(ProxyError::TooManyRequests { retry_after });
            }
            s => {
                return Err(ProxyError::Status {
                    status: s.as_u16(),
                    url: realm.to_owned(),
                });
            }
        }
        let body = read_bounded(response, 64 << 10).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| ProxyError::BadAuth(format!("token answer from {realm}: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProxyError::BadAuth(format!("no token from {realm}")))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let mut tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope.to_owned(), (token.clone(), until));
        Ok(token)
    }
}

/// A 429's `Retry-After`, in seconds (the HTTP-date form is not used by
/// registries).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn unreachable(url: &str, e: &reqwest::Error) -> ProxyError {
    ProxyError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}

/// The whole body, refused past `limit` bytes (without reading on).
async fn read_bounded(response: reqwest::Response, limit: usize) -> Result<Bytes> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::TooLarge { limit });
    }
    let url = response.url().to_string();
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreachable(&url, &e))?;
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
