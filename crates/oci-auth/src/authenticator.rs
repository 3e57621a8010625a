//! [`Authenticator`]: the one object the HTTP layer asks who a caller is
//! ([`Authenticator::identify`]) and what they may do
//! ([`Authenticator::allowed`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci_types::RepositoryName;

use crate::action::Actions;
use crate::cache::{self, VerifiedCache};
use crate::error::{AuthError, Result};
use crate::htpasswd::Htpasswd;
use crate::issuer::{IssuedToken, TokenOptions, TokenService};
use crate::oidc::{OidcIssuer, OidcOptions, peek_issuer};
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
    /// The token service (required in token mode).
    pub token: Option<TokenOptions>,
    /// OIDC issuers whose ID tokens are accepted as passwords.
    pub oidc: Vec<OidcOptions>,
}

impl Default for AuthenticatorOptions {
    fn default() -> Self {
        Self {
            mode: Mode::None,
            htpasswd: None,
            policy: Policy::default(),
            throttle: ThrottleOptions::default(),
            credential_ttl: Duration::from_secs(60),
            token: None,
            oidc: Vec::new(),
        }
    }
}

/// How a token request logs in.
#[derive(Clone, Copy)]
pub enum Login<'a> {
    /// No credentials: a token for what anonymous callers may do.
    Anonymous,
    /// A user's password (or an OIDC ID token as the password).
    Password {
        /// The user name.
        user: &'a str,
        /// The password.
        password: &'a str,
    },
    /// A refresh token the issuer gave earlier.
    Refresh(&'a str),
}

impl std::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Password { user, .. } => write!(f, "Password({user:?})"),
            Self::Refresh(_) => f.write_str("Refresh"),
        }
    }
}

/// A token request (GET or POST `/auth/token`).
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// Who.
    pub login: Login<'a>,
    /// The `service` asked for, if given (must be ours).
    pub service: Option<&'a str>,
    /// The scopes asked for (unknown ones already dropped).
    pub scopes: Vec<Scope>,
    /// A refresh token is wanted (`offline_token=true`,
    /// `access_type=offline`).
    pub offline: bool,
    /// The client's address, for throttling.
    pub address: IpAddr,
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
    /// Verified passwords, as the policy caller they log in as (shared by
    /// every request carrying them).
    passwords: VerifiedCache<Arc<Caller>>,
    credential_ttl: Duration,
    tokens: Option<TokenService>,
    bearers: VerifiedCache<Arc<Caller>>,
    oidc: Vec<OidcIssuer>,
    oidc_files: Vec<PathBuf>,
    /// Password checks running at once: bcrypt is slow on purpose, and a
    /// flood of guesses must not take every core.
    checks: tokio::sync::Semaphore,
    /// The callers without credentials, shared by every such request.
    anonymous: Arc<Caller>,
    no_token: Arc<Caller>,
}

