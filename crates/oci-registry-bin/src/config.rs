//! The registry's configuration: one typed [`Config`], read from a TOML
//! file, then environment variables, then command-line flags (each layer
//! overrides the one before; layering by `figment`).
//!
//! - The file is `--config FILE` or `OCI_REGISTRY_CONFIG`; without one,
//!   every key has its documented default (`oci-registry config example`
//!   prints them all).
//! - Environment variables are `OCI_REGISTRY_<SECTION>_<KEY>` in upper
//!   case: `OCI_REGISTRY_LOG_FORMAT=json`, `OCI_REGISTRY_STORAGE_URL`,
//!   `OCI_REGISTRY_SERVER_TLS_CERT`, `OCI_REGISTRY_STORAGE_OPTIONS_AWS_REGION`.
//!   The first variables, `OCI_REGISTRY_LISTEN`, `OCI_REGISTRY_STORAGE` and
//!   `OCI_REGISTRY_LOG`, still set `server.listen`, `storage.url` and
//!   `log.level` (the sectioned names win when both are set).
//! - Unknown keys are errors, in the file and in `OCI_REGISTRY_*`
//!   variables alike: a misspelt key must not silently leave a default (an
//!   unsupported `[auth]` section would leave the registry open).
//!
//! Sections still to come (`[ui]`) are fields added to [`Config`] and a
//! line in [`ENV_SECTIONS`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use oci_http::Limits;
use oci_http::ops::OpsOptions;
use oci_storage::StorageOptions;
use serde::{Deserialize, Serialize};

mod auth;
mod notifications;
mod proxy;

pub use auth::{AuthConfig, AuthMode, OidcConfig, TokenConfig};
pub use notifications::{EndpointConfig, NotificationsConfig};
pub use oci_auth::AccessConfig;
pub use proxy::{ProxyConfig, mirrors, pull_through};

/// The whole configuration. `Default` is the documented default of every
/// key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: where the API listens, and TLS.
    pub server: ServerConfig,
    /// `[storage]`: where content lives.
    pub storage: StorageConfig,
    /// `[log]`: log filter and format.
    pub log: LogConfig,
    /// `[metrics]`: the Prometheus and probe listener.
    pub metrics: MetricsConfig,
    /// `[limits]`: what clients can make the registry hold.
    pub limits: LimitsConfig,
    /// `[cache]`: hot manifests, small blobs and tags in memory.
    pub cache: CacheConfig,
    /// `[auth]`: how callers prove who they are.
    pub auth: AuthConfig,
    /// `[access]`: who may do what (with `[auth]` on).
    pub access: AccessConfig,
    /// `[[immutable]]`: tags that may never be moved or deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub immutable: Vec<oci_storage::ImmutableRule>,
    /// `[gc]`: online garbage collection.
    pub gc: GcConfig,
    /// `[[retention]]`: which tags and untagged manifests collections drop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<oci_storage::RetentionRule>,
    /// `[[proxy]]`: other registries served and cached under a prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyConfig>,
    /// `[notifications]`: event webhooks.
    pub notifications: NotificationsConfig,
    /// `[ui]`: the web UI.
    pub ui: UiConfig,
}

/// `[cache]`: the in-memory read cache (see [`oci_storage::CacheOptions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory for cached manifests, small blobs, tags and links; `0`
    /// turns the cache off. Default `32MiB`.
    #[serde(serialize_with = "exact_size")]
    pub size: ByteSize,
    /// Blobs and manifests larger than this are not cached. Default
    /// `1MiB`.
    #[serde(serialize_with = "exact_size")]
    pub max_blob: ByteSize,
    /// Object stores: how long a validated tag or link is served without
    /// asking the store again (a change made through another replica is
    /// seen this late). Default `0s`: every read asks.
    #[serde(with = "humantime_serde")]
    pub tag_cache_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let d = oci_storage::CacheOptions::default();
        Self {
            size: ByteSize::b(d.size),
            max_blob: ByteSize::b(d.max_blob),
            tag_cache_ttl: d.tag_ttl,
        }
    }
}

