//! Public keys for token verification, from JWKs (RFC 7517) and JWKS
//! documents, each pinned to one signature [`Algorithm`]. Re-exported by
//! [`crate::token`].

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{AuthError, Result};
use crate::jws::{b64_decode, b64_encode};

/// A signature algorithm the registry accepts. One per key: a token's
/// `alg` header must name its key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (verification only; 2048 to 8192
    /// bits), as GitHub Actions and most OIDC providers sign.
    Rs256,
}

impl Algorithm {
    /// The JOSE name: `ES256`, `EdDSA`, `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    /// The same algorithm, as jsonwebtoken names it.
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key with its one pinned algorithm and its key id.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    kid: String,
    /// The key as a JWK with `kid`, `alg` and `use`.
    jwk: Value,
    /// The key as jsonwebtoken verifies with it, built once.
    decoding: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A P-256 key from its uncompressed point (`04 || x || y`).
    pub(crate) fn es256(point: &[u8], kid: Option<String>) -> Result<Self> {
        let (x, y) = match point {
            [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => {
                return Err(AuthError::Key(
                    "P-256 point: want 65 bytes, 04||x||y".into(),
                ));
            }
        };
        // Refuse a point off the curve now rather than at each token.
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .map_err(|e| AuthError::Key(format!("P-256 point: {e}")))?;
        let (x, y) = (b64_encode(x), b64_encode(y));
        let kid = kid.unwrap_or_else(|| {
            thumbprint(&format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
            ))
        });
        let decoding = DecodingKey::from_ec_components(&x, &y);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        Self::new(Algorithm::Es256, kid, jwk, decoding)
    }

    /// An Ed25519 key from its 32 bytes.
    pub(crate) fn ed25519(x: &[u8], kid: Option<String>) -> Result<Self> {
        if x.len() != 32 {
            return Err(AuthError::Key("Ed25519 key: want 32 bytes".into()));
        }
        ParsedPublicKey::new(&ED25519, x)
            .map_err(|e| AuthError::Key(format!("Ed25519 key: {e}")))?;
        let x = b64_encode(x);
        let kid = kid.unwrap_or_else(|| {
            thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#))
        });
        let decoding = DecodingKey::from_ed_components(&x);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        Self::new(Algorithm::EdDsa, kid, jwk, decoding)
    }