/// Most scopes one token request may ask for (a real client asks for one
/// to a handful).
pub const MAX_SCOPES: usize = 64;

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
        let tokens = match options.token {
            Some(token) => Some(TokenService::new(token)?),
            None if options.mode == Mode::Token => {
                return Err(AuthError::Config(
                    "auth.mode = \"token\" needs [auth.token]".into(),
                ));
            }
            None => None,
        };
        let oidc_files = options
            .oidc
            .iter()
            .filter_map(|o| match &o.jwks {
                crate::oidc::JwksSource::File(path) => Some(path.clone()),
                crate::oidc::JwksSource::Url(_) => None,
            })
            .collect();
        let oidc = options
            .oidc
            .into_iter()
            .map(OidcIssuer::new)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            mode: options.mode,
            htpasswd_path: options.htpasswd,
            accounts: RwLock::new(accounts),
            policy: options.policy,
            throttle: Throttle::new(options.throttle),
            passwords: VerifiedCache::new(10_000),
            credential_ttl: options.credential_ttl,
            tokens,
            bearers: VerifiedCache::new(10_000),
            oidc,
            oidc_files,
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            anonymous: Arc::new(Caller::by_policy(Principal::Anonymous)),
            no_token: Arc::new(Caller::by_token(Principal::Anonymous, Vec::new())),
        })
    }

    /// The token service's options (token mode).
    pub fn token_options(&self) -> Option<&TokenOptions> {
        self.tokens.as_ref().map(TokenService::options)
    }

    /// True if this registry issues tokens at its token endpoint.
    pub fn issues_tokens(&self) -> bool {
        self.tokens.as_ref().is_some_and(TokenService::issues)
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
        let mut files: Vec<PathBuf> = self.htpasswd_path.iter().cloned().collect();
        files.extend(self.tokens.iter().flat_map(TokenService::files));
        files.extend(self.oidc_files.iter().cloned());
        files
    }

    /// Re-reads the accounts. A bad file is refused: the previous
    /// accounts stay and the error says why. Verified passwords are
    /// forgotten, so a removed account or a changed password takes effect
    /// at once. Blocking (bcrypt): call it off the async workers.
    pub fn reload(&self) -> Result<()> {
        let mut result = Ok(());
        if let Some(path) = &self.htpasswd_path {
            match Htpasswd::load(path) {
                Ok(fresh) => {
                    *self.accounts.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(fresh));
                }
                Err(e) => result = Err(e),
            }
        }
        if let Some(tokens) = &self.tokens
            && let Err(e) = tokens.reload()
        {
            result = result.and(Err(e));
        }
        for oidc in &self.oidc {
            if let Err(e) = oidc.reload() {
                result = result.and(Err(e));
            }
        }
        self.passwords.clear();
        self.bearers.clear();
        result
    }

    /// Who the caller is. `Err(Refused)` for credentials that are wrong or
    /// of the wrong kind for the mode, `Err(Throttled)` after too many
    /// failures.
    pub async fn identify(
        &self,
        credentials: Credentials<'_>,
        address: IpAddr,
    ) -> Result<Arc<Caller>> {
        match (self.mode, credentials) {
            (Mode::None, _) | (Mode::Basic, Credentials::None) => Ok(Arc::clone(&self.anonymous)),
            (Mode::Basic, Credentials::Basic { user, password }) => {
                self.verified(user, password, address).await
            }
            (Mode::Basic, Credentials::Bearer(_)) => {
                Err(AuthError::refused("bearer token in basic mode"))
            }
            (Mode::Token, Credentials::None) => Ok(Arc::clone(&self.no_token)),
            (Mode::Token, Credentials::Basic { .. }) => {
                Err(AuthError::refused("basic credentials in token mode"))
            }
            (Mode::Token, Credentials::Bearer(token)) => self.verify_bearer(token),
        }
    }

    /// A bearer token's caller: verified once, then cached until it
    /// expires.
    fn verify_bearer(&self, token: &str) -> Result<Arc<Caller>> {
        let tokens = self
            .tokens
            .as_ref()
            .ok_or_else(|| AuthError::refused("token verification is not configured"))?;
        let key = cache::key(&[token.as_bytes()]);
        let now = Instant::now();
        if let Some(caller) = self.bearers.get(&key, now) {
            return Ok(caller);
        }
        let wall = SystemTime::now();
        let claims = tokens.verify(token, wall)?;
        let principal = match claims.sub.as_str() {
            "" => Principal::Anonymous,
            user => Principal::User(user.into()),
        };
        let scopes = claims.access.iter().filter_map(|e| e.to_scope()).collect();
        let caller = Arc::new(Caller::by_token(principal, scopes));
        let left = (UNIX_EPOCH + Duration::from_secs(claims.exp))
            .duration_since(wall)
            .unwrap_or_default();
        self.bearers
            .insert(key, Arc::clone(&caller), now + left, now);
        Ok(caller)
    }

    /// Issues a token at the token endpoint: logs the caller in, grants
    /// the intersection of what was asked and what the policy gives them
    /// (an anonymous caller: what anonymous may do), and signs it.
    pub async fn issue(&self, request: TokenRequest<'_>) -> Result<IssuedToken> {
        let tokens = self
            .tokens
            .as_ref()
            .filter(|t| t.issues())
            .ok_or_else(|| AuthError::Config("this registry does not issue tokens".into()))?;
        if request.scopes.len() > MAX_SCOPES {
            return Err(AuthError::refused(format!(
                "{} scopes asked for; at most {MAX_SCOPES}",
                request.scopes.len()
            )));
        }
        if let Some(service) = request.service
            && service != tokens.options().service
        {
            return Err(AuthError::refused(format!("unknown service {service:?}")));
        }
        let (principal, refreshable) = match request.login {
            Login::Anonymous => (Principal::Anonymous, false),
            Login::Password { user, password } => {
                let principal = self.login(user, password, request.address).await?;
                let from_accounts = self.account_exists(principal.user().unwrap_or(""));
                (principal, from_accounts)
            }
            Login::Refresh(token) => {
                let user = tokens.verify_refresh(token, SystemTime::now())?;
                if !self.account_exists(&user) {
                    return Err(AuthError::refused(format!("{user:?} no longer exists")));
                }
                (Principal::User(user.into()), true)
            }
        };
        let scopes = request
            .scopes
            .into_iter()
            .filter_map(|scope| self.grant(&principal, scope))
            .collect();
        let user = principal.user().unwrap_or("");
        tokens.issue(
            user,
            scopes,
            request.offline && refreshable,
            SystemTime::now(),
        )
    }

    /// The part of `scope` the policy gives `principal`, if any.
    fn grant(&self, principal: &Principal, scope: Scope) -> Option<Scope> {
        let actions = match &scope.resource {
            Resource::Repository(name) => self
                .policy
                .granted(principal, name)
                .intersection(scope.actions),
            Resource::Catalog if self.policy.grants_anything(principal) => scope.actions,
            Resource::Catalog => Actions::NONE,
        };
        (!actions.is_empty()).then_some(Scope { actions, ..scope })
    }

    fn account_exists(&self, user: &str) -> bool {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|a| a.contains(user))
    }

    /// Checks a user's password (throttled; cached for a short while once
    /// verified) and returns who they are.
    pub async fn login(&self, user: &str, password: &str, address: IpAddr) -> Result<Principal> {
        Ok(self
            .verified(user, password, address)
            .await?
            .principal
            .clone())
    }

    /// [`Authenticator::login`], as a caller with the policy's rights.
    async fn verified(&self, user: &str, password: &str, address: IpAddr) -> Result<Arc<Caller>> {
        let now = Instant::now();
        let key = cache::key(&[user.as_bytes(), password.as_bytes()]);
        if let Some(caller) = self.passwords.get(&key, now) {
            return Ok(caller);
        }
        match self.throttle.check(user, address, now) {
            Verdict::Refuse(retry) => return Err(AuthError::Throttled(retry)),
            Verdict::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Proceed(_) => {}
        }
        if let Some(issuer) = peek_issuer(password)
            && let Some(oidc) = self.oidc.iter().find(|o| o.issuer() == issuer)
        {
            // Workload identity: the ID token names the user. Not cached:
            // it is checked against its own expiry every time.
            return match oidc.verify(password, SystemTime::now()).await {
                Ok(user) => {
                    self.throttle.succeeded(user.as_str(), address);
                    Ok(Arc::new(Caller::by_policy(Principal::User(user.into()))))
                }
                Err(e @ AuthError::Fetch(_)) => Err(e),
                Err(e) => {
                    self.throttle.failed(user, address, Instant::now());
                    Err(e)
                }
            };
        }
        let accounts = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ok = match accounts {
            Some(accounts) => {
                let _slot = self
                    .checks
                    .acquire()
                    .await
                    .map_err(|_| AuthError::refused("shutting down"))?;
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
        let caller = Arc::new(Caller::by_policy(Principal::User(user.into())));
        let now = Instant::now();
        self.passwords
            .insert(key, Arc::clone(&caller), now + self.credential_ttl, now);
        Ok(caller)
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
