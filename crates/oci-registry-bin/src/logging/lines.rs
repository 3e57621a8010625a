//! Access-log lines formatted from a finished request's fields, in the
//! shape the `tracing` formatter gives any other event: text, or one JSON
//! object per line.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// One finished request's fields, as its line shows them (decoded from a
/// [`super::records`] record). The strings are the UTF-8 bytes of the
/// record's `&str`s: text lines copy them as they are, JSON lines check
/// them again to escape them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields<'a> {
    /// When the response body ended.
    pub finished: Instant,
    pub method: &'a [u8],
    /// Without the query string.
    pub path: &'a [u8],
    pub endpoint: &'a [u8],
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub remote: Option<SocketAddr>,
    pub user: &'a [u8],
    pub user_agent: &'a [u8],
    pub request_id: &'a [u8],
}

/// Appends an integer.
fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The last `N` decimal digits of `n`, zero-padded (`N` at most 20).
fn digits<const N: usize>(mut n: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// Appends milliseconds with three decimals, from whole microseconds.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    int(out, micros / 1000);
    out.push(b'.');
    out.extend_from_slice(&digits::<3>(micros % 1000));
}

/// The second a thread last wrote a timestamp in: when it began, as an
/// [`Instant`], and its text (`2026-11-30T07:43:32`).
#[derive(Clone, Copy)]
struct Second {
    began: Instant,
    text: [u8; 19],
}

thread_local! {
    /// This thread's last [`Second`]: the date changes once a second, lines
    /// come thousands of times a second.
    static SECOND: std::cell::Cell<Option<Second>> = const { std::cell::Cell::new(None) };
}

/// Appends the wall-clock time of `at` as RFC 3339 with microseconds, as
/// the `tracing` formatter writes it (`2026-11-30T07:43:32.222305Z`).
///
/// The wall clock is read once a second per thread: within a second, the
/// time is that second's start plus the monotonic time since (the two
/// clocks drift apart by microseconds a second at most; a step of the
/// wall clock shows within a second).
fn timestamp(out: &mut Vec<u8>, at: Instant) {
    let cached = SECOND.get().and_then(|second| {
        let into = at.checked_duration_since(second.began)?;
        (into < Duration::from_secs(1)).then_some((second, into))
    });
    let (second, into) = match cached {
        Some(found) => found,
        None => {
            let (now, monotonic) = (SystemTime::now(), Instant::now());
            let wall = match at.checked_duration_since(monotonic) {
                Some(ahead) => now.checked_add(ahead),
                None => now.checked_sub(monotonic.duration_since(at)),
            }
            .unwrap_or(now);
            let since = wall
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let into = Duration::from_nanos(u64::from(since.subsec_nanos()));
            let began = at.checked_sub(into).unwrap_or(at);
            let mut text = [b'0'; 19];
            let formatted = humantime::format_rfc3339_seconds(wall).to_string();
            if let Some(prefix) = formatted.as_bytes().get(..19) {
                text.copy_from_slice(prefix);
            }
            let second = Second { began, text };
            SECOND.set(Some(second));
            (second, into)
        }
    };
    out.extend_from_slice(&second.text);
    out.push(b'.');
    out.extend_from_slice(&digits::<6>(u64::from(into.subsec_micros())));
    out.push(b'Z');
}

