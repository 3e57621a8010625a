//! The `oci-registry` program: command line, logging and serving.
//!
//! Kept as a library so the pieces are documented and unit-tested:
//! [`config`] (file < environment < flags), [`logging`], and
//! [`run_serve`], which starts what `oci-registry serve` runs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oci_http::Limits;
use oci_http::auth::Auth;
use oci_http::reload::Reload;
use oci_http::server::ServeOptions;
use oci_http::tls::{Tls, TlsFile, TlsFiles};
use oci_storage::Storage;
use tokio::net::TcpListener;

pub mod auth;
pub mod config;
pub mod logging;

pub use config::{Config, LogConfig, LogFormat};
pub use logging::{LogGuard, init_logging};

/// Command line of `oci-registry`.
#[derive(Debug, Parser)]
#[command(name = "oci-registry", version, about = "An OCI distribution registry")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the registry API.
    Serve(Box<ServeArgs>),
    /// Check or print configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Report storage usage per repository: the bytes each references,
    /// the bytes only it references, and the unique bytes stored. Reads
    /// only; safe while servers run.
    Du(DuArgs),
    /// Check the store's integrity: manifests missing blobs, dangling
    /// links and tags, blobs that no longer hash to their digest. Exit 1
    /// when a problem remains.
    Fsck(FsckArgs),
    /// Remove blobs no manifest references (older than the grace period),
    /// links to them, and expired upload sessions. Safe while servers run;
    /// prints the blobs and bytes reclaimed.
    Gc(GcArgs),
}

/// Which storage an offline command (`du`, `fsck`) reads: the
/// configuration file's, or `--storage`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// The configuration file whose storage to read (env
    /// `OCI_REGISTRY_CONFIG`).
    #[arg(long, env = config::ENV_CONFIG)]
    pub config: Option<PathBuf>,
    /// The storage to read, overriding the file (`./registry-data`,
    /// `file:///abs/path`, `s3://bucket/prefix`, `az://container/prefix`,
    /// `gs://bucket/prefix`).
    #[arg(long)]
    pub storage: Option<String>,
}

impl StoreArgs {
    /// Where the configuration comes from: the file, the environment, and
    /// `--storage`.
    pub fn sources(&self) -> config::Sources {
        let mut flags = config::Overrides::default();
        flags.set("storage.url", self.storage.clone());
        config::Sources {
            file: self.config.clone(),
            env: true,
            flags,
        }
    }
}

/// Options of `oci-registry du`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DuArgs {
    /// The storage.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only the repositories matching this glob (`team/**`).
    #[arg(long)]
    pub repository: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `oci-registry fsck`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FsckArgs {
    /// The storage.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Fraction of blobs to re-hash (0 to 1; the same ones on every run).
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// Remove what is provably dangling: links and tags that point at
    /// nothing.
    #[arg(long)]
    pub repair: bool,
}

/// Options of `oci-registry gc`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GcArgs {
    /// The storage.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Keep unreferenced blobs younger than this (`30m`, `1h`; default:
    /// `[gc] grace`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// Only print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `gc`: what was (or would be) removed, as text.
