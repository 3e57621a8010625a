//! The JWT plumbing shared by [`crate::token`] and [`crate::oidc`]: the
//! compact serialization (RFC 7515), key selection with the algorithm
//! pinned per key, and the registered time and audience claims (RFC 7519).
//!
//! Everything here treats its input as hostile: lengths are capped, parts
//! are strict base64url, and every failure is [`AuthError::Refused`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

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

/// The protected header, as far as we read it.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    /// The signature algorithm the token claims.
    pub alg: String,
    /// Which key signed it.
    #[serde(default)]
    pub kid: Option<String>,
    /// Extensions the verifier must understand; we understand none.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A token split into its parts, header and signature decoded.
pub(crate) struct Compact<'a> {
    /// The decoded header.
    pub header: Header,
    /// `header.payload` as sent: what the signature covers.
    pub signing_input: &'a str,
    /// The decoded payload: not to be trusted before [`Compact::verify`].
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl<'a> Compact<'a> {
    /// Splits `token` into its three base64url parts and decodes them
    /// (the header also from JSON).
    pub(crate) fn parse(token: &'a str) -> Result<Self> {
        let (header_part, payload_part, signature) = split(token)?;
        let header_json = b64_decode(header_part, "header")?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|e| AuthError::refused(format!("header: {e}")))?;
        if header.crit.is_some() {
            return Err(AuthError::refused("header: unsupported crit extensions"));
        }
        let signature = b64_decode(signature, "signature")?;
        let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
        let payload = b64_decode(payload_part, "payload")?;
        Ok(Compact {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// Picks the key by `kid` (or the only key when the token names none),
    /// requires the header's `alg` to be that key's algorithm, and checks
    /// the signature. Returns the payload, now trusted.
    pub(crate) fn verify(&self, keys: &[VerifyingKey]) -> Result<&[u8]> {
        let key = select_key(keys, self.header.kid.as_deref())?;
        if self.header.alg != key.algorithm().as_str() {
            return Err(AuthError::refused(format!(
                "alg {:?} is not {} (pinned for key {})",
                shorten(&self.header.alg),
                key.algorithm().as_str(),
                key.kid()
            )));
        }
        if !key.verify_signature(self.signing_input.as_bytes(), &self.signature) {
            return Err(AuthError::refused(format!(
                "bad signature (key {})",
                key.kid()
            )));
        }
        Ok(&self.payload)
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

/// The `iss` of a JSON payload, if it is a string; no verification.
pub(crate) fn unverified_issuer(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        iss: String,
    }
    serde_json::from_slice::<Peek>(payload).ok().map(|p| p.iss)
}

/// The `aud` claim: one string or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Refuses unless `audience` is, or is among, the claim.
    pub(crate) fn require(&self, audience: &str) -> Result<()> {
        let ok = match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        };
        ok.then_some(())
            .ok_or_else(|| AuthError::refused(format!("aud {self:?} is not {audience:?}")))
    }
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
