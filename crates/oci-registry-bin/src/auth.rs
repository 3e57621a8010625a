//! Builds the access control that `[auth]` and `[access]` describe.

use std::sync::Arc;

use oci_auth::{Authenticator, AuthenticatorOptions, Policy};
use oci_http::auth::{Auth, AuthOptions};

use crate::config::{AuthMode, Config, ConfigError};

/// The realm of `Basic` challenges.
pub const BASIC_REALM: &str = "oci-registry";

/// The auth layer's state for `config`, or `None` with `mode = "none"`.
pub fn build(config: &Config) -> Result<Option<Auth>, ConfigError> {
    let auth = &config.auth;
    if auth.mode == AuthMode::None {
        if config.access != Default::default() {
            tracing::warn!(
                "[access] is ignored: auth.mode is \"none\", so everyone may do everything"
            );
        }
        return Ok(None);
    }
    let policy = policy(config)?;
    let authenticator = Authenticator::new(AuthenticatorOptions {
        mode: auth.mode.into(),
        htpasswd: auth.htpasswd.clone(),
        policy,
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

/// The compiled `[access]` policy.
pub fn policy(config: &Config) -> Result<Policy, ConfigError> {
    Policy::new(&config.access).map_err(|e| invalid("access", e))
}

/// The configuration key a load error is about.
fn key_of(e: &oci_auth::AuthError) -> &'static str {
    match e {
        oci_auth::AuthError::Io { .. } | oci_auth::AuthError::File { .. } => "auth.htpasswd",
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
