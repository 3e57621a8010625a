//! A thread's pending log output, with access records kept compact until
//! it is written out.
//!
//! Formatting an access line on the request's own path cost about 1,400
//! instructions and 80 instruction-cache misses a request (cachegrind, a
//! manifest GET by tag): the formatter's code evicted the request path's
//! and was evicted in turn. A request instead copies its record's numbers
//! and strings into the thread's buffer (a few hundred instructions), and
//! the records are formatted together, in order, when the buffer is
//! written out: one loop over many lines, with its code and tables hot.
//!
//! A record is a fixed header of numbers followed by its six strings:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | log format (0 text, 1 JSON) |
//! | 1 | remote address: 0 none, 4 IPv4, 6 IPv6 |
//! | 2 | status |
//! | 2 | remote port |
//! | 16 | remote address (an IPv4 one in the first 4) |
//! | 8 each | finished (nanoseconds after the process's [`anchor`]), duration (ns), bytes in, bytes out |
//! | 4 each | lengths of method, path, endpoint, user, user agent, request id |
//!
//! all in native byte order: records never leave the process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci_http::access::AccessRecord;

use super::lines::{Fields, json_line, text_line};
use crate::config::LogFormat;

/// Number of strings in a record.
const STRINGS: usize = 6;

/// The longest string a record holds, in bytes.
const MAX_STRING: usize = u32::MAX as usize;

/// Bytes of a record's header.
const HEADER: usize = 1 + 1 + 2 + 2 + 16 + 4 * 8 + STRINGS * 4;

/// The instant records count their `finished` time from: the first time
/// any record was made (or [`anchor`] called) in this process.
pub(super) fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

/// A thread's output waiting to be written: formatted text, then access
/// records not formatted yet (all of them later than the text).
#[derive(Debug, Default)]
pub(super) struct Pending {
    text: Vec<u8>,
    records: Vec<u8>,
}

impl Pending {
    /// Bytes held (text and records).
    pub(super) fn len(&self) -> usize {
        self.text.len() + self.records.len()
    }

    /// Whether nothing is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.text.is_empty() && self.records.is_empty()
    }

    /// Appends text formatted elsewhere (another event's line), after the
    /// records before it.
    pub(super) fn push_text(&mut self, bytes: &[u8]) {
        self.format_records();
        self.text.extend_from_slice(bytes);
    }

    /// Appends an access record, to be formatted as a line in `format`.
    pub(super) fn push_record(&mut self, format: LogFormat, r: &AccessRecord<'_>) {
        // A string longer than a length field holds is cut (none is: the
        // longest is the path, which hyper bounds far below that).
        let strings = [
            r.method.as_str(),
            r.path,
            r.endpoint,
            r.user,
            r.user_agent,
            r.request_id,
        ]
        .map(|s| &s.as_bytes()[..s.len().min(MAX_STRING)]);
        let (kind, port, ip) = match r.remote {
            None => (0u8, 0u16, [0u8; 16]),
            Some(SocketAddr::V4(a)) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&a.ip().octets());
                (4, a.port(), ip)
            }
            Some(SocketAddr::V6(a)) => (6, a.port(), a.ip().octets()),
        };
        let since = r.finished.saturating_duration_since(anchor());
        let mut header = [0u8; HEADER];
        header[0] = match format {
            LogFormat::Text => 0,
            LogFormat::Json => 1,
        };
        header[1] = kind;
        header[2..4].copy_from_slice(&r.status.to_ne_bytes());
        header[4..6].copy_from_slice(&port.to_ne_bytes());
        header[6..22].copy_from_slice(&ip);
        let numbers = [nanos(since), nanos(r.duration), r.bytes_in, r.bytes_out];
        for (slot, n) in header[22..54].chunks_exact_mut(8).zip(numbers) {
            slot.copy_from_slice(&n.to_ne_bytes());
        }
        for (slot, s) in header[54..].chunks_exact_mut(4).zip(strings) {
            // Fits: cut to MAX_STRING above.
            let len = s.len() as u32;
            slot.copy_from_slice(&len.to_ne_bytes());
        }
        let total: usize = strings.iter().map(|s| s.len()).sum();
        self.records.reserve(HEADER + total);
        self.records.extend_from_slice(&header);
        for s in strings {
            self.records.extend_from_slice(s);
        }
    }

    /// Formats the waiting records into the text, in order.
    fn format_records(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let mut rest = &self.records[..];
        while let Some((format, fields, after)) = decode(rest) {
            let _ = match format {
                LogFormat::Text => text_line(&mut self.text, &fields),
                LogFormat::Json => json_line(&mut self.text, &fields),
            };
            rest = after;
        }
        self.records.clear();
    }

    /// Everything waiting, formatted, for writing out; then [`Pending::clear`].
    pub(super) fn text(&mut self) -> &[u8] {
        self.format_records();
        &self.text
    }

    /// Forgets what was written out.
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.records.clear();
    }
}

