//! The JWT plumbing shared by [`crate::token`] and [`crate::oidc`], on the
//! `jsonwebtoken` crate: key selection with the algorithm pinned per key,
//! the signature, `iss` and `aud` (RFC 7515, RFC 7519). The times are
//! checked here too ([`Validity`]), against the caller's `now` rather
//! than the system clock.
//!
//! Everything here treats its input as hostile: the length is capped
//! before any decoding, and every failure is [`AuthError::Refused`].

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{AuthError, Result};
use crate::jwk::VerifyingKey;

/// Longer tokens are refused before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Strict base64url without padding.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding; `what` names the part for the error.
pub(crate) fn b64_decode(text: &str, what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| AuthError::refused(format!("{what}: bad base64url: {e}")))
}

/// Makes sure jsonwebtoken has its process-wide crypto provider, which
/// it panics without. Its `aws_lc_rs` feature alone selects aws-lc-rs;
/// should another crate in the build also turn on `rust_crypto`, none is
/// selected, and this installs the aws-lc-rs one. Cheap once set.
pub(crate) fn ensure_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // Err: another thread installed one first, which is as good.
        let _ = CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    }
}

/// The three dot-separated parts (header and payload non-empty), after
/// the length cap. Cheap: no decoding.
pub(crate) fn split(token: &str) -> Result<(&str, &str, &str)> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::refused("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::refused("not a JWT: want three parts"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::refused("not a JWT: empty part"));
    }
    Ok((header, payload, signature))
}

/// The header of a JWT-shaped `token` (not yet verified). Refuses an
/// `alg` jsonwebtoken does not know (`none` among them) and any `crit`
/// extension: we understand none.
pub(crate) fn header(token: &str) -> Result<Header> {
    split(token)?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| AuthError::refused(format!("header: unreadable or unknown alg: {e}")))?;
    if header.crit.is_some() {
        return Err(AuthError::refused("header: unsupported crit extensions"));
    }
    Ok(header)
}

/// What [`verify`] requires of the claims besides the signature.
pub(crate) struct Expect<'a> {
    /// The `iss` the token must carry.
    pub issuer: &'a str,
    /// The audience the token's `aud` must name (or list).
    pub audience: &'a str,
}

/// Verifies `token`, whose [`header`] is `header`, with the key `keys`
/// holds under its `kid` (or the only key when the token names none),
/// requiring the header's `alg` to be that key's algorithm, and `iss` and
/// `aud` as `expect` says. Returns the claims; their times are the
/// caller's to check ([`Validity`]).
pub(crate) fn verify<T: DeserializeOwned>(
    token: &str,
    header: &Header,
    keys: &[VerifyingKey],
    expect: &Expect<'_>,
) -> Result<T> {
    let key = select_key(keys, header.kid.as_deref())?;
    let alg = key.algorithm().jwt();
    if header.alg != alg {
        return Err(AuthError::refused(format!(
            "alg {:?} is not {} (pinned for key {})",
            header.alg,
            key.algorithm(),
            key.kid()
        )));
    }
    ensure_provider();
    let mut validation = Validation::new(alg);
    // The times are checked against the caller's `now`, not the clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims = HashSet::from(["iss".to_owned(), "aud".to_owned()]);
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(&[expect.audience]);
    jsonwebtoken::decode::<T>(token, key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            AuthError::refused(match e.kind() {
                ErrorKind::InvalidSignature => format!("bad signature (key {})", key.kid()),
                ErrorKind::InvalidIssuer => format!("iss is not {:?}", expect.issuer),
                ErrorKind::InvalidAudience => format!("aud does not name {:?}", expect.audience),
                ErrorKind::MissingRequiredClaim(claim) => format!("{claim}: missing"),
                ErrorKind::InvalidClaimFormat(claim) => format!("{claim}: malformed"),
                ErrorKind::Json(e) => format!("claims: {e}"),
                _ => format!("token: {e}"),
            })
        })
}

/// The key named by `kid`, or the only key when there is no `kid`.
fn select_key<'k>(keys: &'k [VerifyingKey], kid: Option<&str>) -> Result<&'k VerifyingKey> {
    match (kid, keys) {
        (Some(kid), keys) => keys
            .iter()
            .find(|k| k.kid() == kid)
            .ok_or_else(|| AuthError::refused(format!("unknown kid {:?}", shorten(kid)))),
        (None, [only]) => Ok(only),
        (None, _) => Err(AuthError::refused("no kid and more than one key")),
    }
}

/// At most 64 characters of untrusted text, for messages.
fn shorten(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(at, _)| &text[..at])
}

/// The unverified `iss` of a JWT-shaped `token`, if its payload is JSON
/// with a string `iss`.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        iss: String,
    }
    let (_, payload, _) = split(token).ok()?;
    let payload = b64_decode(payload, "payload").ok()?;
    serde_json::from_slice::<Peek>(&payload).ok().map(|p| p.iss)
}

/// Seconds since the epoch (0 for a clock before it).
pub(crate) fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The registered time claims of a token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    /// `exp`: valid before this.
    pub exp: u64,
    /// `nbf`: not valid before this.
    pub nbf: Option<u64>,
    /// `iat`: issued at; refused if in the future.
    pub iat: Option<u64>,
}

impl Validity {
    /// Refuses an expired, not yet valid or future-issued token, allowing
    /// `leeway` of clock skew each way.
    pub(crate) fn check(&self, now: SystemTime, leeway: Duration) -> Result<()> {
        let now = unix_seconds(now);
        let leeway = leeway.as_secs();
        if now >= self.exp.saturating_add(leeway) {
            return Err(AuthError::refused(format!(
                "expired at {} (now {now})",
                self.exp
            )));
        }
        if let Some(nbf) = self.nbf
            && now.saturating_add(leeway) < nbf
        {
            return Err(AuthError::refused(format!(
                "not valid before {nbf} (now {now})"
            )));
        }
        if let Some(iat) = self.iat
            && now.saturating_add(leeway) < iat
        {
            return Err(AuthError::refused(format!(
                "issued in the future at {iat} (now {now})"
            )));
        }
        Ok(())
    }
}
