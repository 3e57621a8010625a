//! Fetching an issuer's JWKS over HTTPS, with the limits that keep a
//! hostile client from making the registry hammer the issuer or swallow a
//! huge or slow answer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::Url;

use crate::error::{AuthError, Result};
use crate::jwk::{VerifyingKey, parse_jwks};

/// The whole fetch, connect to last byte.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);
/// Larger JWKS documents are refused.
pub(super) const MAX_BODY: usize = 1 << 20;
/// At most one fetch for unknown key ids per this interval.
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, the next try waits this long.
pub(super) const RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again on use (so keys the issuer
/// withdrew stop working), the old ones kept if that fails.
pub(super) const MAX_AGE: Duration = Duration::from_secs(3600);

/// When the last fetches happened, by the verifier's clock.
#[derive(Debug, Default, Clone, Copy)]
struct History {
    /// The last attempt, and whether it succeeded.
    last_attempt: Option<(SystemTime, bool)>,
    /// The last success.
    last_success: Option<SystemTime>,
}

/// A JWKS URL and its HTTP client.
#[derive(Debug)]
pub(super) struct Fetcher {
    url: Url,
    client: reqwest::Client,
    history: Mutex<History>,
    /// Held across a fetch so concurrent verifications wait for one fetch
    /// instead of starting their own.
    pub(super) gate: tokio::sync::Mutex<()>,
}

impl Fetcher {
    /// A fetcher for `url` (already checked by `JwksSource`): rustls on
    /// aws-lc-rs with the system's root certificates, no redirects, no
    /// proxy for loopback hosts.
    pub(super) fn new(url: &str) -> Result<Self> {
        let bad = |why: String| AuthError::Config(format!("OIDC jwks {url}: {why}"));
        let url = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        if url.scheme() == "https" {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let errors: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
                return Err(bad(format!(
                    "no trusted root certificates in the system store {}",
                    errors.join("; ")
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oci-registry/", env!("CARGO_PKG_VERSION")));
        if url.scheme() == "http" {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            url,
            client,
            history: Mutex::new(History::default()),
            gate: tokio::sync::Mutex::new(()),
        })
    }

    fn history(&self) -> History {
        *self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True if `keys` should be fetched again for a token naming `kid`:
    /// there are none, `kid` is not among them, or they are old.
    pub(super) fn wants(&self, keys: &[VerifyingKey], kid: Option<&str>, now: SystemTime) -> bool {
        let unknown = kid.is_some_and(|kid| !keys.iter().any(|k| k.kid() == kid));
        let old = match self.history().last_success {
            Some(at) => elapsed(at, now) >= MAX_AGE,
            None => true,
        };
        keys.is_empty() || unknown || old
    }

    /// True unless the last attempt was too recent.
    pub(super) fn may_fetch(&self, now: SystemTime) -> bool {
        match self.history().last_attempt {
            None => true,
            Some((at, true)) => elapsed(at, now) >= REFETCH_INTERVAL,
            Some((at, false)) => elapsed(at, now) >= RETRY_INTERVAL,
        }
    }

    /// Forgets the history: the next token fetches.
    pub(super) fn forget(&self) {
        *self.history.lock().unwrap_or_else(PoisonError::into_inner) = History::default();
    }

    /// Fetches and parses the JWKS, recording the attempt at `now`.
    pub(super) async fn fetch(&self, now: SystemTime) -> Result<Vec<VerifyingKey>> {
        let result = match tokio::time::timeout(TIMEOUT, self.get()).await {
            Ok(result) => result,
            Err(_) => Err(self.error(format!("no answer within {TIMEOUT:?}"))),
        }
        .and_then(|body| parse_jwks(&body).map_err(|e| self.error(e.to_string())));
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.last_attempt = Some((now, result.is_ok()));
        if result.is_ok() {
            history.last_success = Some(now);
        }
        result
    }

    /// The body of a successful GET, at most [`MAX_BODY`] bytes.
    async fn get(&self) -> Result<Vec<u8>> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.error(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(self.error(format!("HTTP {}", response.status())));
        }
        let too_big = || self.error(format!("answer larger than {MAX_BODY} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn error(&self, why: String) -> AuthError {
        AuthError::Fetch(format!("{}: {why}", self.url))
    }
}

/// Time from `then` to `now`; a clock that went backwards counts as long
/// ago, so it cannot block fetches until it catches up.
fn elapsed(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::MAX)
}
