//! `cargo xtask bench`: throughput, latency, memory and startup of the
//! release binary over loopback HTTP, optionally side by side with a peer
//! registry measured in the same run, interleaved.
//!
//! Workloads (each repeated `--rounds` times; medians reported; ours and the
//! peer alternate which goes first):
//! - push a large incompressible blob: monolithic PUT, one streamed PATCH,
//!   chunked PATCHes of 5 MiB and 16 MiB ([`blob`]);
//! - pull it whole and by 16 MiB ranges;
//! - manifest GET by tag, blob HEAD and GET of a small blob (the 2-byte
//!   `{}`) at several concurrencies, driven by oha ([`load`]);
//! - page through 10,000 tags and a catalog of 10,000 repositories
//!   ([`seed`]);
//! - peak (`VmHWM`) and idle RSS, and startup time to the first `/v2/` 200
//!   with an empty store and with 10,000 repositories;
//! - hostile clients: slowloris connections left open, peak RSS under a
//!   manifest bomb, small GETs on one keep-alive connection ([`mod@hostile`]);
//! - garbage collection of stores of `--gc-blobs` blobs, half of them
//!   unreferenced, by `oci-registry gc` next to the running server ([`gc`];
//!   ours only, not in the default set);
//! - the pull-through cache: a second instance of the release binary with
//!   ours as the upstream of its `[[proxy]]` prefix `up`; a fresh
//!   `--size-mib` blob each round pulled cold through it (MB/s, time to
//!   the first byte, server CPU) against a direct pull from ours, then
//!   warm against the same bytes in a local repository of the cache (MB/s,
//!   server CPU), and the cache's peak RSS ([`proxy`]; the peer column of
//!   its rows is the direct or local pull; not in the default set).

mod auth;
mod blob;
mod gc;
mod hostile;
mod load;
mod proxy;
mod report;
mod seed;
mod store;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use self::blob::{Blob, PushKind};
use self::report::{Better, Report, Row};
use self::seed::Image;
use self::target::{BlobFiles, Target};
use crate::server::{Error, build_release, free_port};

/// Options of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Storage backend of ours: `filesystem` (a temp dir under --dir) or `s3`
    /// (see --s3), over loopback.
    #[arg(long, default_value = "filesystem")]
    backend: Backend,
    /// With `--backend s3`, the S3 store: `inprocess` (the in-process S3
    /// test server, the default) or `moto` (moto_server from `pip install
    /// 'moto[server]'`, started by the bench; the default, and the only
    /// choice, with --peer-distribution, whose S3 driver uses it too).
    #[arg(long, value_enum)]
    s3: Option<store::S3Kind>,
    /// An object_store option for ours on S3 (`[storage.options]`), as
    /// `key=value`, e.g. `aws_unsigned_payload=true`; repeatable.
    #[arg(long, value_parser = key_value)]
    s3_option: Vec<(String, String)>,
    /// Directory for the run's data (ours, and a peer the bench starts);
    /// default: the system temp dir. A tmpfs such as /dev/shm takes the disk
    /// out of the figures.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the pushed and pulled blob, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Rounds of every measurement; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each request-rate run.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Concurrencies of the request-rate runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Worker threads of the load generator (oha): one leaves the other
    /// core of a 2-core machine to the registry.
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
    /// Tags in the tags-list workload.
    #[arg(long, default_value_t = 10_000)]
    tags: usize,
    /// Repositories in the catalog workload.
    #[arg(long, default_value_t = 10_000)]
    repos: usize,
    /// A peer registry to measure in the same run (`http://host:port`),
    /// empty or at least without the bench's repositories.
    #[arg(long, conflicts_with = "peer_distribution")]
    peer: Option<String>,
    /// Process id of the --peer registry, for its memory and CPU figures.
    #[arg(long, requires = "peer")]
    peer_pid: Option<u32>,
    /// Start CNCF distribution as the peer from this binary (Debian package
    /// `docker-registry`: /usr/bin/docker-registry), with filesystem storage
    /// under --dir, so its startup and memory are measured too.
    #[arg(long, num_args = 0..=1, default_missing_value = "/usr/bin/docker-registry")]
    peer_distribution: Option<PathBuf>,
    /// The oha binary (else `oha` on PATH, else installed under
    /// target/tools by `cargo install`).
    #[arg(long)]
    oha: Option<PathBuf>,
    /// Run ours as production does: the access log at `info` (written to
    /// its log file under --dir) and the metrics listener on (the same as
    /// --access-log --metrics).
    #[arg(long)]
    telemetry: bool,
    /// Run ours with the access log at `info`.
    #[arg(long)]
    access_log: bool,
    /// Run ours with the metrics listener on.
    #[arg(long)]
    metrics: bool,
    /// The peer is our own binary again, with the access log and metrics
    /// off: with --telemetry, the ratio is their overhead.
    #[arg(long, conflicts_with_all = ["peer", "peer_distribution"])]
    peer_self: bool,
    /// The peer is another build of ours (e.g. the previous commit's
    /// `oci-registry`), started like ours with the access log and metrics
    /// off: the ratio is what a change gained or cost.
    #[arg(long, conflicts_with_all = ["peer", "peer_distribution", "peer_self"])]
    peer_binary: Option<PathBuf>,
    /// Restart every registry the bench started before each round of the
    /// request-rate workload (then warm it up again): the same binary
    /// serves ~5 % faster or slower from one process to the next on a
    /// small VM, so comparing two processes once measures their luck.
    #[arg(long, conflicts_with = "auth")]
    restart_each_round: bool,
    /// Run ours with access control, `basic` or `token` (a bench account
    /// that is admin, a token for the bench repository), against a peer
    /// without it: with --peer-self, the ratio is the cost of checking
    /// credentials (or verifying tokens) on every request. The request
    /// workload only.
    #[arg(long, value_enum)]
    auth: Option<AuthMode>,
    /// Workloads to run: startup, blobs, requests, lists, hostile (the
    /// default), gc (`oci-registry gc`, ours only) and proxy (a
    /// pull-through cache with ours as its upstream: cold, warm and local
    /// pulls through it against direct pulls from ours).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "startup,blobs,requests,lists,hostile"
    )]
    workloads: Vec<Workload>,
    /// Store sizes (blobs) of the gc workload.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    gc_blobs: Vec<usize>,
    /// Slowloris connections of the hostile workload.
    #[arg(long, default_value_t = 3000)]
    slowloris: usize,
    /// Seconds the slowloris connections wait before they are counted:
    /// past ours' default header timeout (30 s).
    #[arg(long, default_value_t = 35)]
    slowloris_wait: u64,
    /// Concurrent hostile 4 MiB manifests of the hostile workload.
    #[arg(long, default_value_t = 32)]
    bomb: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Access control for ours (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    Basic,
    Token,
}

