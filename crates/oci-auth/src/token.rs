//! Docker registry tokens: JWTs a token endpoint issues and the registry
//! verifies (distribution's `docs/spec/auth/token.md` and `jwt.md`).
//!
//! - [`SigningKey`]: a P-256 (ES256) or Ed25519 (EdDSA) private key from a
//!   PKCS#8 PEM; signs [`TokenClaims`] with `alg`, `kid` and `typ` in the
//!   header.
//! - [`VerifyingKey`]: a public key pinned to one [`Algorithm`], from a
//!   signing key, a JWK or a JWKS document ([`parse_jwks`]).
//! - [`TokenVerifier`]: checks signature, issuer, audience and times.
//!   Its keys can be swapped in place ([`TokenVerifier::replace_keys`])
//!   when key files change.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
#[cfg(test)]
use {crate::jws::b64_encode, serde_json::json};

use crate::error::{AuthError, Result};
use crate::jws::{self, Expect, Validity};
use crate::scope::AccessEntry;

pub use crate::jwk::{Algorithm, VerifyingKey, parse_jwks};

/// The claims of a registry token (jwt.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The token endpoint that issued it.
    pub iss: String,
    /// The user; empty for an anonymous caller.
    #[serde(default)]
    pub sub: String,
    /// The registry's service name. When verified, the audience the
    /// verifier wants (the token may have listed several).
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// A unique id for the token.
    #[serde(default)]
    pub jti: String,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

/// The claims as a verifier reads them (`aud`, which may be an array,
/// is jsonwebtoken's to check).
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: String,
    #[serde(default)]
    sub: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    access: Vec<AccessEntry>,
}

/// A private key that signs registry tokens: ES256 (P-256) or EdDSA
/// (Ed25519).
pub struct SigningKey {
    /// The PKCS#8 key as jsonwebtoken signs with it.
    private: EncodingKey,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.public.algorithm())
            .field("kid", &self.public.kid())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`,
    /// as `openssl genpkey` writes) holding a P-256 or an Ed25519 key. A
    /// SEC1 `EC PRIVATE KEY` on P-256 is accepted too. Any other key (RSA,
    /// P-384, ...) is an [`AuthError::Key`].
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey> {
        let (label, der) = pem_decode(pem)?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8(&der),
            "EC PRIVATE KEY" => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| {
                        AuthError::Key(
                    "EC PRIVATE KEY: not a P-256 key (only P-256 and Ed25519 keys can sign)".into(),
                )
                    })
                    .and_then(Self::from_ecdsa)
            }
            "RSA PRIVATE KEY" => Err(AuthError::Key(
                "RSA keys cannot sign registry tokens: use a P-256 or Ed25519 key".into(),
            )),
            "ENCRYPTED PRIVATE KEY" => Err(AuthError::Key(
                "encrypted private keys are not supported: use an unencrypted PKCS#8 PEM".into(),
            )),
            other => Err(AuthError::Key(format!(
                "PEM {other:?}: want PRIVATE KEY (PKCS#8)"
            ))),
        }
    }

    /// Tells the key type with aws-lc, which also gives the public key.
    fn from_pkcs8(der: &[u8]) -> Result<SigningKey> {
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::from_ecdsa(pair);
        }
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let public = VerifyingKey::ed25519(pair.public_key().as_ref(), None)?;
            // Re-encoded (PKCS#8 v2): jsonwebtoken's signer parses strictly.
            let pkcs8 = pair
                .to_pkcs8()
                .map_err(|_| AuthError::Key("Ed25519 key: re-encoding failed".into()))?;
            return Self::new(EncodingKey::from_ed_der(pkcs8.as_ref()), public);
        }
        let what = if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
            "a P-384 key"
        } else if RsaKeyPair::from_pkcs8(der).is_ok() {
            "an RSA key"
        } else {
            "not a usable PKCS#8 key"
        };
        Err(AuthError::Key(format!(
            "{what}: only P-256 (ES256) and Ed25519 (EdDSA) keys can sign registry tokens"
        )))
    }

    fn from_ecdsa(pair: EcdsaKeyPair) -> Result<SigningKey> {
        let public = VerifyingKey::es256(pair.public_key().as_ref(), None)?;
        // PKCS#8 whatever the PEM held (SEC1 too): jsonwebtoken reads that.
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| AuthError::Key("P-256 key: re-encoding failed".into()))?;
        Self::new(EncodingKey::from_ec_der(pkcs8.as_ref()), public)
    }

    /// A signing key, after a trial signature: a key jsonwebtoken cannot
    /// sign with fails here, at load, rather than at each token.
    fn new(private: EncodingKey, public: VerifyingKey) -> Result<SigningKey> {
        jws::ensure_provider();
        jsonwebtoken::crypto::sign(b"trial", &private, public.algorithm().jwt())
            .map_err(|e| AuthError::Key(format!("{} key: {e}", public.algorithm())))?;
        Ok(SigningKey { private, public })
    }

    /// A new P-256 key as a PKCS#8 PEM, for a key file made on first
    /// start.
    pub fn generate_pem() -> Result<Vec<u8>> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| AuthError::Key("generating a P-256 key failed".into()))?;
        Ok(pem_encode("PRIVATE KEY", doc.as_ref()))
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// Signs `claims` into a compact JWT with `alg`, `kid` and `typ: JWT`
    /// in the header.
    pub fn sign(&self, claims: &TokenClaims) -> Result<String> {
        let mut header = Header::new(self.algorithm().jwt());
        header.kid = Some(self.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &self.private)
            .map_err(|e| AuthError::Key(format!("signing: {e}")))
    }

    /// Signs raw bytes (for tests that hand-craft tokens).
    #[cfg(test)]
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signature = jsonwebtoken::crypto::sign(message, &self.private, self.algorithm().jwt())
            .map_err(|e| AuthError::Key(format!("signing: {e}")))?;
        jws::b64_decode(&signature, "signature")
    }

    /// The public half, for a verifier of this registry's own tokens.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`, for a
    /// JWKS document other services can fetch.
    pub fn public_jwk(&self) -> Value {
        self.public.to_jwk()
    }
}

