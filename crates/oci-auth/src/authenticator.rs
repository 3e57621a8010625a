//! [`Authenticator`]: the one object the HTTP layer asks who a caller is
//! ([`Authenticator::identify`]) and what they may do
//! ([`Authenticator::allowed`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use oci_types::RepositoryName;

use crate::action::Actions;
use crate::cache::{self, VerifiedCache};
use crate::error::{AuthError, Result};
use crate::htpasswd::Htpasswd;
use crate::policy::{Policy, Principal};
use crate::scope::{Resource, Scope};
use crate::throttle::{Throttle, ThrottleOptions, Verdict};

/// How callers prove who they are (`[auth] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No access control: everyone may do everything.
    #[default]
    None,
    /// HTTP Basic against the htpasswd accounts, on every request.
    Basic,
    /// Docker registry tokens (bearer), from the built-in issuer or an
    /// external one.
    Token,
}

/// What an [`Authenticator`] is built from.
#[derive(Debug, Clone)]
pub struct AuthenticatorOptions {
    /// The mode.
    pub mode: Mode,
    /// The htpasswd file of the accounts, if any.
    pub htpasswd: Option<PathBuf>,
    /// The `[access]` policy.
    pub policy: Policy,
    /// Failed-login throttling.
    pub throttle: ThrottleOptions,
    /// How long a verified password is trusted before bcrypt is asked
    /// again (reloading the accounts forgets them all at once).
    pub credential_ttl: Duration,
}

impl Default for AuthenticatorOptions {
    fn default() -> Self {
        Self {
            mode: Mode::None,
            htpasswd: None,
            policy: Policy::default(),
            throttle: ThrottleOptions::default(),
            credential_ttl: Duration::from_secs(60),
        }
    }
}

/// Credentials as a request carries them.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// None.
    None,
    /// `Authorization: Basic`.
    Basic {
        /// The user name.
        user: &'a str,
        /// The password (or an OIDC ID token).
        password: &'a str,
    },
    /// `Authorization: Bearer`.
    Bearer(&'a str),
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { user, .. } => write!(f, "Basic({user:?})"),
            Self::Bearer(_) => f.write_str("Bearer"),
        }
    }
}

/// An identified caller and where their rights come from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    grant: Grant,
}

#[derive(Debug, Clone)]
enum Grant {
    /// Whatever the policy gives the principal (basic mode).
    Policy,
    /// Exactly what the token lists (token mode).
    Token(Arc<[Scope]>),
}

impl Caller {
    /// A caller with whatever the policy gives `principal`.
    pub fn by_policy(principal: Principal) -> Self {
        Self {
            principal,
            grant: Grant::Policy,
        }
    }

    /// A caller with what a token lists, and nothing else.
    pub fn by_token(principal: Principal, scopes: Vec<Scope>) -> Self {
        Self {
            principal,
            grant: Grant::Token(scopes.into()),
        }
    }
}

/// Identifies callers and answers what they may do.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
    htpasswd_path: Option<PathBuf>,
    accounts: RwLock<Option<Arc<Htpasswd>>>,
    policy: Policy,
    throttle: Throttle,
    passwords: VerifiedCache<Principal>,
    credential_ttl: Duration,
}