pub async fn run_gc(
    args: &GcArgs,
    config: &Config,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use std::fmt::Write as _;
    let storage = Storage::open_with_options(&config.storage.url, config.storage_options()).await?;
    let mut options = oci_storage::GcOptions::with_grace(args.grace.unwrap_or(config.gc.grace));
    options.dry_run = args.dry_run;
    // Long enough to take over the lease of a collector that died (S3).
    options.lock_wait = config.storage.lease_ttl * 2;
    let report = storage
        .collect_garbage(&options)
        .await
        .map_err(|e| match e {
            oci_storage::StorageError::Busy(_) => "another garbage collection is running".into(),
            e => Box::<dyn std::error::Error + Send + Sync>::from(e),
        })?;
    let human = |b: u64| bytesize::ByteSize::b(b).display().iec().to_string();
    let mut out = String::new();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let _ = writeln!(
        out,
        "{verb} {} blobs, {} ({} bytes), and {} links; kept {} blobs in use and {} younger than {}; \
         walked {} manifests in {} repositories; {} upload sessions expired; {:.1}s",
        report.swept.len(),
        human(report.swept_bytes()),
        report.swept_bytes(),
        report.links_removed,
        report.marked_blobs,
        report.young,
        humantime::format_duration(options.grace),
        report.manifests,
        report.repositories,
        report.uploads_expired,
        report.duration.as_secs_f64(),
    );
    if !config.retention.is_empty() {
        let _ = writeln!(
            out,
            "retention: {verb} {} tags and {} manifests",
            report.tags_removed.len(),
            report.manifests_removed.len()
        );
    }
    for (repository, tag) in &report.tags_removed {
        let _ = writeln!(out, "{verb} tag {repository}:{tag}");
    }
    for (repository, digest) in &report.manifests_removed {
        let _ = writeln!(out, "{verb} manifest {repository}@{digest}");
    }
    if args.dry_run {
        for blob in &report.swept {
            let _ = writeln!(out, "would remove {} ({} bytes)", blob.digest, blob.size);
        }
    }
    Ok(out)
}

/// Runs `fsck`: one line per finding and a summary; `Ok(false)` when a
/// problem remains.
pub async fn run_fsck(
    args: &FsckArgs,
    config: &Config,
) -> Result<(String, bool), Box<dyn std::error::Error + Send + Sync>> {
    use std::fmt::Write as _;
    if !(0.0..=1.0).contains(&args.sample) {
        return Err(format!("--sample {} is not between 0 and 1", args.sample).into());
    }
    let storage = Storage::open_with_options(&config.storage.url, config.storage_options()).await?;
    let options = oci_storage::FsckOptions {
        sample: args.sample,
        repair: args.repair,
    };
    let report = storage.fsck(&options).await?;
    let mut out = String::new();
    for finding in &report.findings {
        // Dangling findings are what --repair removes (each checked again
        // first); the summary counts those removed.
        let mark = if finding.is_dangling() {
            " (dangling)"
        } else {
            ""
        };
        let _ = writeln!(out, "{finding}{mark}");
    }
    let _ = writeln!(
        out,
        "{} blobs stored, {} re-hashed, {} referenced by nothing; {} problems{}",
        report.blobs,
        report.hashed,
        report.orphans,
        report.findings.len(),
        if args.repair {
            format!(", {} repaired", report.repaired)
        } else {
            String::new()
        }
    );
    let clean = report.findings.len() == report.repaired;
    Ok((out, clean))
}

/// Runs `du`: the report as text (or JSON).
pub async fn run_du(
    args: &DuArgs,
    config: &Config,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let pattern = args
        .repository
        .as_deref()
        .map(str::parse::<oci_auth::RepositoryPattern>)
        .transpose()?;
    let storage = Storage::open_with_options(&config.storage.url, config.storage_options()).await?;
    // Computed for every repository and recorded for the web UI; the
    // report shows the rows asked for.
    let mut usage = storage.usage(None).await?;
    storage.record_usage(&usage).await?;
    if let Some(pattern) = &pattern {
        usage.repositories.retain(|r| pattern.matches(&r.name));
    }
    Ok(if args.json {
        usage_json(&usage)
    } else {
        usage_table(&usage)
    })
}

/// The `du` table: one row per repository, then the store's totals.
fn usage_table(usage: &oci_storage::Usage) -> String {
    use std::fmt::Write as _;
    let human = |b: u64| bytesize::ByteSize::b(b).display().iec().to_string();
    let width = usage
        .repositories
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let mut out = format!(
        "{:<width$}  {:>9}  {:>12}  {:>12}\n",
        "REPOSITORY", "MANIFESTS", "REFERENCED", "EXCLUSIVE"
    );
    for r in &usage.repositories {
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>12}  {:>12}",
            r.name.as_str(),
            r.manifests,
            human(r.referenced_bytes),
            human(r.exclusive_bytes)
        );
    }
    let _ = writeln!(
        out,
        "stored: {} blobs, {} ({} bytes); referenced by no repository: {} ({} bytes)",
        usage.stored_blobs,
        human(usage.stored_bytes),
        usage.stored_bytes,
        human(usage.unreferenced_bytes),
        usage.unreferenced_bytes
    );
    out
}

