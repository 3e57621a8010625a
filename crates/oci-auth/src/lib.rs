//! Access control for the registry, without HTTP: who the caller is and
//! what they may do.
//!
//! - [`htpasswd`]: accounts, bcrypt entries as `htpasswd -B` writes them.
//! - [`oidc`]: workload identity, OIDC ID tokens accepted as passwords.
//! - [`token`]: Docker registry tokens (distribution's
//!   `docs/spec/auth/token.md` and `jwt.md`): signing and verification;
//!   [`issuer`]: the token service that issues and checks them.
//! - [`scope`]: token scopes and the `access` claim.
//! - [`policy`]: the `[access]` rules and [`action`]s, over repository
//!   patterns ([`RepositoryPattern`]).
//! - [`throttle`]: failed-login throttling.
//!
//! The HTTP layer (`oci-http`'s `auth` module) asks [`Authenticator`] and
//! turns its answers into the spec's challenges and errors.

pub mod action;
pub mod authenticator;
mod cache;
pub mod error;
pub mod htpasswd;
pub mod issuer;
mod jwk;
mod jws;
pub mod oidc;
pub mod policy;
pub mod scope;
pub mod throttle;
pub mod token;

pub use action::{Action, Actions};
pub use authenticator::{
    Authenticator, AuthenticatorOptions, Caller, Credentials, Login, Mode, TokenRequest,
};
pub use error::{AuthError, Result};
pub use issuer::{IssuedToken, TokenKeys, TokenOptions};
pub use oci_types::RepositoryPattern;
pub use oidc::{JwksSource, OidcIssuer, OidcOptions, peek_issuer};
pub use policy::{AccessConfig, Policy, Principal, RuleConfig};
pub use scope::{AccessEntry, Resource, Scope};
pub use token::{
    Algorithm, SigningKey, TokenClaims, TokenVerifier, TokenVerifierOptions, VerifyingKey,
    parse_jwks,
};
