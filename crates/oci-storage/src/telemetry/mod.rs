//! Metrics of the storage engine, through the [`metrics`]
//! facade (the binary installs an exporter; this crate only records).
//!
//! Nothing is recorded until [`enable`] is called, once a recorder is
//! installed: until then an operation costs one relaxed atomic load. The
//! metrics recorded on the request path (operations, their latency, cache
//! lookups) are kept in this crate's own tables, sharded by thread
//! ([`FixedCounters`], [`FixedHistogram`]), and appended to the exporter's
//! text by [`render`]; the others go through the facade, each handle of a
//! fixed label set resolved once and kept in a static.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`OPERATIONS`] | counter | `op`: get, head, put, list, delete, copy, rename, multipart; `result`: ok, not_found, conflict, error |
//! | [`OPERATION_DURATION`] | histogram (seconds) | `op` |
//! | [`UPLOADS_OPENED`] | counter | |
//! | [`UPLOADS_CLOSED`] | counter | `reason`: completed, cancelled, invalid, expired |
//! | [`UPLOADS_IN_PROGRESS`] | gauge | |
//! | [`GC_RUNS`] | counter | `result`: ok, error |
//! | [`GC_LAST_RUN`] | gauge (Unix seconds) | |
//! | [`GC_LAST_DURATION`] | gauge (seconds) | |
//! | [`GC_BLOBS_SWEPT`] | counter | |
//! | [`GC_BYTES_SWEPT`] | counter | |
//! | [`CACHE_LOOKUPS`] | counter | `kind`: content, size, metadata; `result`: hit, miss |
//! | [`CACHE_BYTES`] | gauge | |
//! | [`STORED_BLOBS`], [`STORED_BYTES`], [`UNREFERENCED_BYTES`] | gauge | |
//! | [`REPOSITORY_REFERENCED_BYTES`], [`REPOSITORY_EXCLUSIVE_BYTES`], [`REPOSITORY_MANIFESTS`] | gauge | `repository` (only with [`per_repository`]) |
//!
//! The usage gauges are those `oci-registry du` reports, set by each
//! collection this replica runs (the walk is the collection's).
//!
//! Storage operations are counted in one place: the object store the
//! engine was opened on (wrapped in [`InstrumentedStore`] when opened, so
//! the upload areas' requests through it count too) and the filesystem
//! fast paths (`local`). S3 multipart part uploads and the filesystem
//! upload area's appends are not counted.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use ::metrics::{Counter, Gauge, Unit};

mod fixed;