/// The `du --json` document (exact bytes).
fn usage_json(usage: &oci_storage::Usage) -> String {
    let repositories: Vec<serde_json::Value> = usage
        .repositories
        .iter()
        .map(|r| {
            serde_json::json!({
                "repository": r.name.as_str(),
                "manifests": r.manifests,
                "referenced_bytes": r.referenced_bytes,
                "exclusive_bytes": r.exclusive_bytes,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "repositories": repositories,
        "stored_blobs": usage.stored_blobs,
        "stored_bytes": usage.stored_bytes,
        "unreferenced_bytes": usage.unreferenced_bytes,
    });
    format!("{doc:#}\n")
}

/// `oci-registry config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check FILE (with the `OCI_REGISTRY_*` variables applied): print the
    /// effective configuration, secrets redacted, or one line naming the
    /// key at fault and exit 1.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print a configuration with every key, its default and what it does.
    Example,
}

/// Options of `oci-registry serve`. Each overrides the config file and the
/// environment; without either, the key's default applies (see
/// `oci-registry config example`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = config::ENV_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [server.listen; env OCI_REGISTRY_LISTEN;
    /// default 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Storage: `file:///abs/path`, a plain path, `memory://`,
    /// `s3://bucket/prefix`, `az://container/prefix` or `gs://bucket/prefix`
    /// [storage.url; env OCI_REGISTRY_STORAGE; default ./registry-data].
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` filter such as `oci_http=debug,info` [log.level; env
    /// OCI_REGISTRY_LOG; default info].
    #[arg(long = "log-level", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format [log.format; default text].
    #[arg(long = "log-format", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Filesystem storage: fsync files and directories before acknowledging
    /// a write (survives power loss) [storage.fsync; default true].
    #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub fsync: Option<bool>,
    /// Address of the metrics and probes listener [metrics.listen; default
    /// off].
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Limits on clients.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The `[limits]` flags of `oci-registry serve` (env
/// `OCI_REGISTRY_LIMITS_<KEY>`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Time a client has to send a whole request head [default 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: Option<Duration>,
    /// An idle keep-alive connection is closed after this long [default
    /// 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive_timeout: Option<Duration>,
    /// A request body that sends nothing for this long is aborted [default
    /// 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub body_timeout: Option<Duration>,
    /// Open connections at most; more get 503 [default 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Requests in flight at most; more get 429 [default 1024].
    #[arg(long, value_name = "N")]
    pub max_requests: Option<usize>,
    /// Manifest bytes held in memory at once by all requests [default
    /// 64MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub manifest_budget: Option<bytesize::ByteSize>,
    /// Upload sessions untouched for this long expire [default 24h].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub upload_ttl: Option<Duration>,
    /// Upload sessions open at most; starting another gets 429 [default
    /// 10000].
    #[arg(long, value_name = "N")]
    pub max_uploads: Option<usize>,
    /// How long a request waits for an upload session in use by another
    /// [default 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub lock_wait: Option<Duration>,
}

impl ServeArgs {
    /// Where the configuration comes from: the file, the environment, and
    /// these flags over both.
    pub fn sources(&self) -> config::Sources {
        let mut flags = config::Overrides::default();
        let human = |d: Option<Duration>| d.map(|d| humantime::format_duration(d).to_string());
        flags.set("server.listen", self.listen.map(|a| a.to_string()));
        flags.set("storage.url", self.storage.clone());
        flags.set("storage.fsync", self.fsync);
        flags.set("log.level", self.log_level.clone());
        flags.set("log.format", self.log_format);
        flags.set("metrics.listen", self.metrics_listen.map(|a| a.to_string()));
        let l = &self.limits;
        flags.set("limits.header_timeout", human(l.header_timeout));
        flags.set("limits.keepalive_timeout", human(l.keepalive_timeout));
        flags.set("limits.body_timeout", human(l.body_timeout));
        flags.set("limits.max_connections", l.max_connections);
        flags.set("limits.max_requests", l.max_requests);
        flags.set(
            "limits.manifest_budget",
            l.manifest_budget.map(|b| b.as_u64()),
        );
        flags.set("limits.upload_ttl", human(l.upload_ttl));
        flags.set("limits.max_uploads", l.max_uploads);
        flags.set("limits.lock_wait", human(l.lock_wait));
        config::Sources {
            file: self.config.clone(),
            env: true,
            flags,
        }
    }
}

/// `30s`, `5m`, `24h`, `1h 30m` (humantime's format).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`, `64MB` (bytesize's format).
fn parse_bytes(text: &str) -> Result<bytesize::ByteSize, String> {
    text.trim().parse()
}

/// Loads what the configuration names beyond its own text (the TLS
/// files), as `serve` would: `config check` runs this.
pub async fn check_files(config: &Config) -> Result<(), config::ConfigError> {
    auth::build(config, None).await?;
    load_tls(config).map_err(|e| {
        let key = match e.file() {
            Some(TlsFile::Key) => "server.tls.key",
            Some(TlsFile::ClientCa) => "server.tls.client_ca",
            _ => "server.tls.cert",
        };
        config::ConfigError::Invalid {
            key: key.into(),
            message: e.to_string(),
        }
    })?;
    Ok(())
}

/// The TLS configuration `[server.tls]` names, loaded.
fn load_tls(config: &Config) -> Result<Option<Tls>, oci_http::tls::TlsError> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let mut tls_files = TlsFiles::new(&files.cert, &files.key);
    if let Some(ca) = &files.client_ca {
        tls_files = tls_files.with_client_ca(ca);
    }
    Tls::load(tls_files).map(Some)
}

/// How often the TLS, account and key files are checked for changes.
pub const FILE_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Limits of the operations listener: few, short requests.
fn ops_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_connections = 64;
    limits.max_requests = 64;
    limits.header_timeout = Duration::from_secs(10);
    limits.body_timeout = Duration::from_secs(10);
    limits
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives
/// while the server starts is not lost (nor kills the process).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {},
                () = int => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

/// Runs `serve` as the binary does: install the metrics recorder (when
/// `[metrics] listen` is set), open storage, load TLS, bind, print the
/// startup line, serve the API and the operations listener until SIGTERM
/// or SIGINT. `SIGHUP` reloads the TLS certificate and key.
pub async fn run_serve(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Before anything records: metric handles are resolved on first use.
    let metrics = match config.metrics.listen {
        Some(_) => Some(oci_http::ops::install_recorder()?),
        None => None,
    };
    oci_storage::telemetry::per_repository(config.metrics.per_repository);
    let storage = Storage::open_with_options(&config.storage.url, config.storage_options()).await?;
    let tls = load_tls(&config)?;
    let auth = auth::build(&config, Some(&storage)).await?;
    let listener = TcpListener::bind(config.server.listen).await?;
    let addr = listener.local_addr()?;
    // Everything that reads storage or can fail is built before the
    // startup line, which tells operators and tests the registry serves.
    let proxy = config::pull_through(&config.proxy, &storage)?;
    let ui = match config.ui.enabled {
        true => Some(ui(&config, &storage, auth.as_ref()).await?),
        false => None,
    };
    let notifier = notifier(&config, &storage, addr)?;
    let ops = match config.metrics.listen {
        Some(at) => Some(TcpListener::bind(at).await?),
        None => None,
    };
    let ops_addr = ops.as_ref().map(TcpListener::local_addr).transpose()?;
    let shutdown = shutdown_signal();
    let reloadable = reloadable(tls.as_ref(), auth.as_ref());
    #[cfg(unix)]
    let _hangups = oci_http::reload::on_sighup(reloadable.clone())?;
    let _watches: Vec<_> = reloadable
        .into_iter()
        .map(|item| oci_http::reload::watch(item, FILE_WATCH_INTERVAL))
        .collect();

    let scheme = if tls.is_some() { "https" } else { "http" };
    let ops_note = ops_addr.map_or_else(String::new, |a| {
        format!("; metrics and probes on http://{a}")
    });
    println!(
        "oci-registry listening on {scheme}://{addr} with storage {}{ops_note}",
        storage.description()
    );

    // One shutdown for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let ops_task = ops.map(|listener| {
        let router = oci_http::ops::ops_router(storage.clone(), metrics, &config.ops_options());
        let limits = ops_limits();
        let stopped = stopped();
        tokio::spawn(
            async move { oci_http::server::serve(listener, router, &limits, stopped).await },
        )
    });
    let limits = config.http_limits();
    let _sweeper = storage.start_sweeper();
    let _collector = config.gc.schedule().map(|s| storage.start_collector(s));
    let delivery = notifier.as_ref().map(oci_notify::Notifier::start_delivery);
    let app = oci_http::app_with_options(
        storage,
        oci_http::AppOptions {
            limits: limits.clone(),
            auth: auth.clone(),
            proxy,
            ui,
            notifier,
        },
    );
    let mut options = ServeOptions::new(limits);
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    oci_http::server::serve_with(listener, app, &options, stopped()).await?;
    if let Some(delivery) = delivery {
        delivery.stop().await;
    }
    if let Some(task) = ops_task {
        task.await??;
    }
    Ok(())
}

