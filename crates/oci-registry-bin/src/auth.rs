//! Builds the access control that `[auth]` and `[access]` describe.

use std::sync::Arc;

use oci_auth::{
    Authenticator, AuthenticatorOptions, JwksSource, OidcOptions, Policy, SigningKey, TokenKeys,
    TokenOptions,
};
use oci_http::auth::{Auth, AuthOptions};
use oci_storage::{SharedKey, Storage};

use crate::config::{AuthMode, Config, ConfigError};

/// The realm of `Basic` challenges.
pub const BASIC_REALM: &str = "oci-registry";

/// The auth layer's state for `config`, or `None` with `mode = "none"`.
/// A token signing key the configuration does not name is taken from
/// `storage` (created there by the first replica); without storage
/// (`config check`) a throwaway key stands in.
pub async fn build(
    config: &Config,
    storage: Option<&Storage>,
) -> Result<Option<Auth>, ConfigError> {
    let auth = &config.auth;
    let policy = policy(config)?;
    if auth.mode == AuthMode::None {
        if config.access != Default::default() {
            tracing::warn!(
                "[access] is ignored: auth.mode is \"none\", so everyone may do everything"
            );
        }
        return Ok(None);
    }
    let token = match auth.mode {
        AuthMode::Token => Some(token_options(config, storage).await?),
        _ => None,
    };
    let oidc = auth
        .oidc
        .iter()
        .map(|o| {
            Ok(OidcOptions {
                issuer: o.issuer.clone(),
                jwks: o
                    .jwks
                    .parse::<JwksSource>()
                    .map_err(|e| invalid("auth.oidc.jwks", e))?,
                audience: o.audience.clone(),
                user_claim: o.user_claim.clone(),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let authenticator = Authenticator::new(AuthenticatorOptions {
        mode: auth.mode.into(),
        htpasswd: auth.htpasswd.clone(),
        policy,
        token,
        oidc,
        ..AuthenticatorOptions::default()
    })
    .map_err(|e| invalid(key_of(&e), e))?;
    warn_if_cleartext(config);
    Ok(Some(Auth::new(AuthOptions {
        authenticator: Arc::new(authenticator),
        basic_realm: BASIC_REALM.into(),
        token_realm: auth.token.realm.clone(),
        service: auth.token.service.clone(),
        https: config.server.tls.is_some(),
    })))
}

/// `[auth.token]`, its key read or generated.
async fn token_options(
    config: &Config,
    storage: Option<&Storage>,
) -> Result<TokenOptions, ConfigError> {
    let t = &config.auth.token;
    let keys = match (&t.realm, &t.jwks, &t.signing_key) {
        (Some(_), Some(jwks), _) => TokenKeys::Trust { jwks: jwks.clone() },
        (Some(_), None, _) => {
            return Err(invalid(
                "auth.token.jwks",
                "an external realm needs the JWKS of its issuer's keys",
            ));
        }
        (None, Some(_), _) => {
            return Err(invalid(
                "auth.token.realm",
                "jwks names an external issuer's keys; set realm to its token URL",
            ));
        }
        (None, None, Some(file)) => TokenKeys::Sign {
            pem: oci_auth::issuer::read(file).map_err(|e| invalid("auth.token.signing_key", e))?,
            file: Some(file.clone()),
        },
        (None, None, None) => {
            let candidate =
                SigningKey::generate_pem().map_err(|e| invalid("auth.token.signing_key", e))?;
            let pem = match storage {
                Some(storage) => storage
                    .shared_key(SharedKey::TokenSigning, candidate.into())
                    .await
                    .map_err(|e| invalid("auth.token.signing_key", e))?
                    .to_vec(),
                None => candidate,
            };
            TokenKeys::Sign { pem, file: None }
        }
    };
    Ok(TokenOptions {
        service: t.service.clone(),
        issuer: t.issuer.clone(),
        ttl: t.ttl,
        keys,
    })
}

/// The compiled `[access]` policy.
pub fn policy(config: &Config) -> Result<Policy, ConfigError> {
    Policy::new(&config.access).map_err(|e| invalid("access", e))
}

/// The configuration key a load error is about.
fn key_of(e: &oci_auth::AuthError) -> &'static str {
    match e {
        oci_auth::AuthError::Io { path, .. } | oci_auth::AuthError::File { path, .. } => {
            // The error names the file; this names the key most likely at fault.
            if path.extension().is_some_and(|e| e == "json") {
                "auth.token.jwks"
            } else if path.extension().is_some_and(|e| e == "pem") {
                "auth.token.signing_key"
            } else {
                "auth.htpasswd"
            }
        }
        _ => "auth",
    }
}

fn invalid(key: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: e.to_string(),
    }
}

/// Passwords would cross the network in clear: plain HTTP on an address
/// other than loopback.
fn warn_if_cleartext(config: &Config) {
    if config.server.tls.is_none() && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.server.listen,
            "access control over plain HTTP: passwords and tokens cross the network in clear; \
             configure [server.tls] or terminate TLS in front of the registry"
        );
    }
}