/// Whole nanoseconds of `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The first record of `bytes`, and the bytes after it; `None` at the end
/// (or on a record cut short, which [`Pending::push_record`] never
/// writes).
fn decode(bytes: &[u8]) -> Option<(LogFormat, Fields<'_>, &[u8])> {
    let header = bytes.get(..HEADER)?;
    let u16_at = |i: usize| u16::from_ne_bytes([header[i], header[i + 1]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i..i + 8]);
        u64::from_ne_bytes(b)
    };
    let format = if header[0] == 1 {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let port = u16_at(4);
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&header[6..22]);
    let remote = match header[1] {
        4 => {
            let v4 = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
            Some(SocketAddr::new(IpAddr::V4(v4), port))
        }
        6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        _ => None,
    };
    let mut strings: [&[u8]; STRINGS] = [&[]; STRINGS];
    let mut rest = &bytes[HEADER..];
    for (i, s) in strings.iter_mut().enumerate() {
        let at = 54 + 4 * i;
        let len = u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        (*s, rest) = rest.split_at_checked(usize::try_from(len).ok()?)?;
    }
    let [method, path, endpoint, user, user_agent, request_id] = strings;
    let fields = Fields {
        finished: anchor() + Duration::from_nanos(u64_at(22)),
        method,
        path,
        endpoint,
        status: u16_at(2),
        bytes_in: u64_at(38),
        bytes_out: u64_at(46),
        duration: Duration::from_nanos(u64_at(30)),
        remote,
        user,
        user_agent,
        request_id,
    };
    Some((format, fields, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user_agent: &str) -> (Vec<u8>, Vec<u8>) {
        record_from(user_agent, "127.0.0.1:4000")
    }

    fn record_from(user_agent: &str, remote: &str) -> (Vec<u8>, Vec<u8>) {
        let method = axum::http::Method::GET;
        let r = AccessRecord {
            method: &method,
            path: "/v2/a/b/manifests/v1",
            endpoint: "manifest",
            status: 200,
            bytes_in: 0,
            bytes_out: 512,
            duration: Duration::from_micros(1_234),
            finished: Instant::now(),
            remote: Some(remote.parse().unwrap()),
            user: "al\"ice",
            user_agent,
            request_id: "id-1",
        };
        let line = |format| {
            let mut pending = Pending::default();
            pending.push_record(format, &r);
            pending.text().to_vec()
        };
        (line(LogFormat::Text), line(LogFormat::Json))
    }

    #[test]
    fn access_lines_have_every_field() {
        let (text, json) = record(r#"evil "agent" \ x"#);
        let text = String::from_utf8(text).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        for field in [
            "INFO oci_http::access: request method=GET path=/v2/a/b/manifests/v1",
            "endpoint=\"manifest\" status=200 bytes_in=0 bytes_out=512 duration_ms=1.234",
            "remote=127.0.0.1:4000 user=\"al\\\"ice\"",
            r#"user_agent="evil \"agent\" \\ x""#,
            "request_id=\"id-1\"",
        ] {
            assert!(text.contains(field), "{field:?} not in {text}");
        }
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["target"], "oci_http::access");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["user_agent"], r#"evil "agent" \ x"#);
        assert_eq!(value["duration_ms"], 1.234);
        assert_eq!(value["bytes_out"], 512);
        assert_eq!(value["remote"], "127.0.0.1:4000");
        assert_eq!(value["user"], "al\"ice");
        assert!(value["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn ipv6_remotes_and_plain_agents_are_written_whole() {
        for (remote, octets) in [
            ("0.9.10.255:0", "0.9.10.255:0"),
            ("100.20.3.199:65535", "100.20.3.199:65535"),
            ("255.255.255.255:1", "255.255.255.255:1"),
        ] {
            let (text, _) = record_from("-", remote);
            let text = String::from_utf8(text).unwrap();
            assert!(text.contains(&format!("remote={octets} ")), "{text}");
        }
        let (text, json) = record_from("curl/8.5.0", "[::1]:4000");
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(r#"remote=[::1]:4000 user="al\"ice" user_agent="curl/8.5.0""#),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["remote"], "[::1]:4000");
        assert_eq!(value["user_agent"], "curl/8.5.0");
        assert_eq!(value["path"], "/v2/a/b/manifests/v1");
    }

    #[test]
    fn records_are_formatted_in_order_among_other_lines() {
        let method = axum::http::Method::PUT;
        let start = Instant::now();
        let record = |n: u64| AccessRecord {
            method: &method,
            path: "/v2/x/blobs/uploads/1",
            endpoint: "upload",
            status: 201,
            bytes_in: n,
            bytes_out: 0,
            duration: Duration::from_nanos(n),
            finished: start + Duration::from_millis(n),
            remote: None,
            user: "-",
            user_agent: "-",
            request_id: "r",
        };
        let mut pending = Pending::default();
        pending.push_text(b"first\n");
        pending.push_record(LogFormat::Text, &record(1));
        pending.push_record(LogFormat::Json, &record(2));
        pending.push_text(b"between\n");
        pending.push_record(LogFormat::Text, &record(3));
        assert!(!pending.is_empty());
        let text = String::from_utf8(pending.text().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "first");
        assert!(lines[1].contains("bytes_in=1 ") && lines[1].contains("remote=- "));
        let json: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(json["bytes_in"], 2);
        assert_eq!(json["method"], "PUT");
        assert_eq!(lines[3], "between");
        assert!(lines[4].contains("bytes_in=3 ") && lines[4].contains("status=201"));
        // The time each finished survives the record: 1 ms apart.
        let at = |line: &str| humantime::parse_rfc3339(line.split(' ').next().unwrap()).unwrap();
        let gap = at(lines[4]).duration_since(at(lines[1])).unwrap();
        assert!(
            gap.abs_diff(Duration::from_millis(2)) < Duration::from_micros(2),
            "{gap:?}"
        );
        pending.clear();
        assert!(pending.is_empty() && pending.text().is_empty());
    }
}