/// Where ours stores data.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Backend {
    Filesystem,
    S3,
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// Startup time to the first `/v2/` 200 (empty; with `--repos`
    /// repositories when `lists` runs too) and idle RSS.
    Startup,
    /// Large-blob pushes and pulls, and peak RSS.
    Blobs,
    /// Manifest GET, blob HEAD and small blob GET request rates and
    /// latencies.
    Requests,
    /// Tags list and catalog paging.
    Lists,
    /// Slowloris, manifest bomb, keep-alive small GETs.
    Hostile,
    /// `oci-registry gc` over `--gc-blobs` blobs (ours only).
    Gc,
    /// A pull-through cache (a second instance, started by the bench) with
    /// ours as its upstream: `--size-mib` blobs pulled cold through it
    /// against directly from ours, and warm through it against from a
    /// local repository of it; its peak RSS.
    Proxy,
}

/// Size of each ranged GET of the pull-by-range workload.
const RANGE: u64 = 16 << 20;

/// The samples of one figure.
struct Series {
    group: String,
    name: String,
    unit: &'static str,
    better: Better,
    ours: Vec<f64>,
    peer: Vec<f64>,
}

/// Samples gathered so far, in the order figures were first seen.
#[derive(Default)]
struct Samples {
    rows: Vec<Series>,
}

