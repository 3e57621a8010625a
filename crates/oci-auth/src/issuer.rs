//! The token service of token mode: verifies the bearer tokens requests
//! carry and, as the built-in issuer, signs new ones (distribution's
//! `docs/spec/auth/token.md`, `jwt.md`, `oauth.md`).
//!
//! Access tokens and refresh tokens are both JWTs signed by the same key
//! but for different audiences (`<service>` and `<service>#refresh`), so
//! neither can stand in for the other.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{AuthError, Result};
use crate::scope::{AccessEntry, Scope};
use crate::token::{
    SigningKey, TokenClaims, TokenVerifier, TokenVerifierOptions, VerifyingKey, parse_jwks,
};

/// How long a refresh token (`offline_token=true`, `access_type=offline`)
/// stays valid. The user must still exist when it is used.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where token mode's keys come from.
#[derive(Debug, Clone)]
pub enum TokenKeys {
    /// The built-in issuer signs with this PKCS#8 PEM key, read from
    /// `file` (reloaded when it changes) or from storage (`file: None`).
    Sign {
        /// The key.
        pem: Vec<u8>,
        /// Its file, if it has one.
        file: Option<PathBuf>,
    },
    /// An external issuer signs; its public keys are this JWKS file.
    Trust {
        /// The JWKS file.
        jwks: PathBuf,
    },
}

/// `[auth.token]`.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    /// The service name: `aud` of tokens, `service` of challenges.
    pub service: String,
    /// The `iss` of tokens.
    pub issuer: String,
    /// How long issued access tokens are valid.
    pub ttl: Duration,
    /// The keys.
    pub keys: TokenKeys,
}

/// An issued token, as the token endpoint answers it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The access token.
    pub token: String,
    /// Seconds it is valid for.
    pub expires_in: u64,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// What it grants (the intersection of what was asked and what the
    /// policy gives).
    pub scopes: Vec<Scope>,
    /// A refresh token, when one was asked for with a password.
    pub refresh_token: Option<String>,
}

/// Verifies tokens and, with a signing key, issues them.
#[derive(Debug)]
pub(crate) struct TokenService {
    options: TokenOptions,
    signer: RwLock<Option<Arc<SigningKey>>>,
    access: TokenVerifier,
    refresh: TokenVerifier,
}

impl TokenService {
    pub(crate) fn new(options: TokenOptions) -> Result<Self> {
        let (signer, keys) = load_keys(&options.keys)?;
        let verifier = |audience: String| {
            TokenVerifier::new(TokenVerifierOptions {
                issuer: options.issuer.clone(),
                audience,
                keys: keys.clone(),
                ..TokenVerifierOptions::default()
            })
        };
        let access = verifier(options.service.clone())?;
        let refresh = verifier(refresh_audience(&options.service))?;
        Ok(Self {
            signer: RwLock::new(signer.map(Arc::new)),
            access,
            refresh,
            options,
        })
    }

    pub(crate) fn options(&self) -> &TokenOptions {
        &self.options
    }

    /// True if this registry issues tokens itself.
    pub(crate) fn issues(&self) -> bool {
        matches!(self.options.keys, TokenKeys::Sign { .. })
    }

    /// The key files, for reloads.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        match &self.options.keys {
            TokenKeys::Sign { file, .. } => file.iter().cloned().collect(),
            TokenKeys::Trust { jwks } => vec![jwks.clone()],
        }
    }

    /// Re-reads the key file. Tokens signed by the previous key stay valid
    /// until they expire (the previous key still verifies); new tokens are
    /// signed with the new one.
    pub(crate) fn reload(&self) -> Result<()> {
        let fresh = match &self.options.keys {
            TokenKeys::Sign { file: None, .. } => return Ok(()),
            TokenKeys::Sign {
                file: Some(file), ..
            } => TokenKeys::Sign {
                pem: read(file)?,
                file: Some(file.clone()),
            },
            keys @ TokenKeys::Trust { .. } => keys.clone(),
        };
        let (signer, mut keys) = load_keys(&fresh)?;
        if let Some(old) = self
            .signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && signer.as_ref().is_none_or(|new| new.kid() != old.kid())
        {
            keys.push(old.verifying_key());
        }
        self.access.replace_keys(keys.clone())?;
        self.refresh.replace_keys(keys)?;
        *self.signer.write().unwrap_or_else(PoisonError::into_inner) = signer.map(Arc::new);
        Ok(())
    }

    /// Verifies an access token.
    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<TokenClaims> {
        self.access.verify(token, now)
    }

    /// Verifies a refresh token; returns its user.
    pub(crate) fn verify_refresh(&self, token: &str, now: SystemTime) -> Result<String> {
        let claims = self.refresh.verify(token, now)?;
        if claims.sub.is_empty() {
            return Err(AuthError::refused("refresh token without a user"));
        }
        Ok(claims.sub)
    }

    /// Signs an access token for `user` (empty: anonymous) granting
    /// `scopes`, and a refresh token when `refresh` is set.
    pub(crate) fn issue(
        &self,
        user: &str,
        scopes: Vec<Scope>,
        refresh: bool,
        now: SystemTime,
    ) -> Result<IssuedToken> {
        let signer = self
            .signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| AuthError::Config("this registry does not issue tokens".into()))?;
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::Config("the clock is before 1970".into()))?
            .as_secs();
        let ttl = self.options.ttl.as_secs().max(1);
        let claims = |audience: String, ttl: u64, access: Vec<AccessEntry>| TokenClaims {
            iss: self.options.issuer.clone(),
            sub: user.to_owned(),
            aud: audience,
            exp: iat + ttl,
            nbf: iat,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let access = scopes.iter().map(AccessEntry::from).collect();
        let token = signer.sign(&claims(self.options.service.clone(), ttl, access))?;
        let refresh_token = if refresh && !user.is_empty() {
            let audience = refresh_audience(&self.options.service);
            Some(signer.sign(&claims(audience, REFRESH_TTL.as_secs(), Vec::new()))?)
        } else {
            None
        };
        Ok(IssuedToken {
            token,
            expires_in: ttl,
            issued_at: UNIX_EPOCH + Duration::from_secs(iat),
            scopes,
            refresh_token,
        })
    }
}

fn refresh_audience(service: &str) -> String {
    format!("{service}#refresh")
}

fn load_keys(keys: &TokenKeys) -> Result<(Option<SigningKey>, Vec<VerifyingKey>)> {
    match keys {
        TokenKeys::Sign { pem, file } => {
            let key = SigningKey::from_pem(pem).map_err(|e| match file {
                Some(path) => AuthError::File {
                    path: path.clone(),
                    message: e.to_string(),
                },
                None => e,
            })?;
            let verifying = key.verifying_key();
            Ok((Some(key), vec![verifying]))
        }
        TokenKeys::Trust { jwks } => {
            let keys = parse_jwks(&read(jwks)?).map_err(|e| AuthError::File {
                path: jwks.clone(),
                message: e.to_string(),
            })?;
            Ok((None, keys))
        }
    }
}

/// Reads a key file (at most 1 MiB).
pub fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| AuthError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}
