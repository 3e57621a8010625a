//! `[auth]`: how callers prove who they are. `[access]` (who may do what)
//! is [`oci_auth::AccessConfig`], the policy crate's own type.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `none` (default: everyone may do everything), `basic` or `token`.
    pub mode: AuthMode,
    /// The accounts: an htpasswd file of bcrypt entries (`htpasswd -B`).
    /// Required for `basic`; optional for `token` (OIDC users need none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<PathBuf>,
    /// `[auth.token]`: the token service (token mode).
    pub token: TokenConfig,
    /// `[[auth.oidc]]`: OIDC issuers whose ID tokens are accepted as
    /// passwords.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<OidcConfig>,
}

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No access control.
    #[default]
    None,
    /// HTTP Basic on every request.
    Basic,
    /// Docker registry tokens.
    Token,
}

impl From<AuthMode> for oci_auth::Mode {
    fn from(mode: AuthMode) -> Self {
        match mode {
            AuthMode::None => oci_auth::Mode::None,
            AuthMode::Basic => oci_auth::Mode::Basic,
            AuthMode::Token => oci_auth::Mode::Token,
        }
    }
}

/// `[auth.token]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// The service name: the `aud` of tokens and the `service` of
    /// challenges.
    pub service: String,
    /// The `iss` of tokens.
    pub issuer: String,
    /// PKCS#8 PEM private key, ES256 (P-256) or EdDSA (Ed25519). Without
    /// one, a P-256 key is generated on first start and kept in storage,
    /// so every replica issues and verifies the same tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// How long issued tokens are valid.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Trust an external token issuer at this URL instead of the built-in
    /// one (then `jwks` is required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// The external issuer's public keys (a JWKS file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            service: "oci-registry".into(),
            issuer: "oci-registry".into(),
            signing_key: None,
            ttl: Duration::from_secs(5 * 60),
            realm: None,
            jwks: None,
        }
    }
}

/// One `[[auth.oidc]]` issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` of its ID tokens.
    pub issuer: String,
    /// Its keys: a JWKS file, or an `https://` URL (fetched when needed).
    pub jwks: String,
    /// The `aud` its ID tokens must carry.
    pub audience: String,
    /// The claim that names the user in policies.
    pub user_claim: String,
}