/// Every octet's decimal digits (padded with zeros to three) and their
/// count.
const OCTETS: [([u8; 3], usize); 256] = {
    let mut table = [([0u8; 3], 0); 256];
    let mut n = 0;
    while n < 256 {
        let len = if n >= 100 {
            3
        } else if n >= 10 {
            2
        } else {
            1
        };
        let digits = [(n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8];
        let mut text = [0u8; 3];
        let mut i = 0;
        while i < len {
            text[i] = b'0' + digits[3 - len + i];
            i += 1;
        }
        table[n] = (text, len);
        n += 1;
    }
    table
};

/// Appends a socket address (IPv4 from a table of octets: no formatting
/// machinery, one copy).
fn address(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            // `255.255.255.255:`, and room to copy three bytes at the end.
            let mut text = [0u8; 19];
            let mut len = 0;
            for octet in v4.ip().octets() {
                let (digits, n) = OCTETS[usize::from(octet)];
                text[len..len + 3].copy_from_slice(&digits);
                text[len + n] = b'.';
                len += n + 1;
            }
            text[len - 1] = b':';
            out.extend_from_slice(&text[..len]);
            int(out, v4.port());
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `2026-11-30T07:43:32.222305Z  INFO oci_http::access: request method=GET
/// path=/v2/... endpoint="manifest" status=200 ...`
pub(super) fn text_line(out: &mut Vec<u8>, r: &Fields<'_>) -> std::io::Result<()> {
    out.reserve(line_len(r));
    timestamp(out, r.finished);
    out.extend_from_slice(b"  INFO oci_http::access: request method=");
    out.extend_from_slice(r.method);
    out.extend_from_slice(b" path=");
    out.extend_from_slice(r.path);
    out.extend_from_slice(b" endpoint=\"");
    out.extend_from_slice(r.endpoint);
    out.extend_from_slice(b"\" status=");
    int(out, r.status);
    out.extend_from_slice(b" bytes_in=");
    int(out, r.bytes_in);
    out.extend_from_slice(b" bytes_out=");
    int(out, r.bytes_out);
    out.extend_from_slice(b" duration_ms=");
    millis(out, r.duration);
    out.extend_from_slice(b" remote=");
    match r.remote {
        Some(addr) => address(out, addr),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" user=");
    quoted(out, r.user);
    out.extend_from_slice(b" user_agent=");
    quoted(out, r.user_agent);
    out.extend_from_slice(b" request_id=");
    quoted(out, r.request_id);
    out.push(b'\n');
    Ok(())
}

/// `text` in double quotes, with `"` and `\` escaped (what `{:?}` does for
/// the visible ASCII a header value holds). Most texts (user agents,
/// request ids) need no escape and are copied whole.
fn quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    if !needs_escape(text) {
        out.extend_from_slice(text);
    } else {
        for &b in text {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out.push(b'"');
}

/// Whether `text` holds a `"` or a `\`, eight bytes at a time (a word
/// holds byte `b` if `word ^ (b * LOW)` has a zero byte; the classic test
/// for one is exact on whether there is one).
fn needs_escape(text: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |word: u64| word.wrapping_sub(LOW) & !word & HIGH != 0;
    let mut words = text.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_zero_byte(word ^ (LOW * u64::from(b'"')))
            || has_zero_byte(word ^ (LOW * u64::from(b'\\')))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'"' || b == b'\\')
}

/// One JSON object, the fields at the top level as the JSON formatter
/// writes them.
pub(super) fn json_line(out: &mut Vec<u8>, r: &Fields<'_>) -> std::io::Result<()> {
    out.reserve(line_len(r));
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, r.finished);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
    out.extend_from_slice(r.method);
    out.extend_from_slice(b"\",\"path\":");
    serde_json::to_writer(&mut *out, utf8(r.path))?;
    out.extend_from_slice(b",\"endpoint\":\"");
    out.extend_from_slice(r.endpoint);
    out.extend_from_slice(b"\",\"status\":");
    int(out, r.status);
    out.extend_from_slice(b",\"bytes_in\":");
    int(out, r.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    int(out, r.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, r.duration);
    out.extend_from_slice(b",\"remote\":\"");
    match r.remote {
        Some(addr) => address(out, addr),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"\",\"user\":");
    serde_json::to_writer(&mut *out, utf8(r.user))?;
    out.extend_from_slice(b",\"user_agent\":");
    serde_json::to_writer(&mut *out, utf8(r.user_agent))?;
    out.extend_from_slice(b",\"request_id\":");
    serde_json::to_writer(&mut *out, utf8(r.request_id))?;
    out.extend_from_slice(b",\"target\":\"oci_http::access\"}\n");
    Ok(())
}

/// `bytes` as the `&str` they were recorded from.
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("-")
}

/// Room for one line: its fixed text and numbers, and its strings (twice,
/// for escapes), so a line is appended without growing the buffer midway.
fn line_len(r: &Fields<'_>) -> usize {
    256 + 2 * (r.path.len() + r.user.len() + r.user_agent.len() + r.request_id.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time of a line, as written and as `SystemTime`.
    fn written(at: Instant) -> (String, SystemTime) {
        let mut out = Vec::new();
        timestamp(&mut out, at);
        let text = String::from_utf8(out).unwrap();
        let parsed = humantime::parse_rfc3339(&text).unwrap();
        (text, parsed)
    }

    #[test]
    fn timestamps_follow_the_wall_clock_across_seconds() {
        let distance = |a: SystemTime, b: SystemTime| {
            a.duration_since(b)
                .unwrap_or_else(|e| e.duration())
                .as_secs_f64()
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let (text, first) = written(now);
        assert_eq!(text.len(), "2026-11-30T07:43:32.222305Z".len(), "{text}");
        assert!(distance(first, wall) < 0.01, "{text}");
        // Within the cached second, past its end, and back before it: each
        // the first time plus the monotonic time between.
        for offset in [0.3, 0.9, 1.2, 2.7, 0.1] {
            let at = now + Duration::from_secs_f64(offset);
            let (text, time) = written(at);
            let expected = first + Duration::from_secs_f64(offset);
            assert!(distance(time, expected) < 0.01, "{offset}: {text}");
        }
    }

    #[test]
    fn escapes_are_found_at_every_position_among_every_byte() {
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let naive = text.iter().any(|&b| b == b'"' || b == b'\\');
                    assert_eq!(needs_escape(&text), naive, "{byte} at {at} of {len}");
                }
            }
        }
        // Bytes next to the two in value, and high bytes, are not them.
        assert!(!needs_escape(b"!#[]\x80\xff!#[]]\x80\xff"));
        assert!(needs_escape(b"abcdefgh\\"));
    }

    #[test]
    fn digits_are_zero_padded_and_cut() {
        assert_eq!(&digits::<6>(42), b"000042");
        assert_eq!(&digits::<3>(999), b"999");
        assert_eq!(&digits::<3>(1234), b"234");
        let mut out = Vec::new();
        millis(&mut out, Duration::from_micros(12_003_045));
        assert_eq!(out, b"12003.045");
    }
}