impl Samples {
    /// Adds a sample of `target` to the figure `group` / `name`, and prints
    /// it as a progress line.
    fn add(
        &mut self,
        target: &Target,
        group: &str,
        name: &str,
        unit: &'static str,
        better: Better,
        value: f64,
    ) {
        let index = match self
            .rows
            .iter()
            .position(|r| r.group == group && r.name == name)
        {
            Some(i) => i,
            None => {
                self.rows.push(Series {
                    group: group.to_owned(),
                    name: name.to_owned(),
                    unit,
                    better,
                    ours: Vec::new(),
                    peer: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let series = &mut self.rows[index];
        if target.label == "ours" {
            series.ours.push(value);
        } else {
            series.peer.push(value);
        }
        let shown = if value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        println!("  {:<5} {group} / {name}: {shown} {unit}", target.label);
    }

    /// The rows, grouped (groups in order of first appearance).
    fn into_rows(self) -> Vec<Row> {
        let mut groups: Vec<String> = Vec::new();
        for series in &self.rows {
            if !groups.contains(&series.group) {
                groups.push(series.group.clone());
            }
        }
        let mut rows = self.rows;
        rows.sort_by_key(|series| groups.iter().position(|g| *g == series.group));
        rows.into_iter()
            .map(|s| Row::new(&s.group, &s.name, s.unit, s.better, s.ours, s.peer))
            .collect()
    }
}

/// Ours and the optional peer.
struct Registries {
    ours: Target,
    peer: Option<Target>,
}

impl Registries {
    /// Both, in the order round `round` visits them: ours first in even
    /// rounds, the peer first in odd ones, so neither always runs on a
    /// machine the other just warmed (or loaded).
    fn order(&mut self, round: usize) -> Vec<&mut Target> {
        let mut v = vec![&mut self.ours];
        if let Some(peer) = self.peer.as_mut() {
            if round.is_multiple_of(2) {
                v.push(peer);
            } else {
                v.insert(0, peer);
            }
        }
        v
    }
}

/// Parses `key=value` (an `--s3-option`).
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn megabytes_per_sec(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Runs the task.
pub async fn run(args: Args) -> Result<(), Error> {
    if args.auth.is_some() && args.workloads.iter().any(|w| *w != Workload::Requests) {
        return Err("--auth measures the request workload only: add --workloads requests".into());
    }
    let binary = build_release()?;
    let oha = if args.workloads.contains(&Workload::Requests) {
        Some(load::find_or_install(args.oha.as_deref())?)
    } else {
        None
    };
    let load_generator = oha.as_deref().map_or("none".into(), target::version_of);
    let dir = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("oci-bench-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("oci-bench-").tempdir()?,
    };
    let rounds = args.rounds.max(1);

    let s3 = match args.backend {
        Backend::S3 => {
            let kind = match (args.s3, &args.peer_distribution) {
                (Some(store::S3Kind::Inprocess), Some(_)) => {
                    return Err("--peer-distribution on S3 runs on moto: --s3 moto".into());
                }
                (Some(kind), _) => kind,
                (None, Some(_)) => store::S3Kind::Moto,
                (None, None) => store::S3Kind::Inprocess,
            };
            Some(Arc::new(store::S3Store::start(kind, dir.path()).await?))
        }
        Backend::Filesystem => None,
    };
    let (storage, env, blob_files): (String, Vec<(String, String)>, BlobFiles) = match &s3 {
        Some(s3) => (
            s3.url("bench"),
            s3.env(&args.s3_option),
            s3.blob_files("bench"),
        ),
        None => {
            let root = dir.path().join("ours");
            (root.display().to_string(), Vec::new(), BlobFiles::Dir(root))
        }
    };
    let port = free_port()?;
    let ours_storage = storage.clone();
    let ours = Target::start(
        "ours",
        port,
        dir.path().join("ours.log"),
        target::ours_command(
            binary.clone(),
            storage,
            env.clone(),
            port,
            target::Telemetry {
                access_log: args.telemetry || args.access_log,
                metrics: args.telemetry || args.metrics,
                config: match args.auth {
                    Some(mode) => Some(auth::write_config(dir.path(), mode)?),
                    None => None,
                },
            },
        ),
    )
    .await?
    .with_blob_files(blob_files);
    let mut ours = ours;
    if let Some(mode) = args.auth {
        ours.authorization = Some(auth::authorization(&ours, mode).await?);
    }
    let (peer, peer_label) = match (&args.peer, &args.peer_distribution) {
        _ if args.peer_self || args.peer_binary.is_some() => {
            let port = free_port()?;
            let (storage, files) = match &s3 {
                Some(s3) => (s3.url("bench-peer"), s3.blob_files("bench-peer")),
                None => {
                    let root = dir.path().join("peer");
                    (root.display().to_string(), BlobFiles::Dir(root))
                }
            };
            let peer_binary = args.peer_binary.clone().unwrap_or_else(|| binary.clone());
            let command = target::ours_command(
                peer_binary,
                storage,
                env.clone(),
                port,
                target::Telemetry::default(),
            );
            let peer = Target::start("peer", port, dir.path().join("peer.log"), command)
                .await?
                .with_blob_files(files);
            let label = match &args.peer_binary {
                Some(path) => format!("{}, access log and metrics off", path.display()),
                None => "ours again, access log and metrics off".to_owned(),
            };
            (Some(peer), Some(label))
        }
        (Some(url), _) => (
            Some(Target::remote("peer", url.clone(), args.peer_pid)),
            Some(match args.peer_pid {
                Some(pid) => format!("{url} (pid {pid})"),
                None => url.clone(),
            }),
        ),
        (None, Some(bin)) => {
            let port = free_port()?;
            let peer_dir = dir.path().join("peer");
            let storage = s3.as_ref().map(|s3| s3.distribution_storage("/peer"));
            let command = target::distribution_command(bin.clone(), &peer_dir, port, storage)?;
            let files = match &s3 {
                Some(s3) => s3.blob_files("peer/docker/registry/v2"),
                None => BlobFiles::Dir(target::distribution_blobs(&peer_dir)),
            };
            let peer = Target::start("peer", port, dir.path().join("peer.log"), command)
                .await?
                .with_blob_files(files);
            let where_ = match &s3 {
                Some(s3) => format!("S3 storage on {}", s3.label()),
                None => format!("filesystem storage in {}", peer_dir.display()),
            };
            let label = format!("{} ({}), {where_}", target::version_of(bin), peer.base);
            (Some(peer), Some(label))
        }
        (None, None) => (None, None),
    };
    let mut registries = Registries { ours, peer };
    println!(
        "bench: ours {} ({:?} storage{}, data in {}), peer: {}, load generator: {load_generator}",
        registries.ours.base,
        args.backend,
        s3.as_ref()
            .map(|s3| format!(" on {}", s3.label()))
            .unwrap_or_default(),
        dir.path().display(),
        peer_label.as_deref().unwrap_or("none")
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut samples = Samples::default();
    let image = Image::new();
    let runs = |w: Workload| args.workloads.contains(&w);

    if runs(Workload::Startup) {
        startup(&mut registries, &mut samples, rounds, "empty store").await?;
        for t in registries.order(0) {
            if let Some(rss) = t.memory_kib("VmRSS") {
                samples.add(t, "memory", "idle RSS", "MiB", Better::Lower, mib(rss));
            }
        }
    }
    if runs(Workload::Blobs) {
        blobs(
            &client,
            &mut registries,
            &mut samples,
            rounds,
            args.size_mib.max(2) << 20,
            s3.as_deref(),
        )
        .await?;
    }
    if runs(Workload::Requests) || runs(Workload::Lists) || runs(Workload::Hostile) {
        for t in registries.order(0) {
            image.push(&client, t, "bench", "latest").await?;
        }
    }
    let mut loadgen_cores = None;
    if let Some(oha) = &oha {
        loadgen_cores =
            Some(requests(oha, &args, &image, &mut registries, &mut samples, rounds).await?);
    }
    if runs(Workload::Lists) {
        lists(
            &client,
            &args,
            &image,
            &mut registries,
            &mut samples,
            rounds,
        )
        .await?;
        if runs(Workload::Startup) {
            let label = format!("{} repositories", args.repos);
            startup(&mut registries, &mut samples, rounds, &label).await?;
        }
    }

    if runs(Workload::Hostile) {
        hostile(
            &client,
            &args,
            &image,
            &mut registries,
            &mut samples,
            rounds,
        )
        .await?;
    }

    if runs(Workload::Proxy) {
        proxy::run(
            &client,
            &binary,
            dir.path(),
            &registries.ours,
            &mut samples,
            rounds,
            args.size_mib.max(2) << 20,
        )
        .await?;
    }

    if runs(Workload::Gc) {
        let collector = gc::Collector {
            binary: &binary,
            storage: &ours_storage,
            env: &env,
        };
        gc::run(
            &client,
            &registries.ours,
            &collector,
            &args.gc_blobs,
            &mut samples,
            rounds,
        )
        .await?;
    }

    let report = Report {
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        backend: format!("{:?}", args.backend).to_lowercase(),
        data_dir: dir.path().display().to_string(),
        blob_mib: args.size_mib.max(2),
        rounds,
        peer: match (peer_label, runs(Workload::Proxy)) {
            (Some(label), true) => Some(format!("{label}; {}", proxy::PEER_NOTE)),
            (None, true) => Some(format!("none; {}", proxy::PEER_NOTE)),
            (label, false) => label,
        },
        load_generator,
        loadgen_cores,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        rows: samples.into_rows(),
    };
    println!("\n{}", report.table());
    if runs(Workload::Proxy) {
        println!("{}", proxy::PEER_NOTE);
    }
    if let Some(cores) = report.loadgen_cores {
        println!(
            "load generator: {} used at most {cores:.2} of {} cores in a request-rate run",
            report.load_generator, report.cores
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("json: {}", path.display());
    }
    Ok(())
}

/// Restarts every registry the bench started, `rounds` times, and records
/// the time to the first `/v2/` 200 under `label`. Restarts, not first
/// starts, so the binary is in the page cache as on a real restart.
async fn startup(
    registries: &mut Registries,
    samples: &mut Samples,
    rounds: usize,
    label: &str,
) -> Result<(), Error> {
    for round in 0..rounds {
        for t in registries.order(round) {
            if t.restart().await?
                && let Some(took) = t.startup()
            {
                let ms = took.as_secs_f64() * 1e3;
                samples.add(t, "startup", label, "ms", Better::Lower, ms);
            }
        }
    }
    Ok(())
}

/// Pushes a `size`-byte blob every way, pulls it whole and by ranges;
/// records throughput and the peak RSS after the pushes.
async fn blobs(
    client: &reqwest::Client,
    registries: &mut Registries,
    samples: &mut Samples,
    rounds: usize,
    size: u64,
    s3: Option<&store::S3Store>,
) -> Result<(), Error> {
    println!("bench: generating a {} MiB blob", size >> 20);
    let store_cpu = || s3.and_then(store::S3Store::cpu_time);
    let tail = Bytes::from(blob::random_bytes(u64::MAX, size as usize - (1 << 20)));
    let kinds = [
        PushKind::Monolithic,
        PushKind::Streamed,
        PushKind::Chunked(5 << 20),
        PushKind::Chunked(16 << 20),
    ];
    let mut pulled: Option<Blob> = None;
    for round in 0..rounds {
        for (k, kind) in kinds.iter().enumerate() {
            let blob = Blob::new((round * kinds.len() + k) as u64, &tail);
            let keep = round + 1 == rounds && *kind == PushKind::Monolithic;
            for t in registries.order(round) {
                let (cpu_before, store_before) = (t.cpu_time(), store_cpu());
                let took = blob::push(client, t, "bench", &blob, *kind).await?;
                let rate = megabytes_per_sec(blob.len(), took);
                samples.add(t, "push", &kind.label(), "MB/s", Better::Higher, rate);
                cpu_per_gb(samples, t, "push", &kind.label(), cpu_before, blob.len());
                store_cpu_per_gb(
                    samples,
                    t,
                    "push",
                    &kind.label(),
                    store_before,
                    store_cpu(),
                    blob.len(),
                );
                if !keep {
                    blob::delete(client, t, "bench", &blob.digest).await?;
                    t.reclaim(&blob.digest);
                }
            }
            if keep {
                pulled = Some(blob);
            }
        }
    }
    for t in registries.order(0) {
        if let Some(hwm) = t.memory_kib("VmHWM") {
            let name = "peak RSS (VmHWM) after the pushes";
            samples.add(t, "memory", name, "MiB", Better::Lower, mib(hwm));
        }
    }
    let pulled = pulled.ok_or("no blob was kept for pulls")?;
    // One untimed pull each checks the bytes against the digest.
    for t in registries.order(0) {
        blob::verify(client, t, "bench", &pulled).await?;
    }
    for round in 0..rounds {
        for t in registries.order(round) {
            let (cpu_before, store_before) = (t.cpu_time(), store_cpu());
            let took = blob::pull(t, "bench", &pulled, None).await?;
            let rate = megabytes_per_sec(pulled.len(), took);
            samples.add(t, "pull", "whole blob", "MB/s", Better::Higher, rate);
            cpu_per_gb(samples, t, "pull", "whole blob", cpu_before, pulled.len());
            let store_after = store_cpu();
            store_cpu_per_gb(
                samples,
                t,
                "pull",
                "whole blob",
                store_before,
                store_after,
                pulled.len(),
            );
            let took = blob::pull(t, "bench", &pulled, Some(RANGE)).await?;
            let rate = megabytes_per_sec(pulled.len(), took);
            let name = "16 MiB ranges, one after another";
            samples.add(t, "pull", name, "MB/s", Better::Higher, rate);
        }
    }
    Ok(())
}

/// The hostile workload (see [`mod@hostile`]): keep-alive small GETs every
/// round; the slowloris count and the manifest bomb once, each on a freshly
/// restarted registry so its peak RSS is the bomb's.
async fn hostile(
    client: &reqwest::Client,
    args: &Args,
    image: &Image,
    registries: &mut Registries,
    samples: &mut Samples,
    rounds: usize,
) -> Result<(), Error> {
    let blob_path = format!("/v2/bench/blobs/{}", image.blob);
    let duration = Duration::from_secs_f64(args.duration.max(0.5));
    for round in 0..rounds {
        for t in registries.order(round) {
            let rps = hostile::keepalive_gets(t, &blob_path, duration).await?;
            let name = "small blob GETs on one keep-alive connection";
            samples.add(t, "hostile", name, "req/s", Better::Higher, rps);
        }
    }
    for t in registries.order(0) {
        t.restart().await?;
        let bomb = hostile::manifest_bomb(client, t, "bench", image, args.bomb).await?;
        let name = format!("{} hostile 4 MiB manifests at once: accepted", args.bomb);
        samples.add(t, "hostile", &name, "", Better::Lower, bomb.accepted as f64);
        let ms = bomb.normal_get.as_secs_f64() * 1e3;
        let name = "a manifest GET during the bomb";
        samples.add(t, "hostile", name, "ms", Better::Lower, ms);
        if let Some(hwm) = t.memory_kib("VmHWM") {
            let name = "peak RSS (VmHWM) after the bomb";
            samples.add(t, "hostile", name, "MiB", Better::Lower, mib(hwm));
        }
    }
    if args.slowloris > 0 {
        let wait = Duration::from_secs(args.slowloris_wait);
        for t in registries.order(0) {
            println!(
                "bench: {} slowloris connections to {}, counted after {} s",
                args.slowloris,
                t.label,
                wait.as_secs()
            );
            let open = hostile::slowloris(t, args.slowloris, wait).await?;
            let name = format!("slowloris connections of {} still open", args.slowloris);
            samples.add(t, "hostile", &name, "", Better::Lower, open as f64);
        }
    }
    Ok(())
}

/// Records the server CPU time a transfer of `bytes` took, per GB, when
/// the server's pid is known: with the throughput it shows whether the
/// server or the machine is the limit.
fn cpu_per_gb(
    samples: &mut Samples,
    t: &Target,
    group: &str,
    what: &str,
    before: Option<Duration>,
    bytes: u64,
) {
    if let (Some(before), Some(after)) = (before, t.cpu_time()) {
        let seconds = (after - before).as_secs_f64() / (bytes as f64 / 1e9);
        let name = format!("{what}: server CPU");
        samples.add(t, group, &name, "core-s/GB", Better::Lower, seconds);
    }
}

/// The S3 store's CPU time between `before` and `after` per GB moved, as
/// a row of `t`'s column.
fn store_cpu_per_gb(
    samples: &mut Samples,
    t: &Target,
    group: &str,
    what: &str,
    before: Option<Duration>,
    after: Option<Duration>,
    bytes: u64,
) {
    if let (Some(before), Some(after)) = (before, after) {
        let seconds = (after - before).as_secs_f64() / (bytes as f64 / 1e9);
        let name = format!("{what}: S3 store CPU");
        samples.add(t, group, &name, "core-s/GB", Better::Lower, seconds);
    }
}

/// Manifest GET by tag, blob HEAD and small blob GET under oha at each
/// concurrency; returns the most CPU the load generator used in a run, in
/// cores.
async fn requests(
    oha: &std::path::Path,
    args: &Args,
    image: &Image,
    registries: &mut Registries,
    samples: &mut Samples,
    rounds: usize,
) -> Result<f64, Error> {
    let duration = Duration::from_secs_f64(args.duration.max(0.5));
    let manifest = (
        "manifest GET by tag",
        "GET",
        "/v2/bench/manifests/latest".to_owned(),
        vec![format!("Accept: {}", seed::ACCEPT)],
    );
    let head = (
        "blob HEAD",
        "HEAD",
        format!("/v2/bench/blobs/{}", image.blob),
        vec![],
    );
    let get = (
        "small blob GET",
        "GET",
        format!("/v2/bench/blobs/{}", image.blob),
        vec![],
    );
    // The load of one measurement (with the registry's credentials).
    let load_on = |t: &Target,
                   method: &'static str,
                   path: &str,
                   headers: &[String],
                   concurrency: usize,
                   duration: Duration| {
        let mut headers = headers.to_vec();
        if let Some(value) = &t.authorization {
            headers.push(format!("Authorization: {value}"));
        }
        load::Load {
            url: format!("{}{path}", t.base),
            method,
            headers,
            concurrency,
            duration,
            threads: args.loadgen_threads,
        }
    };
    let mut loadgen_cores: f64 = 0.0;
    for round in 0..rounds {
        if round == 0 || args.restart_each_round {
            for t in registries.order(round) {
                if round > 0 {
                    t.restart().await?;
                }
                // One unmeasured second of each workload first: the first
                // load on a fresh process pays for its warm-up (allocator
                // growth, lazily built tables, a new log file's first
                // pages), and in round 0 the same registry goes first.
                for (group, method, path, headers) in [&manifest, &head, &get] {
                    let most = args.concurrency.iter().copied().max().unwrap_or(16);
                    let load = load_on(t, method, path, headers, most, Duration::from_secs(1));
                    let outcome = load::run(oha, &load)?;
                    if outcome.failures > 0 {
                        return Err(format!(
                            "{group} on {} (warm-up): {} failed requests",
                            t.label, outcome.failures
                        )
                        .into());
                    }
                }
            }
        }
        for &c in &args.concurrency {
            for (group, method, path, headers) in [&manifest, &head, &get] {
                for t in registries.order(round) {
                    let cpu_before = t.cpu_time();
                    let started = Instant::now();
                    let load = load_on(t, method, path, headers, c, duration);
                    let outcome = load::run(oha, &load)?;
                    let wall = started.elapsed();
                    if outcome.failures > 0 {
                        return Err(format!(
                            "{group} on {}: {} failed requests",
                            t.label, outcome.failures
                        )
                        .into());
                    }
                    loadgen_cores = loadgen_cores.max(outcome.loadgen_cores);
                    let rps = outcome.rps;
                    samples.add(
                        t,
                        group,
                        &format!("c={c} requests/s"),
                        "req/s",
                        Better::Higher,
                        rps,
                    );
                    samples.add(
                        t,
                        group,
                        &format!("c={c} p50"),
                        "ms",
                        Better::Lower,
                        outcome.p50_ms,
                    );
                    samples.add(
                        t,
                        group,
                        &format!("c={c} p99"),
                        "ms",
                        Better::Lower,
                        outcome.p99_ms,
                    );
                    if let (Some(before), Some(after)) = (cpu_before, t.cpu_time()) {
                        let requests = (rps * wall.as_secs_f64()).max(1.0);
                        let micros = (after - before).as_secs_f64() * 1e6 / requests;
                        let name = format!("c={c} server CPU per request");
                        samples.add(t, group, &name, "us", Better::Lower, micros);
                    }
                }
            }
        }
    }
    Ok(loadgen_cores)
}

/// Seeds `--tags` tags and `--repos` repositories, then pages through the
/// tags list and the catalog as clients do.
async fn lists(
    client: &reqwest::Client,
    args: &Args,
    image: &Image,
    registries: &mut Registries,
    samples: &mut Samples,
    rounds: usize,
) -> Result<(), Error> {
    println!(
        "bench: tagging {} manifests, creating {} repositories",
        args.tags, args.repos
    );
    let group = "seeding (16 requests in flight)";
    for t in registries.order(0) {
        let took = seed::seed_tags(client, t, image, "bench-tags", args.tags).await?;
        let name = format!("put {} tags", args.tags);
        samples.add(t, group, &name, "s", Better::Lower, took.as_secs_f64());
        let took = seed::seed_repos(client, t, image, "bench", args.repos).await?;
        let name = format!("create {} repositories", args.repos);
        samples.add(t, group, &name, "s", Better::Lower, took.as_secs_f64());
    }
    // Lists are read long after they were written; a pause lets the
    // just-seeded stores settle (ours keeps a listing in memory only once
    // its directory has been unchanged for two seconds).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for round in 0..rounds {
        for t in registries.order(round) {
            let paged = seed::page(client, t, "/v2/bench-tags/tags/list", "tags").await?;
            if paged.entries != args.tags {
                return Err(format!(
                    "{}: tags list gave {} of {} tags",
                    t.label, paged.entries, args.tags
                )
                .into());
            }
            let name = format!("page {} tags", args.tags);
            println!("  {:<5} tags list: {} pages", t.label, paged.pages);
            let ms = paged.elapsed.as_secs_f64() * 1e3;
            samples.add(t, "lists", &name, "ms", Better::Lower, ms);
            let paged = seed::page(client, t, "/v2/_catalog", "repositories").await?;
            if paged.entries < args.repos {
                return Err(format!(
                    "{}: catalog gave {} of {} repositories",
                    t.label, paged.entries, args.repos
                )
                .into());
            }
            let ms = paged.elapsed.as_secs_f64() * 1e3;
            let name = format!("page a catalog of {} repositories", args.repos);
            samples.add(t, "lists", &name, "ms", Better::Lower, ms);
            println!("  {:<5} catalog: {} pages", t.label, paged.pages);
            // One page of 100 at the start, the middle and the end of each
            // list: a page must cost the same wherever it is and however
            // long the list (compare runs with --tags/--repos 10000 and
            // 100000).
            for at in ["start", "middle", "end"] {
                // The page's `last`: none, the middle entry, or the one
                // 101 before the end (so the page is full).
                let last = |count: usize, name: fn(usize) -> String| match at {
                    "start" => None,
                    "middle" => Some(name(count / 2)),
                    _ => Some(name(count.saturating_sub(101))),
                };
                let path = "/v2/bench-tags/tags/list";
                let page = seed::one_page(client, t, path, last(args.tags, seed::tag_name)).await?;
                let name = format!("a page of 100 of {} tags at the {at}", args.tags);
                match page {
                    Some(ms) => samples.add(t, "lists: one page", &name, "ms", Better::Lower, ms),
                    None => println!(
                        "  {:<5} {name}: the tag list is not paged (n ignored)",
                        t.label
                    ),
                }
                let last = last(args.repos, seed::repo_name);
                let page = seed::one_page(client, t, "/v2/_catalog", last).await?;
                let name = format!("a page of 100 of {} repositories at the {at}", args.repos);
                match page {
                    Some(ms) => samples.add(t, "lists: one page", &name, "ms", Better::Lower, ms),
                    None => println!(
                        "  {:<5} {name}: the catalog is not paged (n ignored)",
                        t.label
                    ),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::debug_registry;

    /// `--peer-binary` names the build the peer runs; it replaces the
    /// other ways of naming a peer instead of joining them.
    #[test]
    fn peer_binary_is_one_way_to_name_the_peer() {
        #[derive(clap::Parser)]
        struct Bench {
            #[command(flatten)]
            args: Args,
        }
        use clap::Parser as _;
        let parsed = Bench::try_parse_from(["bench", "--peer-binary", "/tmp/previous"]).unwrap();
        assert_eq!(
            parsed.args.peer_binary.as_deref(),
            Some(std::path::Path::new("/tmp/previous"))
        );
        assert!(!parsed.args.peer_self);
        for other in [
            &["--peer-self"][..],
            &["--peer", "http://127.0.0.1:5000"],
            &["--peer-distribution", "/usr/bin/docker-registry"],
        ] {
            let argv = ["bench", "--peer-binary", "/tmp/previous"]
                .into_iter()
                .chain(other.iter().copied());
            assert!(Bench::try_parse_from(argv).is_err(), "{other:?}");
        }
    }

    /// The bench's workloads against the debug registry over real HTTP, at
    /// small sizes: every push kind, blob reclaim, pulls, seeding, paging
    /// and a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workloads_run_against_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let port = free_port().unwrap();
        let command = target::ours_command(
            debug_registry(),
            root.display().to_string(),
            Vec::new(),
            port,
            target::Telemetry::default(),
        );
        let mut ours = Target::start("ours", port, dir.path().join("log"), command)
            .await
            .unwrap()
            .with_blob_files(BlobFiles::Dir(root.clone()));
        let client = reqwest::Client::new();

        // 17 MiB: several chunks of each chunked kind, and a short tail.
        let tail = Bytes::from(blob::random_bytes(9, 16 << 20));
        for (i, kind) in [
            PushKind::Monolithic,
            PushKind::Streamed,
            PushKind::Chunked(5 << 20),
            PushKind::Chunked(16 << 20),
        ]
        .into_iter()
        .enumerate()
        {
            let b = Blob::new(i as u64, &tail);
            blob::push(&client, &ours, "bench", &b, kind).await.unwrap();
            blob::verify(&client, &ours, "bench", &b).await.unwrap();
            let data = root.join(format!(
                "blobs/sha256/{}/{}/data",
                &b.digest.hex()[..2],
                b.digest.hex()
            ));
            assert!(data.is_file(), "{kind:?} stored the blob");
            if kind == PushKind::Monolithic {
                blob::pull(&ours, "bench", &b, None).await.unwrap();
                blob::pull(&ours, "bench", &b, Some(RANGE)).await.unwrap();
            } else {
                blob::delete(&client, &ours, "bench", &b.digest)
                    .await
                    .unwrap();
                ours.reclaim(&b.digest);
                assert!(!data.exists(), "{kind:?}: bytes reclaimed");
            }
        }

        let image = Image::new();
        image.push(&client, &ours, "bench", "latest").await.unwrap();
        seed::seed_tags(&client, &ours, &image, "bench-tags", 250)
            .await
            .unwrap();
        seed::seed_repos(&client, &ours, &image, "bench", 25)
            .await
            .unwrap();
        let tags = seed::page(&client, &ours, "/v2/bench-tags/tags/list", "tags")
            .await
            .unwrap();
        assert_eq!(tags.entries, 250);
        for last in [None, Some(seed::tag_name(149))] {
            let path = "/v2/bench-tags/tags/list";
            let ms = seed::one_page(&client, &ours, path, last).await.unwrap();
            assert!(ms.is_some_and(|ms| ms > 0.0));
        }
        let last = Some(seed::tag_name(150));
        let short = seed::one_page(&client, &ours, "/v2/bench-tags/tags/list", last).await;
        assert!(short.is_err(), "99 entries after t00150 are no page of 100");
        let catalog = seed::page(&client, &ours, "/v2/_catalog?n=10", "repositories")
            .await
            .unwrap();
        assert_eq!((catalog.entries, catalog.pages), (27, 3));

        assert!(ours.restart().await.unwrap());
        assert!(ours.startup().is_some_and(|t| t > Duration::ZERO));
        assert!(ours.memory_kib("VmRSS").is_some_and(|kib| kib > 0));
    }
}