    /// An RSA key from its big-endian modulus and exponent.
    pub(crate) fn rs256(n: &[u8], e: &[u8], kid: Option<String>) -> Result<Self> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() * 8 < 2048 || n.len() * 8 > 8192 {
            return Err(AuthError::Key(format!(
                "RSA modulus of {} bits: want 2048 to 8192",
                n.len() * 8
            )));
        }
        if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) {
            return Err(AuthError::Key(
                "RSA exponent: want a small odd number".into(),
            ));
        }
        let decoding = DecodingKey::from_rsa_raw_components(n, e);
        let (n, e) = (b64_encode(n), b64_encode(e));
        let kid =
            kid.unwrap_or_else(|| thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)));
        let jwk = json!({"kty": "RSA", "n": n, "e": e});
        Self::new(Algorithm::Rs256, kid, jwk, Ok(decoding))
    }

    /// Completes the JWK with `kid`, `alg` and `use`.
    fn new(
        algorithm: Algorithm,
        kid: String,
        mut jwk: Value,
        decoding: jsonwebtoken::errors::Result<DecodingKey>,
    ) -> Result<Self> {
        let decoding = decoding.map_err(|e| AuthError::Key(format!("{algorithm} key: {e}")))?;
        if let Some(fields) = jwk.as_object_mut() {
            fields.insert("kid".into(), kid.clone().into());
            fields.insert("alg".into(), algorithm.as_str().into());
            fields.insert("use".into(), "sig".into());
        }
        Ok(Self {
            algorithm,
            kid,
            jwk,
            decoding,
        })
    }

    /// A key from a JWK: `EC` on `P-256` (ES256), `OKP` on `Ed25519`
    /// (EdDSA) or `RSA` (RS256). The JWK's `alg`, if given, must agree;
    /// `use: enc` is refused. Without a `kid`, the RFC 7638 thumbprint is
    /// the key id.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>> {
            let text = field(name).ok_or_else(|| AuthError::Key(format!("JWK: no {name:?}")))?;
            b64_decode(text, name)
                .map_err(|_| AuthError::Key(format!("JWK: bad base64url {name:?}")))
        };
        if !jwk.is_object() {
            return Err(AuthError::Key("JWK: not an object".into()));
        }
        if let Some(usage) = field("use")
            && usage != "sig"
        {
            return Err(AuthError::Key(format!("JWK: use {usage:?} is not sig")));
        }
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::Key("JWK: kid is not a string".into())),
        };
        let kty = field("kty").unwrap_or_default();
        let crv = field("crv").unwrap_or_default();
        let key = match (kty, crv) {
            ("EC", "P-256") => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(AuthError::Key("JWK: P-256 x and y want 32 bytes".into()));
                }
                let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
                Self::es256(&point, kid)?
            }
            ("OKP", "Ed25519") => Self::ed25519(&bytes("x")?, kid)?,
            ("RSA", _) => Self::rs256(&bytes("n")?, &bytes("e")?, kid)?,
            (kty, crv) => {
                return Err(AuthError::Key(format!(
                    "JWK: unsupported key type {kty:?} {crv:?} (EC P-256, OKP Ed25519, RSA)"
                )));
            }
        };
        match field("alg") {
            None => Ok(key),
            Some(alg) if alg == key.algorithm.as_str() => Ok(key),
            Some("Ed25519") if key.algorithm == Algorithm::EdDsa => Ok(key),
            Some(alg) => Err(AuthError::Key(format!(
                "JWK: alg {alg:?} unsupported for this key (want {})",
                key.algorithm
            ))),
        }
    }

    /// The key as a JWK with `kid`, `alg` and `use: sig`, for a JWKS
    /// document.
    pub fn to_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// The algorithm a token signed with this key must name.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id tokens name in their `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as jsonwebtoken verifies with it.
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The usable keys of a JWKS document (`{"keys": [...]}`). Keys of other
/// types or algorithms and encryption keys are skipped; an error if none
/// is left, or if the document is not a JWKS.
pub fn parse_jwks(json: &[u8]) -> Result<Vec<VerifyingKey>> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| AuthError::Key(format!("JWKS: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(AuthError::Key("JWKS: no \"keys\" array".into()));
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        match VerifyingKey::from_jwk(entry) {
            Ok(key) => keys.push(key),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::Key(format!(
            "JWKS: no usable key among {} ({})",
            entries.len(),
            skipped.join("; ")
        )));
    }
    for why in &skipped {
        tracing::debug!("JWKS: skipped a key: {why}");
    }
    Ok(keys)
}

/// RFC 7638: base64url of the SHA-256 of the canonical JWK.
fn thumbprint(canonical: &str) -> String {
    b64_encode(&Sha256::digest(canonical.as_bytes()))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = VerifyingKey::from_jwk(&json!({"kty": "RSA", "n": n, "e": "AQAB"})).unwrap();
        assert_eq!(key.kid(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.algorithm(), Algorithm::Rs256);
        // RFC 8037 appendix A.3.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let key = VerifyingKey::from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x})).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let doc = json!({"keys": [
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "use": "enc", "x": b64_encode(&[1; 32])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), "ed");
        for bad in [
            &b"{}"[..],
            b"[]",
            b"not json",
            br#"{"keys": []}"#,
            br#"{"keys": [{"kty": "oct", "k": "AA"}]}"#,
            br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
            br#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#,
        ] {
            assert!(matches!(parse_jwks(bad), Err(AuthError::Key(_))), "{bad:?}");
        }
    }
}