/// `[ui]`: the web UI, served on the API's listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve it. Default `true`.
    pub enabled: bool,
    /// Where: `/` redirects there. Default `/ui/`.
    pub path: String,
    /// How long a login lasts. Default `12h`.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Repositories and tags per page. Default 50.
    pub page_size: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        let d = oci_ui::UiOptions::default();
        Self {
            enabled: true,
            path: d.path,
            session_ttl: d.session_ttl,
            page_size: d.page_size,
        }
    }
}

/// `[gc]`: the online garbage collector (see `oci-registry gc` for running
/// one by hand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// A collection runs this long after the last one finished, on
    /// whichever replica takes the collector lock; `0s` turns the online
    /// collector off. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Blobs nothing references are kept this long after they were
    /// written (a push uploads its blobs before its manifest). Default
    /// `1h`.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 60 * 60),
            grace: oci_storage::DEFAULT_GRACE,
        }
    }
}

impl GcConfig {
    /// The online schedule, or `None` when it is off.
    pub fn schedule(&self) -> Option<oci_storage::GcSchedule> {
        (!self.interval.is_zero()).then(|| oci_storage::GcSchedule {
            interval: self.interval,
            options: oci_storage::GcOptions::with_grace(self.grace),
        })
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the API. Default `127.0.0.1:5000`.
    pub listen: SocketAddr,
    /// `[server.tls]`: serve HTTPS instead of plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: certificate and key files (PEM), reloaded when they
/// change or on `SIGHUP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Certificates of the CAs whose client certificates are accepted:
    /// when set, every client must present one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `file:///abs/path`, a plain path, `memory://`,
    /// `s3://bucket/prefix`, `az://container/prefix` or
    /// `gs://bucket/prefix`. Default `./registry-data`.
    pub url: String,
    /// Filesystem: fsync every write before acknowledging it. Default
    /// `true`.
    pub fsync: bool,
    /// S3: how long an upload session's lease outlives a holder that
    /// stopped renewing it. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Redirects for pulls: blob `GET`s answer `307` to a presigned URL
    /// of the store, so bytes flow from the store, not through the
    /// registry. `s3://`, `gs://` and `az://` only. Default `false`.
    pub redirect: bool,
    /// How long a redirect's presigned URL is valid (from 1s to 7d).
    /// Default `5m`.
    #[serde(with = "humantime_serde")]
    pub redirect_expiry: Duration,
    /// S3, Azure, GCS: parts (8 MiB each) of one upload request sent to
    /// the store at once. Default 4.
    pub upload_concurrency: NonZeroUsize,
    /// S3, Azure, GCS: bytes of a blob being pulled read from the store
    /// ahead of the client (memory per pull); `0` turns it off. Default
    /// `4MiB`.
    #[serde(serialize_with = "exact_size")]
    pub read_ahead: ByteSize,
    /// `[storage.options]`: object_store keys for the backend
    /// (`aws_region`, `aws_endpoint`, `aws_access_key_id`, ...), over the
    /// `AWS_*` variables; S3 only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, OptionValue>,
}

impl StorageConfig {
    /// Checks the redirect keys: only stores that presign URLs redirect,
    /// and the expiry is one they sign for.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.redirect && !oci_storage::redirect::presigns(&self.url) {
            return Err(ConfigError::Invalid {
                key: "storage.redirect".into(),
                message: format!(
                    "{} cannot presign URLs: redirects need s3://, gs:// or az:// storage",
                    self.url
                ),
            });
        }
        let expiry = self.redirect_expiry;
        if expiry < Duration::from_secs(1) || expiry > oci_storage::redirect::MAX_REDIRECT_EXPIRY {
            return Err(ConfigError::Invalid {
                key: "storage.redirect_expiry".into(),
                message: format!(
                    "{} is not between 1s and 7d",
                    humantime::format_duration(expiry)
                ),
            });
        }
        Ok(())
    }
}

