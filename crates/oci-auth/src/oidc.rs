//! Workload identity: an OIDC ID token (GitHub Actions, GitLab CI,
//! Kubernetes service accounts, ...) sent as the password of a basic-auth
//! login or a token request.
//!
//! An [`OidcIssuer`] checks the token against the issuer's JWKS (a file,
//! or a URL fetched on first use and cached), its `iss`, its `aud` and its
//! times, and names the user by a configured claim. [`peek_issuer`] tells
//! cheaply, without verifying, which issuer a password claims to be from.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::{AuthError, Result};
use crate::jwk::{VerifyingKey, parse_jwks};
use crate::jws::{self, Expect, Validity};

mod fetch;

use fetch::Fetcher;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Where an issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum JwksSource {
    /// A JWKS file, read at start and on [`OidcIssuer::reload`].
    File(PathBuf),
    /// A JWKS URL, fetched on first use and again when a token names an
    /// unknown key (at most once a minute) or the keys are an hour old.
    Url(String),
}

impl FromStr for JwksSource {
    type Err = AuthError;

    /// `https://...` (or `http://` to a loopback host) is a URL; anything
    /// else is a file path.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| AuthError::Config(format!("OIDC jwks {text:?}: {why}"));
        if text.is_empty() {
            return Err(bad("empty"));
        }
        let lower = text.to_ascii_lowercase();
        if !lower.starts_with("https://") && !lower.starts_with("http://") {
            if lower.contains("://") {
                return Err(bad("want an https:// URL or a file path"));
            }
            return Ok(JwksSource::File(PathBuf::from(text)));
        }
        let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if url.scheme() == "http" && !is_loopback(host) {
            return Err(bad(
                "plain http:// is only allowed to a loopback host (127.0.0.1, localhost, [::1]); use https://",
            ));
        }
        Ok(JwksSource::Url(url.into()))
    }
}

impl TryFrom<String> for JwksSource {
    type Error = AuthError;

    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

/// The URL or the path.
impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcOptions {
    /// The issuer, exactly as tokens carry it in `iss`
    /// (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The issuer's keys.
    pub jwks: JwksSource,
    /// The audience tokens must name in `aud` (set by the workload, e.g.
    /// the registry's URL).
    pub audience: String,
    /// The claim whose value is the user name (default `sub`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
}

fn default_user_claim() -> String {
    "sub".into()
}

/// Verifies the ID tokens of one issuer.
#[derive(Debug)]
pub struct OidcIssuer {
    issuer: String,
    audience: String,
    user_claim: String,
    source: JwksSource,
    keys: RwLock<Arc<[VerifyingKey]>>,
    fetcher: Option<Fetcher>,
}

impl OidcIssuer {
    /// Sets up an issuer: a file source is read now (an error if it is
    /// missing or has no usable key); a URL source is fetched on first
    /// use.
    pub fn new(options: OidcOptions) -> Result<Self> {
        for (name, value) in [
            ("issuer", &options.issuer),
            ("audience", &options.audience),
            ("user_claim", &options.user_claim),
        ] {
            if value.trim().is_empty() {
                return Err(AuthError::Config(format!("OIDC: {name} must not be empty")));
            }
        }
        let (keys, fetcher): (Arc<[VerifyingKey]>, _) = match &options.jwks {
            JwksSource::File(path) => (read_jwks_file(path)?.into(), None),
            JwksSource::Url(url) => (Arc::new([]), Some(Fetcher::new(url)?)),
        };
        Ok(Self {
            issuer: options.issuer,
            audience: options.audience,
            user_claim: options.user_claim,
            source: options.jwks,
            keys: RwLock::new(keys),
            fetcher,
        })
    }