/// The web UI `[ui]` describes, with the accounts and policy of `auth`.
pub async fn ui(
    config: &Config,
    storage: &Storage,
    auth: Option<&Auth>,
) -> Result<oci_ui::Ui, oci_ui::UiError> {
    oci_ui::Ui::new(
        storage.clone(),
        oci_ui::UiOptions {
            path: config.ui.path.clone(),
            authenticator: auth.map(|a| Arc::clone(&a.options().authenticator)),
            secure_cookies: config.server.tls.is_some(),
            session_ttl: config.ui.session_ttl,
            page_size: config.ui.page_size,
        },
    )
    .await
}

/// The notifier of `[[notifications.endpoints]]`, if any: events name
/// this host (`HOSTNAME`, else `/etc/hostname`, else the listening
/// address) and the port it listens on.
pub fn notifier(
    config: &Config,
    storage: &Storage,
    addr: std::net::SocketAddr,
) -> Result<Option<oci_notify::Notifier>, Box<dyn std::error::Error + Send + Sync>> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| addr.ip().to_string());
    let source = format!("{host}:{}", addr.port());
    let https = config.server.tls.is_some();
    match config.notifications.notifier_options(https, &source)? {
        Some(options) => Ok(Some(oci_notify::Notifier::new(storage.clone(), options)?)),
        None => Ok(None),
    }
}