/// A `[storage.options]` value: object_store takes strings, TOML and
/// environment variables may give numbers or booleans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// A string.
    Text(String),
    /// `true` or `false`.
    Flag(bool),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Flag(b) => write!(f, "{b}"),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter
    /// such as `oci_http=debug,info`. Default `info`.
    pub level: String,
    /// `text` or `json` (one object per line). Default `text`.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the listener serving `/metrics`, `/healthz` and
    /// `/readyz`. Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `/readyz` fails when the store does not answer a small read within
    /// this. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Also export storage usage per repository (one series per
    /// repository and figure, set by each garbage collection). Default
    /// `false`: only the store's totals.
    pub per_repository: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            probe_timeout: OpsOptions::default().probe_timeout,
            per_repository: false,
        }
    }
}

/// `[limits]`: see [`Limits`] and [`StorageOptions`] for what each bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time a client has to send a whole request head. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this long. Default
    /// `60s`.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A request body that sends nothing for this long is aborted.
    /// Default `60s`.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open connections at most; more get `503`. Default 4096.
    pub max_connections: usize,
    /// Requests in flight at most; more get `429`. Default 1024.
    pub max_requests: usize,
    /// Manifest bytes held in memory by all requests together. Default
    /// `64MiB`.
    #[serde(serialize_with = "exact_size")]
    pub manifest_budget: ByteSize,
    /// Upload sessions untouched this long expire. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
    /// Upload sessions open at most; more get `429`. Default 10000.
    pub max_uploads: usize,
    /// How long a request waits for an upload session another request is
    /// using. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            tls: None,
        }
    }
}

/// `storage.redirect_expiry` by default: long enough for a client to
/// follow the redirect (a download that started is not cut at expiry),
/// short enough that a leaked URL is soon useless.
pub const DEFAULT_REDIRECT_EXPIRY: Duration = Duration::from_secs(5 * 60);

impl Default for StorageConfig {
    fn default() -> Self {
        let defaults = StorageOptions::default();
        Self {
            url: "./registry-data".into(),
            fsync: defaults.fsync,
            lease_ttl: defaults.lease_ttl,
            redirect: false,
            redirect_expiry: DEFAULT_REDIRECT_EXPIRY,
            upload_concurrency: NonZeroUsize::new(defaults.upload_concurrency)
                .unwrap_or(NonZeroUsize::MIN),
            read_ahead: ByteSize::b(defaults.read_ahead as u64),
            options: BTreeMap::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let http = Limits::default();
        let storage = StorageOptions::default();
        Self {
            header_timeout: http.header_timeout,
            keepalive_timeout: http.keepalive_timeout,
            body_timeout: http.body_timeout,
            max_connections: http.max_connections,
            max_requests: http.max_requests,
            manifest_budget: ByteSize::b(http.manifest_budget as u64),
            upload_ttl: storage.upload_ttl,
            max_uploads: storage.max_uploads,
            lock_wait: storage.lock_wait,
        }
    }
}

impl Config {
    /// The HTTP limits this configuration sets.
    pub fn http_limits(&self) -> Limits {
        let l = &self.limits;
        let mut limits = Limits::default();
        limits.header_timeout = l.header_timeout;
        limits.keepalive_timeout = l.keepalive_timeout;
        limits.body_timeout = l.body_timeout;
        limits.max_connections = l.max_connections;
        limits.max_requests = l.max_requests;
        limits.manifest_budget = usize::try_from(l.manifest_budget.as_u64()).unwrap_or(usize::MAX);
        limits
    }

    /// The operations listener's options this configuration sets.
    pub fn ops_options(&self) -> OpsOptions {
        let mut options = OpsOptions::default();
        options.probe_timeout = self.metrics.probe_timeout;
        options
    }

    /// The storage options this configuration sets.
    pub fn storage_options(&self) -> StorageOptions {
        let s = &self.storage;
        let mut options = StorageOptions::default();
        options.backend = s
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        options.fsync = s.fsync;
        options.lease_ttl = s.lease_ttl;
        options.upload_concurrency = s.upload_concurrency.get();
        options.read_ahead = usize::try_from(s.read_ahead.as_u64()).unwrap_or(usize::MAX);
        options.upload_ttl = self.limits.upload_ttl;
        options.max_uploads = self.limits.max_uploads;
        options.lock_wait = self.limits.lock_wait;
        options.immutable = self.immutable.clone();
        options.retention = self.retention.clone();
        options.cache.size = self.cache.size.as_u64();
        options.cache.max_blob = self.cache.max_blob.as_u64();
        options.cache.tag_ttl = self.cache.tag_cache_ttl;
        options.redirect = s.redirect.then_some(s.redirect_expiry);
        options
    }