use async_trait::async_trait;
pub use fixed::{
    DURATION_BUCKETS, FixedCounters, FixedHistogram, combination, render_counter, render_histogram,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Counter of storage operations, by `op` and `result`.
pub const OPERATIONS: &str = "oci_registry_storage_operations_total";
/// Histogram of storage operation latency in seconds, by `op` (for a get,
/// until the object's metadata arrived; for a list, until it was read).
pub const OPERATION_DURATION: &str = "oci_registry_storage_operation_duration_seconds";
/// Counter of upload sessions opened (a monolithic `POST ?digest=` opens
/// and closes one too).
pub const UPLOADS_OPENED: &str = "oci_registry_upload_sessions_opened_total";
/// Counter of upload sessions closed, by `reason`.
pub const UPLOADS_CLOSED: &str = "oci_registry_upload_sessions_closed_total";
/// Gauge: the estimate of open upload sessions behind `max_uploads` (the
/// last sweep's count of sessions in the store, plus those this replica
/// opened since, less those it closed). Per replica.
pub const UPLOADS_IN_PROGRESS: &str = "oci_registry_uploads_in_progress";

/// Counter of in-memory read cache lookups (`[cache]`), by `kind`
/// (content by digest; metadata: tags and links) and `result` (a hit is
/// served from memory, after validation where the object can change).
pub const CACHE_LOOKUPS: &str = "oci_registry_storage_cache_lookups_total";
/// Gauge: bytes the in-memory read cache holds, as its budget counts them.
pub const CACHE_BYTES: &str = "oci_registry_storage_cache_bytes";

/// Counter of garbage collections this replica ran, by `result`.
pub const GC_RUNS: &str = "oci_registry_gc_runs_total";
/// Gauge: when the last collection this replica ran finished (Unix time).
pub const GC_LAST_RUN: &str = "oci_registry_gc_last_run_timestamp_seconds";
/// Gauge: how long the last collection this replica ran took.
pub const GC_LAST_DURATION: &str = "oci_registry_gc_last_run_duration_seconds";
/// Counter of blobs garbage collection removed.
pub const GC_BLOBS_SWEPT: &str = "oci_registry_gc_blobs_swept_total";
/// Counter of bytes garbage collection freed.
pub const GC_BYTES_SWEPT: &str = "oci_registry_gc_bytes_swept_total";

/// Gauge: blobs stored, at the last collection.
pub const STORED_BLOBS: &str = "oci_registry_storage_blobs";
/// Gauge: bytes stored (each blob once), at the last collection.
pub const STORED_BYTES: &str = "oci_registry_storage_bytes";
/// Gauge: stored bytes no repository references, at the last collection.
pub const UNREFERENCED_BYTES: &str = "oci_registry_storage_unreferenced_bytes";
/// Gauge: bytes a repository references, by `repository`.
pub const REPOSITORY_REFERENCED_BYTES: &str = "oci_registry_repository_referenced_bytes";
/// Gauge: bytes only a repository references, by `repository`.
pub const REPOSITORY_EXCLUSIVE_BYTES: &str = "oci_registry_repository_exclusive_bytes";
/// Gauge: manifests a repository holds, by `repository`.
pub const REPOSITORY_MANIFESTS: &str = "oci_registry_repository_manifests";

static PER_REPOSITORY: AtomicBool = AtomicBool::new(false);
/// Repositories whose gauges were last set, to zero those that went.
static PUBLISHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Also export usage per repository (a `repository` label per
/// repository: as many series as repositories, so off by default).
pub fn per_repository(on: bool) {
    PER_REPOSITORY.store(on, Ordering::Relaxed);
}

/// Appends the metrics kept in this crate's own tables rather than the
/// exporter's: the operation and cache lookup counters and the operation
/// latency histograms (see [`FixedCounters`]).
pub fn render(out: &mut String) {
    render_counter(
        out,
        OPERATIONS,
        "Storage backend operations, by kind of operation and result",
        (0..OPS.len() * OUTCOMES.len()).map(|i| {
            let labels = combination(["op", "result"], [&OPS, &OUTCOMES], i);
            (labels, OPERATION_COUNTERS.get(i))
        }),
    );
    render_counter(
        out,
        CACHE_LOOKUPS,
        "In-memory read cache lookups, by kind (content, metadata, size) and result (hit, miss)",
        (0..CACHE_KINDS.len() * CACHE_RESULTS.len()).map(|i| {
            let labels = combination(["kind", "result"], [&CACHE_KINDS, &CACHE_RESULTS], i);
            (labels, CACHE_COUNTERS.get(i))
        }),
    );
    let families: Vec<(&str, &FixedHistogram)> =
        OPS.iter().copied().zip(DURATIONS.iter()).collect();
    render_histogram(
        out,
        OPERATION_DURATION,
        "Latency of storage backend operations, by kind of operation",
        "op",
        &families,
    );
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Describes the engine's metrics to the installed recorder and starts
/// recording them. Call once the process's recorder is installed (handles
/// are resolved on first use and kept); calling it again does nothing more.
pub fn enable() {
    if ENABLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // Calibrated now rather than in the first timed operation.
    clock();
    ::metrics::describe_counter!(UPLOADS_OPENED, Unit::Count, "Upload sessions opened");
    ::metrics::describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes the in-memory read cache holds"
    );
    ::metrics::describe_counter!(
        UPLOADS_CLOSED,
        Unit::Count,
        "Upload sessions closed: completed, cancelled, invalid (digest mismatch) or expired"
    );
    ::metrics::describe_counter!(
        GC_RUNS,
        Unit::Count,
        "Garbage collections run by this replica"
    );
    ::metrics::describe_gauge!(
        GC_LAST_RUN,
        Unit::Seconds,
        "When the last garbage collection this replica ran finished (Unix time)"
    );
    ::metrics::describe_gauge!(
        GC_LAST_DURATION,
        Unit::Seconds,
        "Duration of the last garbage collection this replica ran"
    );
    ::metrics::describe_counter!(
        GC_BLOBS_SWEPT,
        Unit::Count,
        "Blobs removed by garbage collection"
    );
    ::metrics::describe_counter!(
        GC_BYTES_SWEPT,
        Unit::Bytes,
        "Bytes freed by garbage collection"
    );
    ::metrics::describe_gauge!(
        STORED_BLOBS,
        Unit::Count,
        "Blobs stored, at the last collection"
    );
    ::metrics::describe_gauge!(
        STORED_BYTES,
        Unit::Bytes,
        "Bytes stored (each blob once), at the last collection"
    );
    ::metrics::describe_gauge!(
        UNREFERENCED_BYTES,
        Unit::Bytes,
        "Stored bytes no repository references, at the last collection"
    );
    ::metrics::describe_gauge!(
        REPOSITORY_REFERENCED_BYTES,
        Unit::Bytes,
        "Bytes a repository references, at the last collection"
    );
    ::metrics::describe_gauge!(
        REPOSITORY_EXCLUSIVE_BYTES,
        Unit::Bytes,
        "Bytes only this repository references, at the last collection"
    );
    ::metrics::describe_gauge!(
        REPOSITORY_MANIFESTS,
        Unit::Count,
        "Manifests a repository holds, at the last collection"
    );
    ::metrics::describe_gauge!(
        UPLOADS_IN_PROGRESS,
        Unit::Count,
        "Estimate of open upload sessions (last sweep's count plus this replica's changes since)"
    );
}

/// Records a finished collection (run by this replica).
pub(crate) fn gc_finished(report: &crate::GcReport, ok: bool) {
    if !enabled() {
        return;
    }
    ::metrics::counter!(GC_RUNS, "result" => if ok { "ok" } else { "error" }).increment(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ::metrics::gauge!(GC_LAST_RUN).set(now.as_secs_f64());
    ::metrics::gauge!(GC_LAST_DURATION).set(report.duration.as_secs_f64());
    ::metrics::counter!(GC_BLOBS_SWEPT).increment(report.swept.len() as u64);
    ::metrics::counter!(GC_BYTES_SWEPT).increment(report.swept_bytes());
    if let Some(usage) = &report.usage {
        usage_gauges(usage);
    }
}

/// Sets the usage gauges.
fn usage_gauges(usage: &crate::Usage) {
    ::metrics::gauge!(STORED_BLOBS).set(usage.stored_blobs as f64);
    ::metrics::gauge!(STORED_BYTES).set(usage.stored_bytes as f64);
    ::metrics::gauge!(UNREFERENCED_BYTES).set(usage.unreferenced_bytes as f64);
    if !PER_REPOSITORY.load(Ordering::Relaxed) {
        return;
    }
    let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    let now: Vec<String> = usage
        .repositories
        .iter()
        .map(|r| r.name.as_str().to_owned())
        .collect();
    for gone in published.iter().filter(|n| !now.contains(n)) {
        for name in [
            REPOSITORY_REFERENCED_BYTES,
            REPOSITORY_EXCLUSIVE_BYTES,
            REPOSITORY_MANIFESTS,
        ] {
            ::metrics::gauge!(name, "repository" => gone.clone()).set(0.0);
        }
    }
    for r in &usage.repositories {
        let label = r.name.as_str().to_owned();
        ::metrics::gauge!(REPOSITORY_REFERENCED_BYTES, "repository" => label.clone())
            .set(r.referenced_bytes as f64);
        ::metrics::gauge!(REPOSITORY_EXCLUSIVE_BYTES, "repository" => label.clone())
            .set(r.exclusive_bytes as f64);
        ::metrics::gauge!(REPOSITORY_MANIFESTS, "repository" => label).set(r.manifests as f64);
    }
    *published = now;
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A kind of storage operation (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Head,
    Put,
    List,
    Delete,
    Copy,
    Rename,
    Multipart,
}

const OPS: [&str; 8] = [
    "get",
    "head",
    "put",
    "list",
    "delete",
    "copy",
    "rename",
    "multipart",
];

/// How an operation ended (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    NotFound,
    /// A conditional write's precondition failed, or the object existed.
    Conflict,
    Error,
}

const OUTCOMES: [&str; 4] = ["ok", "not_found", "conflict", "error"];

static OPERATION_COUNTERS: FixedCounters<{ OPS.len() * OUTCOMES.len() }> = FixedCounters::new();
static DURATIONS: [FixedHistogram; OPS.len()] = [const { FixedHistogram::new() }; OPS.len()];

impl Outcome {
    /// The outcome of an object store call.
    pub(crate) fn of_store<T>(result: &object_store::Result<T>) -> Self {
        result
            .as_ref()
            .map_or_else(Self::of_store_error, |_| Self::Ok)
    }

    /// The outcome of an object store error.
    fn of_store_error(e: &object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. } => Self::Conflict,
            _ => Self::Error,
        }
    }

    /// The outcome of an engine call answering `None` for a missing object.
    pub(crate) fn of_option<T>(result: &crate::Result<Option<T>>) -> Self {
        match result {
            Ok(Some(_)) => Self::Ok,
            Ok(None) => Self::NotFound,
            Err(_) => Self::Error,
        }
    }

    /// The outcome of any other engine call.
    pub(crate) fn of<T>(result: &crate::Result<T>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(_) => Self::Error,
        }
    }
}

