//! Results: a table for people, JSON for tracking.

use serde::Serialize;

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput, requests per second.
    Higher,
    /// Latency, time, memory.
    Lower,
}

/// One measured figure, for ours and (when given) the peer.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload group (`push`, `pull`, `manifest GET`, ...).
    pub group: String,
    /// What was measured within the group.
    pub name: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// Every sample for ours (one per round).
    pub ours_samples: Vec<f64>,
    /// Every sample for the peer.
    pub peer_samples: Vec<f64>,
    /// Median of ours.
    pub ours: Option<f64>,
    /// Median of the peer.
    pub peer: Option<f64>,
    /// `ours / peer`.
    pub ratio: Option<f64>,
    /// Whether ours is at least as good as the peer.
    pub ahead: Option<bool>,
}

impl Row {
    /// A row from samples.
    pub fn new(
        group: &str,
        name: &str,
        unit: &'static str,
        better: Better,
        ours_samples: Vec<f64>,
        peer_samples: Vec<f64>,
    ) -> Self {
        let ours = median(&ours_samples);
        let peer = median(&peer_samples);
        let ratio = match (ours, peer) {
            (Some(o), Some(p)) if p != 0.0 => Some(o / p),
            _ => None,
        };
        let ahead = match (ours, peer) {
            (Some(o), Some(p)) => Some(match better {
                Better::Higher => o >= p,
                Better::Lower => o <= p,
            }),
            _ => None,
        };
        Self {
            group: group.to_owned(),
            name: name.to_owned(),
            unit,
            better,
            ours_samples,
            peer_samples,
            ours,
            peer,
            ratio,
            ahead,
        }
    }
}

/// The median of `samples` (mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    })
}

/// The whole run, as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Seconds since the Unix epoch when the run ended.
    pub unix_time: u64,
    /// Storage backend of ours.
    pub backend: String,
    /// Where the filesystem data lived.
    pub data_dir: String,
    /// Blob size in MiB.
    pub blob_mib: u64,
    /// Rounds of each measurement (medians are reported).
    pub rounds: usize,
    /// The peer, if any: what it is and where.
    pub peer: Option<String>,
    /// The load generator and its version.
    pub load_generator: String,
    /// The most CPU the load generator used in a request-rate run, in
    /// cores.
    pub loadgen_cores: Option<f64>,
    /// CPU cores of the machine.
    pub cores: usize,
    /// Every figure.
    pub rows: Vec<Row>,
}

fn format_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let with_peer = self.peer.is_some();
        let mut out = String::new();
        let name_width = self
            .rows
            .iter()
            .map(|r| r.name.len() + r.unit.len() + 5)
            .max()
            .unwrap_or(20);
        out.push_str(&format!(
            "{:<name_width$} {:>10}{}\n",
            "",
            "ours",
            if with_peer {
                format!(" {:>10} {:>10}", "peer", "ours/peer")
            } else {
                String::new()
            }
        ));
        let mut group = "";
        for row in &self.rows {
            if row.group != group {
                group = &row.group;
                out.push_str(&format!("{group}\n"));
            }
            let label = format!("  {} ({})", row.name, row.unit);
            out.push_str(&format!(
                "{label:<name_width$} {:>10}",
                format_value(row.ours)
            ));
            if with_peer {
                let mark = match row.ahead {
                    Some(true) => "",
                    Some(false) => "  behind",
                    None => "",
                };
                out.push_str(&format!(
                    " {:>10} {:>10}{mark}",
                    format_value(row.peer),
                    row.ratio.map_or("-".into(), |r| format!("{r:.2}x"))
                ));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn rows_compare_in_the_right_direction() {
        let fast = Row::new(
            "push",
            "x",
            "MB/s",
            Better::Higher,
            vec![200.0],
            vec![100.0],
        );
        assert_eq!(fast.ratio, Some(2.0));
        assert_eq!(fast.ahead, Some(true));
        let slow = Row::new("latency", "p99", "ms", Better::Lower, vec![2.0], vec![1.0]);
        assert_eq!(slow.ratio, Some(2.0));
        assert_eq!(slow.ahead, Some(false));
        let alone = Row::new("push", "x", "MB/s", Better::Higher, vec![1.0], vec![]);
        assert_eq!((alone.peer, alone.ratio, alone.ahead), (None, None, None));
    }

    #[test]
    fn the_table_shows_ratios_and_marks_figures_behind() {
        let report = Report {
            unix_time: 0,
            backend: "filesystem".into(),
            data_dir: "/tmp".into(),
            blob_mib: 1,
            rounds: 1,
            peer: Some("peer".into()),
            load_generator: "oha".into(),
            loadgen_cores: Some(0.5),
            cores: 2,
            rows: vec![
                Row::new(
                    "push",
                    "monolithic",
                    "MB/s",
                    Better::Higher,
                    vec![1000.0],
                    vec![250.0],
                ),
                Row::new(
                    "memory",
                    "peak RSS",
                    "MiB",
                    Better::Lower,
                    vec![30.0],
                    vec![20.0],
                ),
            ],
        };
        let table = report.table();
        assert!(table.contains("4.00x"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("peak RSS") && l.ends_with("behind")),
            "{table}"
        );
        assert!(
            !table
                .lines()
                .any(|l| l.contains("monolithic") && l.contains("behind"))
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["ratio"], 4.0);
        assert_eq!(json["rows"][1]["better"], "lower");
    }
}