    /// A copy fit to print: values of secret-looking storage options
    /// (secret, token, password, credential) replaced.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        proxy::redact(&mut copy.proxy);
        copy.notifications.redact();
        for (key, value) in &mut copy.storage.options {
            if is_secret(key) {
                *value = OptionValue::Text(REDACTED.into());
            }
        }
        copy
    }

    /// This configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serialises to TOML")
    }

    /// Checks what parsing cannot: the log filter parses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level".into(),
                message: e.to_string(),
            });
        }
        self.storage.validate()?;
        mirrors(&self.proxy)?;
        self.notifications.notifier_options(false, "")?;
        oci_ui::check_path(&self.ui.path).map_err(|message| ConfigError::Invalid {
            key: "ui.path".into(),
            message,
        })?;
        if !(1..=1000).contains(&self.ui.page_size) {
            return Err(ConfigError::Invalid {
                key: "ui.page_size".into(),
                message: format!("{} is not between 1 and 1000", self.ui.page_size),
            });
        }
        if self.ui.session_ttl < Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                key: "ui.session_ttl".into(),
                message: "must be at least 1m".into(),
            });
        }
        Ok(())
    }
}

/// A size as `config check` prints it: `64MiB` when it is a whole number
/// of KiB, MiB or GiB, else the bytes (`ByteSize`'s own form rounds to one
/// decimal, and the printed value must read back as the same size).
fn exact_size<S: serde::Serializer>(size: &ByteSize, serializer: S) -> Result<S::Ok, S::Error> {
    let bytes = size.as_u64();
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return serializer.serialize_str(&format!("{}{name}", bytes / unit));
        }
    }
    serializer.serialize_u64(bytes)
}

/// What printed configurations show instead of a secret.
pub const REDACTED: &str = "<redacted>";

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

/// Sections of `OCI_REGISTRY_<SECTION>_<KEY>`, longest first where one is
/// the start of another, and the dotted path each stands for.
pub const ENV_SECTIONS: &[(&str, &str)] = &[
    ("server_tls", "server.tls"),
    ("server", "server"),
    ("storage_options", "storage.options"),
    ("storage", "storage"),
    ("log", "log"),
    ("metrics", "metrics"),
    ("limits", "limits"),
    ("cache", "cache"),
    ("auth_token", "auth.token"),
    ("auth", "auth"),
    ("access", "access"),
    ("gc", "gc"),
    ("notifications", "notifications"),
    ("ui", "ui"),
];

/// The first environment variables and the keys they set.
const LEGACY_ENV: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("storage", "storage.url"),
    ("log", "log.level"),
];

/// The prefix of every variable.
pub const ENV_PREFIX: &str = "OCI_REGISTRY_";

/// The variable naming the config file (not a key).
pub const ENV_CONFIG: &str = "OCI_REGISTRY_CONFIG";

/// Kubernetes gives every pod, for each Service in its namespace, variables
/// named after the Service (`<NAME>_SERVICE_HOST`, `<NAME>_PORT`,
/// `<NAME>_PORT_5000_TCP_ADDR`, ...): a Service named `oci-registry` makes
/// `OCI_REGISTRY_SERVICE_HOST`, `OCI_REGISTRY_PORT`, ... These are not
/// configuration and are skipped (given without the prefix, lower case).
fn is_service_link(name: &str) -> bool {
    name == "port" || name.starts_with("port_") || name.starts_with("service_")
}

/// The dotted key an `OCI_REGISTRY_` variable sets (given without the
/// prefix, in lower case); unknown names stay as they are and fail as
/// unknown keys.
fn env_key(name: &str) -> String {
    for (section, path) in ENV_SECTIONS {
        if let Some(rest) = name
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
            .filter(|r| !r.is_empty())
        {
            return format!("{path}.{rest}");
        }
    }
    name.to_owned()
}