/// The clock storage operations are timed with: the CPU's cycle counter
/// where it is invariant (`quanta`, which the metrics exporter already
/// calibrates at start), else the OS's monotonic clock. A read is a few
/// instructions where `Instant::now` is a vDSO call of ~80; a cached
/// manifest GET times two operations, four reads.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// One operation being timed; [`Timer::done`] records it. Inert (no clock
/// read) while recording is off.
#[derive(Debug)]
pub(crate) struct Timer {
    op: Op,
    /// The [`clock`]'s raw reading at the start.
    started: Option<u64>,
}

impl Timer {
    /// Starts timing `op`.
    pub(crate) fn start(op: Op) -> Self {
        Self {
            op,
            started: enabled().then(|| clock().raw()),
        }
    }

    /// Records the operation as ended with `outcome`.
    pub(crate) fn done(self, outcome: Outcome) {
        let Some(started) = self.started else {
            return;
        };
        let clock = clock();
        let nanos = clock.delta_as_nanos(started, clock.raw());
        let op = self.op as usize;
        OPERATION_COUNTERS.add(op * OUTCOMES.len() + outcome as usize, 1);
        DURATIONS[op].record_nanos(nanos);
    }
}

/// What a read cache lookup was for (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Content by digest.
    Content,
    /// A tag or a link.
    Metadata,
    /// The size of content by digest (a blob `HEAD`).
    Size,
}

