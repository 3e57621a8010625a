//! Counters and latency histograms of fixed label sets, for the request
//! path: static tables of atomics, sharded by thread, rendered as
//! Prometheus text by this module instead of the exporter.
//!
//! Why not the exporter's handles: each of its counters is one atomic that
//! every thread adds to. With every request adding to the same few
//! counters from every core, the cache line holding each one moves between
//! cores at every add, and that costs far more than the add (on the
//! bench's manifest GET, the difference between the instructions telemetry
//! adds and the CPU time it adds). Here a thread adds to its own shard's
//! line; a scrape sums the shards.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Shards per table: threads beyond this share shards (still correct, the
/// adds are atomic; only slower).
const SHARDS: usize = 16;

/// One shard, alone on its cache lines (128 bytes: adjacent-line prefetch
/// pairs lines on x86).
#[derive(Debug)]
#[repr(align(128))]
struct Shard<T>(T);

/// The shard of the calling thread: threads take shards in turn on first
/// use.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|shard| {
        let mut i = shard.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(i);
        }
        i
    })
}

/// `N` counters, added to by index (see the module docs). Usable in
/// statics; each index stands for one label set, which the renderer names
/// ([`render_counter`]).
#[derive(Debug)]
pub struct FixedCounters<const N: usize> {
    shards: [Shard<[AtomicU64; N]>; SHARDS],
}