/// Values given on the command line, each overriding file and
/// environment; `None` leaves the key alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides(Vec<(&'static str, figment::value::Value)>);

impl Overrides {
    /// Sets `key` (dotted) to `value` when given.
    pub fn set<T: Serialize>(&mut self, key: &'static str, value: Option<T>) {
        if let Some(value) = value {
            let value = figment::value::Value::serialize(value)
                .expect("flag values serialise to figment values");
            self.0.push((key, value));
        }
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// Read `OCI_REGISTRY_*` variables.
    pub env: bool,
    /// Command-line values.
    pub flags: Overrides,
}

/// Why a configuration was refused: one line naming the key at fault and
/// where it was set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or holds a bad key or value.
    #[error("config file {path} line {line}: {key}{message}")]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// `key `a.b`: ` when known, else empty.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable or flag holds a bad key or value.
    #[error("{origin}: {message}")]
    Layer {
        /// The variable or flag.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value parses but cannot be used.
    #[error("key `{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads the configuration from `sources`, file < environment < flags.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &sources.file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        // Parsed on its own first: TOML's errors carry the line at fault.
        check_toml(path, &text)?;
        figment = figment.merge(Toml::string(&text));
    }
    if sources.env {
        figment = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .only(&LEGACY_ENV.iter().map(|(name, _)| *name).collect::<Vec<_>>())
                    .map(|name| legacy_key(&name.as_str().to_ascii_lowercase()).into()),
            )
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .ignore(&["config", "listen", "storage", "log"])
                    .filter(|name| !is_service_link(&name.as_str().to_ascii_lowercase()))
                    .map(|name| env_key(&name.as_str().to_ascii_lowercase()).into()),
            );
    }
    for (key, value) in &sources.flags.0 {
        figment = figment.merge(Serialized::default(key, value.clone()));
    }
    let config: Config = figment.extract().map_err(|e| layer_error(&e))?;
    config.validate()?;
    Ok(config)
}

fn legacy_key(name: &str) -> String {
    LEGACY_ENV
        .iter()
        .find(|(legacy, _)| *legacy == name)
        .map_or_else(|| name.to_owned(), |(_, key)| (*key).to_owned())
}

/// Parses `text` alone, turning an error into one line with its line
/// number and key.
fn check_toml(path: &Path, text: &str) -> Result<(), ConfigError> {
    let Err(e) = toml::from_str::<Config>(text) else {
        return Ok(());
    };
    let offset = e.span().map_or(0, |s| s.start);
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    let key = key_at(text, offset).map_or_else(String::new, |k| format!("key `{k}`: "));
    Err(ConfigError::File {
        path: path.to_owned(),
        line,
        key,
        message: one_line(e.message()),
    })
}

/// `text` on one line: its lines joined by `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The dotted key whose line holds `offset`: the nearest table header
/// above it, then the name before `=` on the line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let name = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'));
    match (table, name) {
        (Some(t), Some(n)) if !n.is_empty() => Some(format!("{t}.{n}")),
        (None, Some(n)) if !n.is_empty() => Some(n.to_owned()),
        (Some(t), None) if line.trim_start().starts_with('[') => Some(t),
        _ => None,
    }
}

/// One line for a layering error: the key, and the variable or flag that
/// set it.
fn layer_error(e: &figment::Error) -> ConfigError {
    let key = e.path.join(".");
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let origin = if from_env {
        env_name_for(&key)
    } else if e.metadata.is_some() {
        format!("key `{key}` (command line)")
    } else {
        format!("key `{key}`")
    };
    ConfigError::Layer {
        origin,
        message: one_line(&e.kind.to_string()),
    }
}

/// The variable that set `key`: the sectioned name if it is set, else the
/// first name for the key, else the sectioned name.
fn env_name_for(key: &str) -> String {
    let sectioned = format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase());
    if std::env::var_os(&sectioned).is_some() {
        return sectioned;
    }
    LEGACY_ENV
        .iter()
        .find(|(_, k)| *k == key)
        .map(|(name, _)| format!("{ENV_PREFIX}{}", name.to_ascii_uppercase()))
        .filter(|name| std::env::var_os(name).is_some())
        .unwrap_or(sectioned)
}