const CACHE_KINDS: [&str; 3] = ["content", "metadata", "size"];
const CACHE_RESULTS: [&str; 2] = ["hit", "miss"];
static CACHE_COUNTERS: FixedCounters<{ CACHE_KINDS.len() * CACHE_RESULTS.len() }> =
    FixedCounters::new();
static CACHE_WEIGHT: OnceLock<Gauge> = OnceLock::new();

/// Counts a read cache lookup; after a miss, sets the cache's size.
pub(crate) fn cache_lookup(
    kind: Cached,
    result: crate::read_cache::Lookup,
    weight: impl Fn() -> u64,
) {
    if !enabled() {
        return;
    }
    let (k, r) = (kind as usize, result as usize);
    CACHE_COUNTERS.add(k * CACHE_RESULTS.len() + r, 1);
    if result == crate::read_cache::Lookup::Miss {
        CACHE_WEIGHT
            .get_or_init(|| ::metrics::gauge!(CACHE_BYTES))
            .set(weight() as f64);
    }
}

/// Why an upload session was closed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Completed,
    Cancelled,
    /// Its content did not match the digest given.
    Invalid,
    Expired,
}

const CLOSED: [&str; 4] = ["completed", "cancelled", "invalid", "expired"];
static CLOSED_COUNTERS: [OnceLock<Counter>; CLOSED.len()] =
    [const { OnceLock::new() }; CLOSED.len()];
static OPENED: OnceLock<Counter> = OnceLock::new();
static IN_PROGRESS: OnceLock<Gauge> = OnceLock::new();