    /// The issuer name tokens carry in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `id_token` at time `now` and returns the user name: the
    /// value of the configured claim. Refusals are [`AuthError::Refused`];
    /// a URL source whose keys could not be fetched gives
    /// [`AuthError::Fetch`].
    pub async fn verify(&self, id_token: &str, now: SystemTime) -> Result<String> {
        let header = jws::header(id_token)?;
        // Refuse other issuers' tokens before fetching anything for them.
        if jws::unverified_issuer(id_token).as_deref() != Some(self.issuer.as_str()) {
            return Err(AuthError::refused(format!("iss is not {:?}", self.issuer)));
        }
        let keys = self.keys_for(header.kid.as_deref(), now).await?;
        let expect = Expect {
            issuer: &self.issuer,
            audience: &self.audience,
        };
        let claims: IdClaims = jws::verify(id_token, &header, &keys, &expect)?;
        Validity {
            exp: claims
                .exp
                .ok_or_else(|| AuthError::refused("exp: missing"))?,
            nbf: claims.nbf,
            iat: claims.iat,
        }
        .check(now, LEEWAY)?;
        match claims.other.get(&self.user_claim) {
            Some(Value::String(user)) if !user.is_empty() => Ok(user.clone()),
            _ => Err(AuthError::refused(format!(
                "claim {:?} is not a non-empty string",
                self.user_claim
            ))),
        }
    }

    /// The keys to verify a token naming `kid` with, fetching them first
    /// for a URL source when they are missing, stale or lack `kid` (and
    /// the last fetch is long enough ago).
    async fn keys_for(&self, kid: Option<&str>, now: SystemTime) -> Result<Arc<[VerifyingKey]>> {
        let keys = self.keys();
        let Some(fetcher) = &self.fetcher else {
            return Ok(keys);
        };
        if !fetcher.wants(&keys, kid, now) {
            return Ok(keys);
        }
        let _one_at_a_time = fetcher.gate.lock().await;
        // Another task may have fetched while this one waited.
        let keys = self.keys();
        if !fetcher.wants(&keys, kid, now) {
            return Ok(keys);
        }
        if !fetcher.may_fetch(now) {
            return if keys.is_empty() {
                Err(AuthError::Fetch(format!(
                    "{}: no keys yet; the last fetch failed, retrying later",
                    self.source
                )))
            } else {
                Ok(keys)
            };
        }
        match fetcher.fetch(now).await {
            Ok(new) => {
                let new: Arc<[VerifyingKey]> = new.into();
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&new);
                tracing::debug!(issuer = %self.issuer, keys = new.len(), "fetched OIDC keys");
                Ok(new)
            }
            Err(e) if keys.is_empty() => Err(e),
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, "keeping the old OIDC keys: {e}");
                Ok(keys)
            }
        }
    }

    fn keys(&self) -> Arc<[VerifyingKey]> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads a file source; if the file is now missing or bad, the old
    /// keys stay and the error is returned. For a URL source, the cached
    /// keys are marked stale: the next token fetches them again.
    pub fn reload(&self) -> Result<()> {
        match (&self.source, &self.fetcher) {
            (JwksSource::File(path), _) => {
                let keys = read_jwks_file(path)?;
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys.into();
                Ok(())
            }
            (JwksSource::Url(_), Some(fetcher)) => {
                fetcher.forget();
                Ok(())
            }
            (JwksSource::Url(_), None) => Ok(()),
        }
    }
}

fn read_jwks_file(path: &std::path::Path) -> Result<Vec<VerifyingKey>> {
    let bytes = std::fs::read(path).map_err(|source| AuthError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_jwks(&bytes).map_err(|e| AuthError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The claims of a verified ID token: the times, and the rest by name
/// (`iss` and `aud` are checked by [`jws::verify`]).
#[derive(Deserialize)]
struct IdClaims {
    #[serde(default, deserialize_with = "exp")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "nbf")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "iat")]
    iat: Option<u64>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

fn exp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    numeric_date(d, "exp")
}

fn nbf<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    numeric_date(d, "nbf")
}

fn iat<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    numeric_date(d, "iat")
}

/// A JWT NumericDate: whole seconds; fractions are dropped. The error
/// names the claim.
fn numeric_date<'de, D: Deserializer<'de>>(d: D, name: &str) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(d)?;
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{name}: not a date")))
}

/// The unverified `iss` of a JWT-shaped string (three base64url parts,
/// a JSON payload with a string `iss`), so a caller can tell whether a
/// password is an ID token of a configured issuer before verifying it.
/// Cheap and never panics; `None` for anything else.
pub fn peek_issuer(token: &str) -> Option<String> {
    jws::unverified_issuer(token)
}

#[cfg(test)]
mod tests;