/// `oci-registry config example`: every key with its default, commented.
pub const EXAMPLE: &str = include_str!("config/example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        check_toml(Path::new("test.toml"), text)?;
        Ok(toml::from_str(text).unwrap())
    }

    #[test]
    fn the_example_is_the_defaults() {
        assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
    }

    /// Every key of a configuration with every optional part set appears
    /// in the example, as a setting or a commented-out one.
    #[test]
    fn the_example_names_every_key() {
        let mut full = Config::default();
        full.server.tls = Some(TlsConfig {
            cert: "c".into(),
            key: "k".into(),
            client_ca: Some("ca".into()),
        });
        full.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 5001)));
        full.auth.htpasswd = Some("h".into());
        full.auth.token.signing_key = Some("k".into());
        full.auth.token.realm = Some("r".into());
        full.auth.token.jwks = Some("j".into());
        full.auth.oidc.push(OidcConfig {
            issuer: "i".into(),
            jwks: "j".into(),
            audience: "a".into(),
            user_claim: "u".into(),
        });
        full.access = toml::from_str(
            "admins = [\"a\"]\n[groups]\ndevs = [\"a\"]\n[[rules]]\nrepositories = [\"a\"]\nusers = [\"a\"]\ngroups = [\"devs\"]\nanonymous = true\nauthenticated = true\nactions = [\"pull\"]\n",
        )
        .unwrap();
        full.storage
            .options
            .insert("aws_region".into(), OptionValue::Text("x".into()));
        full.immutable = toml::from_str::<toml::Value>(
            "[[immutable]]\nrepositories = [\"release/**\"]\ntags = [\"v*\"]\n",
        )
        .unwrap()["immutable"]
            .clone()
            .try_into()
            .unwrap();
        full.notifications = toml::from_str::<Config>(
            "[[notifications.endpoints]]\nname = \"ci\"\nurl = \"http://x/\"\nheaders = { A = \"b\" }\nrepositories = [\"a\"]\n",
        )
        .unwrap()
        .notifications;
        let value: toml::Value = toml::from_str(&full.to_toml()).unwrap();
        let mut missing = Vec::new();
        walk(&value, &mut String::new(), &mut |table, key| {
            let header = format!("[{table}]");
            let in_table = EXAMPLE
                .split_once(&header)
                .or_else(|| EXAMPLE.split_once(&format!("# {header}")))
                .map(|(_, rest)| rest)
                .unwrap_or("");
            let set = format!("\n{key} =");
            let commented = format!("\n# {key} =");
            if !in_table.contains(&set) && !in_table.contains(&commented) {
                missing.push(format!("{table}.{key}"));
            }
        });
        assert!(missing.is_empty(), "not in the example: {missing:?}");
    }

    fn walk(value: &toml::Value, table: &mut String, found: &mut impl FnMut(&str, &str)) {
        let toml::Value::Table(t) = value else { return };
        for (k, v) in t {
            // An array of tables (`[[access.rules]]`): its first entry's keys.
            let v = match v {
                toml::Value::Array(items) if items.first().is_some_and(toml::Value::is_table) => {
                    &items[0]
                }
                v => v,
            };
            // A map written inline (`headers = { ... }`) is one key.
            if let toml::Value::Table(_) = v
                && k != "headers"
            {
                let len = table.len();
                if !table.is_empty() {
                    table.push('.');
                }
                table.push_str(k);
                walk(v, table, found);
                table.truncate(len);
            } else {
                found(table, k);
            }
        }
    }

    #[test]
    fn file_errors_name_the_line_and_key() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n").unwrap_err();
        let line = e.to_string();
        assert!(line.contains("line 3"), "{line}");
        assert!(line.contains("server.listn"), "{line}");
        assert!(line.contains("unknown field"), "{line}");

        let e = parse("[limits]\n\nmax_requests = \"many\"\n").unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("line 3") && line.contains("limits.max_requests"),
            "{line}"
        );

        let e = parse("[limits]\nbody_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("limits.body_timeout"), "{e}");

        let e = parse("[auth]\nmode = \"tokens\"\n").unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("line 2") && line.contains("auth.mode"),
            "{line}"
        );

        let e = parse(
            "[[access.rules]]\nrepositories = [\"a\"]\nusers = [\"x\"]\nactions = [\"pul\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("access.rules"), "{e}");

        let e = parse("[server\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }

    #[test]
    fn values_take_units() {
        let c = parse(
            "[limits]\nupload_ttl = \"1h 30m\"\nmanifest_budget = \"8MiB\"\n[storage]\nfsync = false\n",
        )
        .unwrap();
        assert_eq!(c.storage_options().upload_ttl, Duration::from_secs(5400));
        assert_eq!(c.http_limits().manifest_budget, 8 << 20);
        assert!(!c.storage_options().fsync);
    }

    #[test]
    fn redirects_are_off_by_default_and_need_a_signing_store() {
        assert_eq!(Config::default().storage_options().redirect, None);
        let c = parse("[storage]\nurl = \"s3://b/p\"\nredirect = true\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.storage_options().redirect, Some(DEFAULT_REDIRECT_EXPIRY));
        let c = parse("[storage]\nurl = \"az://c\"\nredirect = true\nredirect_expiry = \"90s\"\n")
            .unwrap();
        c.validate().unwrap();
        assert_eq!(c.storage_options().redirect, Some(Duration::from_secs(90)));
        let c = parse("[storage]\nurl = \"/srv/registry\"\nredirect = true\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("key `storage.redirect`:"), "{e}");
    }

    #[test]
    fn printed_sizes_read_back_exactly() {
        for bytes in [1_000_001u64, 64 << 20, 3 << 30, 1536, 0] {
            let mut c = Config::default();
            c.limits.manifest_budget = ByteSize::b(bytes);
            let back = parse(&c.to_toml()).unwrap();
            assert_eq!(
                back.limits.manifest_budget.as_u64(),
                bytes,
                "{}",
                c.to_toml()
            );
        }
        assert!(
            Config::default()
                .to_toml()
                .contains("manifest_budget = \"64MiB\"")
        );
    }

    #[test]
    fn kubernetes_service_links_are_not_keys() {
        for name in [
            "service_host",
            "service_port",
            "service_port_http",
            "port",
            "port_5000_tcp_addr",
        ] {
            assert!(is_service_link(name), "{name}");
        }
        for name in [
            "server_listen",
            "storage_url",
            "limits_max_requests",
            "log",
            "metrics_listen",
        ] {
            assert!(!is_service_link(name), "{name}");
        }
    }

    #[test]
    fn defaults_are_the_engines_defaults() {
        let c = Config::default();
        assert_eq!(c.http_limits(), Limits::default());
        assert_eq!(c.storage_options(), StorageOptions::default());
    }

    #[test]
    fn environment_names_map_to_keys() {
        assert_eq!(env_key("limits_header_timeout"), "limits.header_timeout");
        assert_eq!(env_key("server_tls_client_ca"), "server.tls.client_ca");
        assert_eq!(
            env_key("storage_options_aws_region"),
            "storage.options.aws_region"
        );
        assert_eq!(env_key("storage_url"), "storage.url");
        assert_eq!(env_key("log_format"), "log.format");
        assert_eq!(env_key("auth_mode"), "auth.mode");
        assert_eq!(env_key("auth_token_signing_key"), "auth.token.signing_key");
        assert_eq!(env_key("ui_path"), "ui.path");
        assert_eq!(env_key("nope_path"), "nope_path");
        assert_eq!(legacy_key("storage"), "storage.url");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::default();
        for (k, v) in [
            ("aws_secret_access_key", "S3CR3T"),
            ("aws_session_token", "T0KEN"),
            ("aws_region", "eu-west-1"),
        ] {
            c.storage
                .options
                .insert(k.into(), OptionValue::Text(v.into()));
        }
        let shown = c.redacted().to_toml();
        assert!(
            !shown.contains("S3CR3T") && !shown.contains("T0KEN"),
            "{shown}"
        );
        assert!(shown.contains("eu-west-1"), "{shown}");
    }
}