/// Counts an upload session opened.
pub(crate) fn upload_opened() {
    if enabled() {
        OPENED
            .get_or_init(|| ::metrics::counter!(UPLOADS_OPENED))
            .increment(1);
    }
}

/// Counts an upload session closed.
pub(crate) fn upload_closed(reason: Closed) {
    if enabled() {
        let i = reason as usize;
        CLOSED_COUNTERS[i]
            .get_or_init(|| ::metrics::counter!(UPLOADS_CLOSED, "reason" => CLOSED[i]))
            .increment(1);
    }
}

/// Sets the open-sessions estimate.
pub(crate) fn uploads_in_progress(estimate: usize) {
    if enabled() {
        IN_PROGRESS
            .get_or_init(|| ::metrics::gauge!(UPLOADS_IN_PROGRESS))
            .set(estimate as f64);
    }
}

/// An object store whose every request is counted and timed (see the
/// module docs); the engine wraps the store it opens in one.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Records a stream's operation when the stream ends or is dropped: ok
/// unless an item was an error.
fn timed_stream<T: Send + 'static>(
    op: Op,
    stream: BoxStream<'static, object_store::Result<T>>,
) -> BoxStream<'static, object_store::Result<T>> {
    struct Pending(Option<Timer>, Outcome);
    impl Pending {
        fn failed(&mut self, e: &object_store::Error) {
            self.1 = Outcome::of_store_error(e);
        }
    }
    impl Drop for Pending {
        fn drop(&mut self) {
            if let Some(timer) = self.0.take() {
                timer.done(self.1);
            }
        }
    }
    let timer = Timer::start(op);
    if timer.started.is_none() {
        return stream;
    }
    let mut pending = Pending(Some(timer), Outcome::Ok);
    stream
        .inspect(move |item| {
            if let Err(e) = item {
                // A method call: the closure owns all of `pending`, so it
                // is dropped (and records) with the stream.
                pending.failed(e);
            }
        })
        .boxed()
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let timer = Timer::start(Op::Put);
        let result = self.inner.put_opts(location, payload, opts).await;
        timer.done(Outcome::of_store(&result));
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let timer = Timer::start(Op::Multipart);
        let result = self.inner.put_multipart_opts(location, opts).await;
        timer.done(Outcome::of_store(&result));
        result
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let timer = Timer::start(if options.head { Op::Head } else { Op::Get });
        let result = self.inner.get_opts(location, options).await;
        timer.done(Outcome::of_store(&result));
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        timed_stream(Op::Delete, self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        timed_stream(Op::List, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        timed_stream(Op::List, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let timer = Timer::start(Op::List);
        let result = self.inner.list_with_delimiter(prefix).await;
        timer.done(Outcome::of_store(&result));
        result
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let timer = Timer::start(Op::Copy);
        let result = self.inner.copy_opts(from, to, options).await;
        timer.done(Outcome::of_store(&result));
        result
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let timer = Timer::start(Op::Rename);
        let result = self.inner.rename_opts(from, to, options).await;
        timer.done(Outcome::of_store(&result));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timers read the cycle counter clock, yet record wall durations.
    #[test]
    fn timers_record_the_time_an_operation_took() {
        enable();
        let op = Op::Rename;
        let histogram = &DURATIONS[op as usize];
        let counter = op as usize * OUTCOMES.len() + Outcome::Conflict as usize;
        let (before, sum_before) = histogram.totals();
        let count_before = OPERATION_COUNTERS.get(counter);
        let timer = Timer::start(op);
        let started = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        timer.done(Outcome::Conflict);
        let took = started.elapsed();
        let (after, sum_after) = histogram.totals();
        assert_eq!(OPERATION_COUNTERS.get(counter), count_before + 1);
        assert_eq!(
            after.iter().sum::<u64>(),
            before.iter().sum::<u64>() + 1,
            "one sample"
        );
        let recorded = std::time::Duration::from_nanos(sum_after - sum_before);
        assert!(
            recorded >= std::time::Duration::from_millis(29) && recorded <= took + took / 10,
            "recorded {recorded:?}, took {took:?}"
        );
    }
}