impl Authenticator {
    /// Loads the accounts and builds the authenticator.
    pub fn new(options: AuthenticatorOptions) -> Result<Self> {
        let accounts = match &options.htpasswd {
            Some(path) => Some(Arc::new(Htpasswd::load(path)?)),
            None if options.mode == Mode::Basic => {
                return Err(AuthError::Config(
                    "auth.mode = \"basic\" needs auth.htpasswd".into(),
                ));
            }
            None => None,
        };
        Ok(Self {
            mode: options.mode,
            htpasswd_path: options.htpasswd,
            accounts: RwLock::new(accounts),
            policy: options.policy,
            throttle: Throttle::new(options.throttle),
            passwords: VerifiedCache::new(10_000),
            credential_ttl: options.credential_ttl,
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The files that [`Authenticator::reload`] re-reads.
    pub fn files(&self) -> Vec<PathBuf> {
        self.htpasswd_path.iter().cloned().collect()
    }

    /// Re-reads the accounts. A bad file is refused: the previous
    /// accounts stay and the error says why. Verified passwords are
    /// forgotten, so a removed account or a changed password takes effect
    /// at once. Blocking (bcrypt): call it off the async workers.
    pub fn reload(&self) -> Result<()> {
        if let Some(path) = &self.htpasswd_path {
            let fresh = Htpasswd::load(path)?;
            *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fresh));
        }
        self.passwords.clear();
        Ok(())
    }

    /// Who the caller is. `Err(Refused)` for credentials that are wrong or
    /// of the wrong kind for the mode, `Err(Throttled)` after too many
    /// failures.
    pub async fn identify(&self, credentials: Credentials<'_>, address: IpAddr) -> Result<Caller> {
        match (self.mode, credentials) {
            (Mode::None, _) => Ok(Caller::by_policy(Principal::Anonymous)),
            (Mode::Basic, Credentials::None) => Ok(Caller::by_policy(Principal::Anonymous)),
            (Mode::Basic, Credentials::Basic { user, password }) => {
                let principal = self.login(user, password, address).await?;
                Ok(Caller::by_policy(principal))
            }
            (Mode::Basic, Credentials::Bearer(_)) => {
                Err(AuthError::refused("bearer token in basic mode"))
            }
            (Mode::Token, Credentials::None) => {
                Ok(Caller::by_token(Principal::Anonymous, Vec::new()))
            }
            (Mode::Token, Credentials::Basic { .. }) => {
                Err(AuthError::refused("basic credentials in token mode"))
            }
            (Mode::Token, Credentials::Bearer(_)) => {
                Err(AuthError::refused("token verification is not configured"))
            }
        }
    }

    /// Checks a user's password (throttled; cached for a short while once
    /// verified) and returns who they are.
    pub async fn login(&self, user: &str, password: &str, address: IpAddr) -> Result<Principal> {
        let now = Instant::now();
        let key = cache::key(&[user.as_bytes(), password.as_bytes()]);
        if let Some(principal) = self.passwords.get(&key, now) {
            return Ok(principal);
        }
        match self.throttle.check(user, address, now) {
            Verdict::Refuse(retry) => return Err(AuthError::Throttled(retry)),
            Verdict::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Proceed(_) => {}
        }
        let accounts = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ok = match accounts {
            Some(accounts) => {
                let (user, password) = (user.to_owned(), password.to_owned());
                tokio::task::spawn_blocking(move || accounts.verify(&user, &password))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if !ok {
            self.throttle.failed(user, address, Instant::now());
            return Err(AuthError::refused(format!("wrong password for {user:?}")));
        }
        self.throttle.succeeded(user, address);
        let principal = Principal::User(user.to_owned());
        let now = Instant::now();
        self.passwords
            .insert(key, principal.clone(), now + self.credential_ttl, now);
        Ok(principal)
    }

    /// What `caller` may do in `repository`.
    pub fn allowed(&self, caller: &Caller, repository: &RepositoryName) -> Actions {
        match &caller.grant {
            Grant::Policy => self.policy.granted(&caller.principal, repository),
            Grant::Token(scopes) => scopes
                .iter()
                .filter(|s| matches!(&s.resource, Resource::Repository(r) if r == repository))
                .fold(Actions::NONE, |set, s| set.union(s.actions)),
        }
    }

    /// True if `caller` may list the catalog (which then shows only the
    /// repositories [`Authenticator::visible`] says).
    pub fn catalog_allowed(&self, caller: &Caller) -> bool {
        match &caller.grant {
            Grant::Policy => self.policy.grants_anything(&caller.principal),
            Grant::Token(scopes) => scopes.iter().any(|s| s.resource == Resource::Catalog),
        }
    }

    /// True if `caller` sees `repository` in the catalog: they may pull
    /// from it by the policy.
    pub fn visible(&self, caller: &Caller, repository: &RepositoryName) -> bool {
        self.policy
            .granted(&caller.principal, repository)
            .contains(crate::action::Action::Pull)
    }

    /// True if `caller` may read every repository, so may mount a blob
    /// from wherever it is stored (automatic mounts).
    pub fn reads_everywhere(&self, caller: &Caller) -> bool {
        self.policy.reads_everywhere(&caller.principal)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::action::Action;
    use crate::policy::AccessConfig;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn basic(accounts: &str, access: &str) -> (Authenticator, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(accounts.as_bytes()).unwrap();
        let config: AccessConfig = serde_json::from_str(access).unwrap();
        let auth = Authenticator::new(AuthenticatorOptions {
            mode: Mode::Basic,
            htpasswd: Some(file.path().to_owned()),
            policy: Policy::new(&config).unwrap(),
            ..AuthenticatorOptions::default()
        })
        .unwrap();
        (auth, file)
    }

    #[tokio::test]
    async fn basic_mode_checks_passwords_and_policy() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let (auth, _file) = basic(
            &format!("alice:{hash}\n"),
            r#"{"rules":[{"repositories":["pub/**"],"anonymous":true,"actions":["pull"]},
                         {"repositories":["**"],"users":["alice"],"actions":["pull","push"]}]}"#,
        );
        let alice = auth
            .identify(
                Credentials::Basic {
                    user: "alice",
                    password: "pw",
                },
                HERE,
            )
            .await
            .unwrap();
        let repo: RepositoryName = "team/x".parse().unwrap();
        assert_eq!(
            auth.allowed(&alice, &repo),
            Actions::parse_list("pull,push")
        );
        let wrong = auth
            .identify(
                Credentials::Basic {
                    user: "alice",
                    password: "pW",
                },
                HERE,
            )
            .await;
        assert!(matches!(wrong, Err(AuthError::Refused(_))));
        let anon = auth.identify(Credentials::None, HERE).await.unwrap();
        assert_eq!(auth.allowed(&anon, &repo), Actions::NONE);
        assert_eq!(
            auth.allowed(&anon, &"pub/a".parse().unwrap()),
            Action::Pull.into()
        );
        assert!(auth.catalog_allowed(&anon));
        assert!(auth.reads_everywhere(&alice) && !auth.reads_everywhere(&anon));
    }

    #[tokio::test]
    async fn reload_forgets_verified_passwords() {
        let (auth, file) = basic(
            &format!("alice:{}\n", bcrypt::hash("old", 4).unwrap()),
            "{}",
        );
        let old = Credentials::Basic {
            user: "alice",
            password: "old",
        };
        assert!(auth.identify(old, HERE).await.is_ok());
        std::fs::write(
            file.path(),
            format!("alice:{}\n", bcrypt::hash("new", 4).unwrap()),
        )
        .unwrap();
        auth.reload().unwrap();
        assert!(auth.identify(old, HERE).await.is_err());
        // A broken file is refused and the accounts stay.
        std::fs::write(file.path(), "alice:plaintext\n").unwrap();
        assert!(auth.reload().is_err());
        let new = Credentials::Basic {
            user: "alice",
            password: "new",
        };
        assert!(auth.identify(new, HERE).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_throttled() {
        let (auth, _file) = basic(&format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()), "{}");
        let wrong = Credentials::Basic {
            user: "alice",
            password: "guess",
        };
        let mut throttled = false;
        for _ in 0..11 {
            if let Err(AuthError::Throttled(_)) = auth.identify(wrong, HERE).await {
                throttled = true;
            }
        }
        assert!(throttled);
    }
}