/// What `SIGHUP` and file changes reload: the TLS certificate, the
/// accounts and keys.
fn reloadable(tls: Option<&Tls>, auth: Option<&Auth>) -> Vec<Arc<dyn Reload>> {
    let mut items: Vec<Arc<dyn Reload>> = Vec::new();
    if let Some(tls) = tls {
        items.push(Arc::new(tls.clone()));
    }
    if let Some(auth) = auth {
        items.push(Arc::clone(&auth.options().authenticator) as Arc<dyn Reload>);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from([&["oci-registry", "serve"], args].concat()).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let mut sources = args.sources();
        sources.env = false;
        config::load(&sources).unwrap()
    }

    #[test]
    fn no_flags_is_the_defaults() {
        assert_eq!(flags(&[]), Config::default());
    }

    #[test]
    fn limits_take_units() {
        let c = flags(&[
            "--header-timeout",
            "5s",
            "--manifest-budget",
            "8MiB",
            "--upload-ttl",
            "1h 30m",
            "--fsync",
            "false",
            "--log-format",
            "json",
        ]);
        assert_eq!(c.http_limits().header_timeout, Duration::from_secs(5));
        assert_eq!(c.http_limits().manifest_budget, 8 << 20);
        assert_eq!(c.storage_options().upload_ttl, Duration::from_secs(5400));
        assert!(!c.storage_options().fsync);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(Cli::try_parse_from(["oci-registry", "serve", "--body-timeout", "soon"]).is_err());
    }
}
