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
//!
//! Access lines wait in the buffer as compact records and are formatted
//! together when it is written out (the private `records` module); their
//! text is made by the `lines` module.

mod lines;
mod records;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use oci_http::access::{AccessLogWriter, AccessRecord};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};
use records::Pending;

/// Buffered bytes that trigger a write.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Installs the log subscriber per `[log]`. Hold the returned guard until
/// the process exits: dropping it writes what is still buffered.
pub fn init_logging(log: &LogConfig) -> Result<LogGuard, Box<dyn std::error::Error + Send + Sync>> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)?;
    records::anchor();
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

/// The access log's own writer: keeps an [`AccessRecord`] in the thread's
/// log buffer, formatted when the buffer is written out (see the module
/// docs) in the shape the `tracing` formatter gives any other event
/// (text, or one JSON object per line).
pub struct AccessLines {
    format: LogFormat,
    out: BufferedStderr,
}

impl AccessLogWriter for AccessLines {
    fn write(&self, r: &AccessRecord<'_>) {
        self.out.shared.with_local(|buffer| {
            buffer.push_record(self.format, r);
            if buffer.len() >= FLUSH_BYTES {
                flush(buffer);
            }
        });
    }
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
type Buffer = Arc<Mutex<Pending>>;

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
    fn with_local<R>(&self, f: impl FnOnce(&mut Pending) -> R) -> R {
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

/// Writes `buffer` to stderr (formatting its access records) and empties
/// it. Errors are dropped: there is nowhere left to report them.
fn flush(buffer: &mut Pending) {
    if buffer.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(buffer.text());
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
        self.shared.with_local(|buffer| buffer.push_text(bytes));
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
        assert_eq!(
            writer.shared.with_local(|b| b.text().to_vec()),
            b"quiet line\n"
        );
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
}
