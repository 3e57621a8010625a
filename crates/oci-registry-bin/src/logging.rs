//! Logging: the `tracing` subscriber per `[log]`, writing to stderr through
//! per-thread buffers.
//!
//! An access-log line per request written straight to stderr costs a
//! `write` system call per request, a large part of serving a small
//! request. Lines are instead appended to the logging thread's buffer and
//! written out together: when it holds [`FLUSH_BYTES`], every [`FLUSH_EVERY`] (a
//! thread of its own), at once for warnings and errors, and when the
//! [`LogGuard`] is dropped at exit. At most one flush interval of lines is
//! lost if the process is killed (`SIGKILL`); a graceful stop loses none.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use oci_http::access::{AccessLogWriter, AccessRecord};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// Buffered bytes that trigger a write.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Installs the log subscriber per `[log]`. Hold the returned guard until
/// the process exits: dropping it writes what is still buffered.
pub fn init_logging(log: &LogConfig) -> Result<LogGuard, Box<dyn std::error::Error + Send + Sync>> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)?;
    let writer = BufferedStderr::default();
    let guard = LogGuard::start(writer.clone());
    let lines = AccessLines {
        format: log.format,
        out: writer.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match log.format {
        LogFormat::Text => {
            // Colours only on a terminal: escape codes in a log file or a
            // collector's input are noise.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()?;
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()?,
    }
    // Access lines skip the generic event formatter (same fields, same
    // shape). Installed after the subscriber, whose filter it asks once; a
    // second call in one process keeps the first writer.
    let _ = oci_http::access::set_access_log_writer(Box::new(lines));
    Ok(guard)
}

/// The access log's own writer: formats an [`AccessRecord`] straight into
/// the thread's log buffer, in the shape the `tracing` formatter gives any other
/// event (text, or one JSON object per line).
pub struct AccessLines {
    format: LogFormat,
    out: BufferedStderr,
}

impl AccessLogWriter for AccessLines {
    fn write(&self, r: &AccessRecord<'_>) {
        self.out.shared.with_local(|buffer| {
            let _ = match self.format {
                LogFormat::Text => text_line(buffer, r),
                LogFormat::Json => json_line(buffer, r),
            };
            if buffer.len() >= FLUSH_BYTES {
                flush(buffer);
            }
        });
    }
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
fn address(out: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(v4) => {
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
fn text_line(out: &mut Vec<u8>, r: &AccessRecord<'_>) -> std::io::Result<()> {
    out.reserve(line_len(r));
    timestamp(out, r.finished);
    out.extend_from_slice(b"  INFO oci_http::access: request method=");
    out.extend_from_slice(r.method.as_str().as_bytes());
    out.extend_from_slice(b" path=");
    out.extend_from_slice(r.path.as_bytes());
    out.extend_from_slice(b" endpoint=\"");
    out.extend_from_slice(r.endpoint.as_bytes());
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
fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if !needs_escape(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
    } else {
        for b in text.bytes() {
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
fn json_line(out: &mut Vec<u8>, r: &AccessRecord<'_>) -> std::io::Result<()> {
    out.reserve(line_len(r));
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, r.finished);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
    out.extend_from_slice(r.method.as_str().as_bytes());
    out.extend_from_slice(b"\",\"path\":");
    serde_json::to_writer(&mut *out, r.path)?;
    out.extend_from_slice(b",\"endpoint\":\"");
    out.extend_from_slice(r.endpoint.as_bytes());
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
    serde_json::to_writer(&mut *out, r.user)?;
    out.extend_from_slice(b",\"user_agent\":");
    serde_json::to_writer(&mut *out, r.user_agent)?;
    out.extend_from_slice(b",\"request_id\":");
    serde_json::to_writer(&mut *out, r.request_id)?;
    out.extend_from_slice(b",\"target\":\"oci_http::access\"}\n");
    Ok(())
}

/// Room for one line: its fixed text and numbers, and its strings (twice,
/// for escapes), so a line is appended without growing the buffer midway.
fn line_len(r: &AccessRecord<'_>) -> usize {
    256 + 2 * (r.path.len() + r.user.len() + r.user_agent.len() + r.request_id.len())
}

/// Stderr behind per-thread buffers (see the module docs).
#[derive(Clone, Default)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// One buffer per thread that logged: a thread appends to its own
    /// without contending with the others (a contended lock parks the
    /// thread, a context switch per line); the flusher visits them all.
    buffers: Mutex<Vec<Buffer>>,
    /// Signalled to stop the flusher thread.
    stop: Condvar,
    stopped: Mutex<bool>,
}

/// A thread's buffer (locked by its thread, and by the flusher every
/// [`FLUSH_EVERY`]).
type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    /// This thread's buffer, and the [`Shared`] it belongs to.
    static LOCAL: std::cell::RefCell<Option<(usize, Buffer)>> = const { std::cell::RefCell::new(None) };
}

/// Locks `mutex`; a panic while holding a buffer leaves at worst a partial
/// line.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs `f` on this thread's buffer, registering one on first use.
    fn with_local<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let id = self as *const Shared as usize;
        LOCAL.with(|local| {
            let registered = matches!(&*local.borrow(), Some((owner, _)) if *owner == id);
            if !registered {
                let buffer = Buffer::default();
                lock(&self.buffers).push(Arc::clone(&buffer));
                *local.borrow_mut() = Some((id, buffer));
            }
            let local = local.borrow();
            let (_, buffer) = local.as_ref().expect("registered above");
            f(&mut lock(buffer))
        })
    }

    /// Writes out every thread's buffer, and forgets those of threads that
    /// ended (threads come and go: the blocking pool's, for one).
    fn flush_all(&self) {
        let mut buffers = lock(&self.buffers);
        for buffer in buffers.iter() {
            flush(&mut lock(buffer));
        }
        // Only the list holds the buffer of a thread that ended.
        buffers.retain(|buffer| Arc::strong_count(buffer) > 1);
    }
}

/// Writes `buffer` to stderr and empties it. Errors are dropped: there is
/// nowhere left to report them.
fn flush(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(buffer);
    let _ = stderr.flush();
    buffer.clear();
}

/// One event's writer: appends to the buffer, and writes it out when it
/// is full, or at once for a warning or an error.
pub struct EventWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.shared
            .with_local(|buffer| buffer.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        self.shared.with_local(|buffer| {
            if self.urgent || buffer.len() >= FLUSH_BYTES {
                flush(buffer);
            }
        });
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Keeps the flusher thread running; dropping it stops the thread and
/// writes what is buffered.
pub struct LogGuard {
    writer: BufferedStderr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogGuard {
    fn start(writer: BufferedStderr) -> LogGuard {
        let shared = Arc::clone(&writer.shared);
        let thread = std::thread::Builder::new()
            .name("oci-registry-log".into())
            .spawn(move || {
                let mut stopped = shared
                    .stopped
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                while !*stopped {
                    stopped = shared
                        .stop
                        .wait_timeout(stopped, FLUSH_EVERY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    shared.flush_all();
                }
            })
            .ok();
        LogGuard { writer, thread }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self
            .writer
            .shared
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.writer.shared.stop.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.writer.shared.flush_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_the_buffer_until_it_fills_or_is_urgent() {
        let writer = BufferedStderr::default();
        {
            let mut w = writer.make_writer();
            w.write_all(b"quiet line\n").unwrap();
        }
        assert_eq!(writer.shared.with_local(|b| b.clone()), b"quiet line\n");
        {
            let mut w = EventWriter {
                shared: &writer.shared,
                urgent: true,
            };
            w.write_all(b"an error\n").unwrap();
        }
        assert!(
            writer.shared.with_local(|b| b.is_empty()),
            "an error flushes"
        );
        {
            let mut w = writer.make_writer();
            w.write_all(&vec![b'x'; FLUSH_BYTES]).unwrap();
        }
        assert!(
            writer.shared.with_local(|b| b.is_empty()),
            "a full buffer flushes"
        );
    }

    #[test]
    fn the_flusher_empties_the_buffer_and_stops_with_the_guard() {
        let writer = BufferedStderr::default();
        let guard = LogGuard::start(writer.clone());
        writer.make_writer().write_all(b"later\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !writer.shared.with_local(|b| b.is_empty()) {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        writer.make_writer().write_all(b"at exit\n").unwrap();
        drop(guard);
        assert!(
            writer.shared.with_local(|b| b.is_empty()),
            "the guard flushes"
        );
    }

    /// A thread that logged and ended leaves no buffer behind once flushed.
    #[test]
    fn ended_threads_leave_no_buffer() {
        let writer = BufferedStderr::default();
        writer.make_writer().write_all(b"here\n").unwrap();
        let other = writer.clone();
        std::thread::spawn(move || other.make_writer().write_all(b"bye\n").unwrap())
            .join()
            .unwrap();
        assert_eq!(lock(&writer.shared.buffers).len(), 2);
        writer.shared.flush_all();
        assert_eq!(lock(&writer.shared.buffers).len(), 1);
    }

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
        let (mut text, mut json) = (Vec::new(), Vec::new());
        text_line(&mut text, &r).unwrap();
        json_line(&mut json, &r).unwrap();
        (text, json)
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
}