/// How a [`TokenVerifier`] is set up.
#[derive(Debug, Clone)]
pub struct TokenVerifierOptions {
    /// The `iss` tokens must carry: the token endpoint's issuer name.
    pub issuer: String,
    /// The audience tokens must name: the registry's service name.
    pub audience: String,
    /// The keys tokens may be signed with.
    pub keys: Vec<VerifyingKey>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl TokenVerifierOptions {
    /// The default clock skew allowance, 30 seconds.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
}

impl Default for TokenVerifierOptions {
    /// Empty issuer, audience and keys (to be filled in), 30 s leeway.
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            keys: Vec::new(),
            leeway: Self::DEFAULT_LEEWAY,
        }
    }
}

/// Verifies registry tokens. Shared between threads; its keys can be
/// swapped with [`TokenVerifier::replace_keys`] when key files change,
/// without disturbing verifications in flight.
#[derive(Debug)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    leeway: Duration,
    keys: RwLock<Arc<[VerifyingKey]>>,
}

impl TokenVerifier {
    /// A verifier; a [`AuthError::Config`] without an issuer or an
    /// audience, a [`AuthError::Key`] without keys.
    pub fn new(options: TokenVerifierOptions) -> Result<Self> {
        if options.issuer.is_empty() || options.audience.is_empty() {
            return Err(AuthError::Config(
                "token verifier: issuer and audience must not be empty".into(),
            ));
        }
        if options.keys.is_empty() {
            return Err(AuthError::Key("token verifier: no keys".into()));
        }
        Ok(Self {
            issuer: options.issuer,
            audience: options.audience,
            leeway: options.leeway,
            keys: RwLock::new(options.keys.into()),
        })
    }

    /// Swaps in a new key set (at least one key; an empty set is an
    /// [`AuthError::Key`] and the old keys stay).
    pub fn replace_keys(&self, keys: Vec<VerifyingKey>) -> Result<()> {
        if keys.is_empty() {
            return Err(AuthError::Key("token verifier: no keys".into()));
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys.into();
        Ok(())
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<[VerifyingKey]> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks `token` at time `now`: the key by `kid` (or the only key
    /// when there is no `kid`), `alg` equal to that key's algorithm, the
    /// signature, `iss`, `aud`, and `exp`/`nbf`/`iat` (all required) with
    /// the leeway. Every failure is an [`AuthError::Refused`].
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenClaims> {
        let header = jws::header(token)?;
        let expect = Expect {
            issuer: &self.issuer,
            audience: &self.audience,
        };
        let claims: ReceivedClaims = jws::verify(token, &header, &self.keys(), &expect)?;
        Validity {
            exp: claims.exp,
            nbf: Some(claims.nbf),
            iat: Some(claims.iat),
        }
        .check(now, self.leeway)?;
        Ok(TokenClaims {
            iss: claims.iss,
            sub: claims.sub,
            aud: self.audience.clone(),
            exp: claims.exp,
            nbf: claims.nbf,
            iat: claims.iat,
            jti: claims.jti,
            access: claims.access,
        })
    }
}

/// The label and DER bytes of the first PEM block in `pem`.
fn pem_decode(pem: &[u8]) -> Result<(String, Vec<u8>)> {
    let text = std::str::from_utf8(pem).map_err(|_| AuthError::Key("PEM: not text".into()))?;
    let no_block = || AuthError::Key("PEM: no -----BEGIN ...----- block".into());
    let start = text.find("-----BEGIN ").ok_or_else(no_block)?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----").ok_or_else(no_block)?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest
        .split_once(&end_marker)
        .ok_or_else(|| AuthError::Key(format!("PEM: no {end_marker}")))?;
    if body.contains(':') {
        return Err(AuthError::Key(
            "PEM: headers (an encrypted key?) are not supported".into(),
        ));
    }
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(body)
        .map_err(|e| AuthError::Key(format!("PEM {label}: bad base64: {e}")))?;
    Ok((label.to_owned(), der))
}

/// A PEM block, lines of 64 characters.
fn pem_encode(label: &str, der: &[u8]) -> Vec<u8> {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

#[cfg(test)]
pub(crate) mod tests;