impl<const N: usize> FixedCounters<N> {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            shards: [const { Shard([const { AtomicU64::new(0) }; N]) }; SHARDS],
        }
    }

    /// Adds `n` to counter `i`.
    ///
    /// # Panics
    /// If `i >= N`.
    pub fn add(&self, i: usize, n: u64) {
        self.shards[shard()].0[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Counter `i`'s total.
    ///
    /// # Panics
    /// If `i >= N`.
    pub fn get(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl<const N: usize> Default for FixedCounters<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends the Prometheus text of a counter family: `# HELP`, `# TYPE`,
/// then one series per label set whose counter is not zero (a family
/// nothing counted is left out, as the exporter leaves out counters never
/// registered). `series` gives each label set, as `(name, value)` pairs,
/// with its total.
pub fn render_counter<'a, L>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) where
    L: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut header = false;
    for (labels, total) in series {
        if total == 0 {
            continue;
        }
        if !header {
            family_header(out, name, help, "counter");
            header = true;
        }
        out.push_str(name);
        let mut first = true;
        for (label, value) in labels {
            out.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(out, "{label}=\"{value}\"");
        }
        if !first {
            out.push('}');
        }
        let _ = writeln!(out, " {total}");
    }
    if header {
        out.push('\n');
    }
}

/// The label pairs of counter `index` of a table laid out as every
/// combination of the labels' values, the last label's varying fastest
/// (`index = (a * values[1].len() + b) * values[2].len() + c` for three).
pub fn combination<'a, const L: usize>(
    names: [&'a str; L],
    values: [&[&'a str]; L],
    mut index: usize,
) -> [(&'a str, &'a str); L] {
    let mut labels = [("", ""); L];
    for k in (0..L).rev() {
        let count = values[k].len().max(1);
        labels[k] = (
            names[k],
            values[k].get(index % count).copied().unwrap_or(""),
        );
        index /= count;
    }
    labels
}

/// `# HELP` and `# TYPE` of a family.
fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Upper bounds (seconds) of the latency histograms' buckets: 250 µs to
/// 5 min.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0,
];

/// Buckets of a [`FixedHistogram`]: one per bound, then `+Inf`.
const SLOTS: usize = 19;
const _: () = assert!(SLOTS == DURATION_BUCKETS.len() + 1);

/// [`DURATION_BUCKETS`] in whole nanoseconds (every bound is one), to
/// find a sample's bucket without floating point.
const BUCKET_NANOS: [u64; SLOTS - 1] = {
    let mut nanos = [0; SLOTS - 1];
    let mut i = 0;
    while i < nanos.len() {
        nanos[i] = (DURATION_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// One shard of a [`FixedHistogram`].
#[derive(Debug)]
struct Slots {
    counts: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

/// A latency histogram over [`DURATION_BUCKETS`], recorded with two
/// relaxed atomic adds to the thread's shard and no allocation, and
/// rendered as Prometheus text by [`render_histogram`]. The metrics
/// exporter's own histograms keep every sample until its upkeep folds them
/// into buckets; on the request path that cost shows
/// (`cargo xtask bench --metrics --peer-self`).
#[derive(Debug)]
pub struct FixedHistogram {
    shards: [Shard<Slots>; SHARDS],
}

impl FixedHistogram {
    /// An empty histogram (usable in statics).
    pub const fn new() -> Self {
        Self {
            shards: [const {
                Shard(Slots {
                    counts: [const { AtomicU64::new(0) }; SLOTS],
                    sum_nanos: AtomicU64::new(0),
                })
            }; SHARDS],
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one duration of `nanos` nanoseconds.
    pub fn record_nanos(&self, nanos: u64) {
        // Bounds are inclusive (`le`): the first bound at or above.
        let slot = BUCKET_NANOS.partition_point(|&bound| bound < nanos);
        let slots = &self.shards[shard()].0;
        slots.counts[slot].fetch_add(1, Ordering::Relaxed);
        slots.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Each bucket's count (not cumulative) and the sum in nanoseconds,
    /// over all shards.
    pub(crate) fn totals(&self) -> ([u64; SLOTS], u64) {
        let mut counts = [0u64; SLOTS];
        let mut sum = 0u64;
        for shard in &self.shards {
            for (total, count) in counts.iter_mut().zip(&shard.0.counts) {
                *total = total.wrapping_add(count.load(Ordering::Relaxed));
            }
            sum = sum.wrapping_add(shard.0.sum_nanos.load(Ordering::Relaxed));
        }
        (counts, sum)
    }
}

impl Default for FixedHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends the Prometheus text of a histogram family: `# HELP`, `# TYPE`,
/// then for each `(label value, histogram)` that recorded anything, its
/// cumulative `_bucket{label="...",le="..."}` series, `_sum` and
/// `_count` (families and series nothing recorded are left out, as the
/// exporter does).
pub fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    histograms: &[(&str, &FixedHistogram)],
) {
    let mut header = false;
    for (value, h) in histograms {
        let (counts, sum_nanos) = h.totals();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            continue;
        }
        if !header {
            family_header(out, name, help, "histogram");
            header = true;
        }
        let mut cumulative = 0;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            match DURATION_BUCKETS.get(i) {
                Some(bound) => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum = sum_nanos as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {total}");
    }
    if header {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series starting with `series` in `out`.
    fn value(out: &str, series: &str) -> String {
        out.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series} in {out}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn fixed_histograms_render_cumulative_buckets() {
        let h = FixedHistogram::new();
        let empty = FixedHistogram::new();
        for ms in [0.1, 0.3, 0.3, 7.0, 400_000.0] {
            h.record(Duration::from_secs_f64(ms / 1000.0));
        }
        // A bound is inclusive.
        h.record(Duration::from_millis(1));
        let mut out = String::new();
        render_histogram(
            &mut out,
            "x_seconds",
            "help",
            "op",
            &[("get", &h), ("put", &empty)],
        );
        let line = |series: &str| value(&out, series);
        assert!(out.starts_with("# HELP x_seconds help\n# TYPE x_seconds histogram\n"));
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"0.00025\"}"), "1");
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"0.0005\"}"), "3");
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"0.001\"}"), "4");
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"0.01\"}"), "5");
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"300\"}"), "5");
        assert_eq!(line("x_seconds_bucket{op=\"get\",le=\"+Inf\"}"), "6");
        assert_eq!(line("x_seconds_count{op=\"get\"}"), "6");
        let sum: f64 = line("x_seconds_sum{op=\"get\"}").parse().unwrap();
        assert!((sum - 400.0087).abs() < 1e-6, "{sum}");
        assert!(!out.contains("op=\"put\""), "{out}");
        let mut none = String::new();
        render_histogram(&mut none, "x_seconds", "help", "op", &[("put", &empty)]);
        assert!(none.is_empty());
    }

    #[test]
    fn bucket_bounds_are_whole_nanoseconds() {
        for (seconds, nanos) in DURATION_BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!(
                Duration::from_secs_f64(*seconds).as_nanos(),
                u128::from(nanos)
            );
        }
    }

    #[test]
    fn counters_sum_every_threads_shard() {
        static COUNTERS: FixedCounters<3> = FixedCounters::new();
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        COUNTERS.add(t % 2, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let histogram = FixedHistogram::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| histogram.record(Duration::from_millis(2)));
            }
        });
        assert_eq!(histogram.totals().0[3], 4);
        let even = (SHARDS + 3).div_ceil(2) as u64 * 1000;
        let odd = (SHARDS + 3) as u64 / 2 * 1000;
        assert_eq!(
            [COUNTERS.get(0), COUNTERS.get(1), COUNTERS.get(2)],
            [even, odd, 0]
        );
        let mut out = String::new();
        render_counter(
            &mut out,
            "x_total",
            "help",
            (0..3).map(|i| ([("n", ["a", "b", "c"][i]), ("k", "v")], COUNTERS.get(i))),
        );
        assert_eq!(
            out,
            format!(
                "# HELP x_total help\n# TYPE x_total counter\n\
                 x_total{{n=\"a\",k=\"v\"}} {even}\nx_total{{n=\"b\",k=\"v\"}} {odd}\n\n"
            )
        );
        let values: [&[&str]; 3] = [&["a", "b"], &["x", "y", "z"], &["1", "2"]];
        let names = ["p", "q", "r"];
        assert_eq!(
            // a = 1 ("b"), b = 2 ("z"), c = 0 ("1").
            combination(names, values, 10),
            [("p", "b"), ("q", "z"), ("r", "1")]
        );
        assert_eq!(
            combination(names, values, 1),
            [("p", "a"), ("q", "x"), ("r", "2")]
        );
        let mut unlabelled = String::new();
        render_counter(&mut unlabelled, "y_total", "h", [([], 7)]);
        assert_eq!(
            unlabelled,
            "# HELP y_total h\n# TYPE y_total counter\ny_total 7\n\n"
        );
        let mut none = String::new();
        render_counter(&mut none, "z_total", "h", [([("n", "a")], 0)]);
        assert!(none.is_empty());
    }
}
