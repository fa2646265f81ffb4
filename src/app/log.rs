//! Logging setup and the log sink.
//!
//! Setup contract ([`init`]): the filter is `-v`/`-q` if given, else `EXOPROXY_LOG`, else the
//! configured level (the README's precedence: command line > environment > file > defaults). A filter
//! that names no level (`verbose`, which `EnvFilter` would read as a target and so log almost nothing)
//! is an error, never a silent fallback. Colour codes only when stderr is a terminal.
//!
//! The log sink: formatted tracing lines go to stderr through one writer thread, so a request never
//! waits for the console or the disk, and a burst of lines becomes one write instead of one per line
//! (at debug level the proxy logs one line per request; at load that write was a tenth of its system
//! calls).
//!
//! Contract:
//! - Logging never stalls the proxy: when the queue is full (stderr is a pipe nobody reads, or a
//!   Windows console paused by QuickEdit text selection), new lines are dropped and counted, and the
//!   logging thread goes on at once. Once the writer gets through again it writes one line saying how
//!   many were dropped ([`dropped_notice`]). Blocking instead froze every request, token renewal
//!   included, after a few thousand lines.
//! - The lines that are written keep their order: one queue, one writer.
//! - [`LogGuard::drop`] flushes: every line queued before the guard is dropped is written before
//!   `main` returns (bounded by [`FLUSH_TIMEOUT`], so a stuck console cannot hang the exit). A
//!   process killed outright (SIGKILL) loses at most the lines still queued.
//! - When the writer thread cannot start, lines are written directly, as an unbuffered writer would.
//!
//! The log file ([`init_with`], [`file_wanted`]): `run` writes to a file instead of stderr when
//! `[log] file` asks for one, and by default when there is no console to write to (Windows: no
//! console window, as when started at logon; never by default on Unix, where a service manager
//! collects stderr). The file sits behind the same queue and writer thread, so the contract above
//! holds for it too. It is rotated daily (`exoproxy.YYYY-MM-DD.log`, UTC dates) by
//! `tracing-appender`, which also deletes the oldest beyond [`KEEP_FILES`] at start and at each
//! rotation; its folder is created owner-only (the lines name accounts and hosts). stderr gets one
//! line naming the file, and the start line names it too ([`current_file`]).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFile;

/// The environment variable that sets the filter when no `-v`/`-q` is given.
pub const LOG_ENV: &str = "EXOPROXY_LOG";

/// The level names a filter directive may use.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Installs the stderr logger with the filter [`choose_filter`] picks from `flag` (`-v`/`-q`),
/// `EXOPROXY_LOG` and `configured`. Keep the guard until `main` returns: dropping it writes what is
/// still queued. An invalid filter is an error for the caller to report (exit code 2).
pub fn init(flag: Option<&str>, configured: &str) -> Result<LogGuard, String> {
    init_with(flag, configured, None)
}

/// As [`init`], but into the rotated log `file` when given (see the module docs), saying so on
/// stderr. An unusable folder is an error for the caller to report.
pub fn init_with(
    flag: Option<&str>,
    configured: &str,
    file: Option<&Path>,
) -> Result<LogGuard, String> {
    let env = std::env::var(LOG_ENV).ok();
    let filter = choose_filter(flag, env.as_deref(), configured)?;
    let (sink, guard) = match file {
        Some(file) => {
            let (appender, current) = open_rotating(file, KEEP_FILES)?;
            eprintln!("exoproxy: logging to {}", current.display());
            let _ = CURRENT_FILE.set(current);
            LogSink::start(appender)
        }
        None => LogSink::start(std::io::stderr()),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(file.is_none() && std::io::stderr().is_terminal())
        .with_writer(sink)
        .try_init();
    Ok(guard)
}

/// Rotated log files kept: a week of daily files.
pub const KEEP_FILES: usize = 7;

/// The file [`init_with`] opened at start, for the start line; `None` when logging to stderr.
static CURRENT_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The log file named at start, if the log goes to a file.
pub fn current_file() -> Option<&'static Path> {
    CURRENT_FILE.get().map(PathBuf::as_path)
}

/// The file `run` should log to for this `[log] file` setting: the configured one, or by default
/// the state dir's `logs/` when there is no console.
pub fn file_wanted(setting: &LogFile) -> Option<&Path> {
    match setting {
        LogFile::At(path) => Some(path),
        LogFile::Auto(path) => no_console().then_some(path.as_path()),
        LogFile::Off => None,
    }
}

/// True when no console shows stderr and nobody captures it: on Windows, a process without a
/// console window (started at logon, or detached) whose stderr is not redirected to a file or pipe
/// (a redirected stderr is someone's log already, as in the Wine stage of the suite). Unix: never,
/// so piped stderr (service managers, the test suite) stays stderr.
#[cfg(windows)]
#[allow(unsafe_code)] // a documented OS call without arguments: GetConsoleWindow
fn no_console() -> bool {
    use std::io::IsTerminal;
    use std::os::windows::io::AsRawHandle;
    // SAFETY: GetConsoleWindow takes no arguments and only returns a handle (null when none).
    let windowless = unsafe { windows_sys::Win32::System::Console::GetConsoleWindow() }.is_null();
    let stderr = std::io::stderr();
    let handle = stderr.as_raw_handle();
    let captured = !stderr.is_terminal() && !handle.is_null() && handle as isize != -1;
    windowless && !captured
}

#[cfg(not(windows))]
fn no_console() -> bool {
    false
}

/// Opens the daily-rotated appender for `file` (`dir/stem.ext` becomes `dir/stem.YYYY-MM-DD.ext`),
/// deleting the oldest beyond `keep`; returns it and today's file.
fn open_rotating(
    file: &Path,
    keep: usize,
) -> Result<(tracing_appender::rolling::RollingFileAppender, PathBuf), String> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = file
        .file_stem()
        .map_or("exoproxy".into(), |s| s.to_string_lossy().into_owned());
    let ext = file.extension().map(|e| e.to_string_lossy().into_owned());
    let failed =
        |e: &dyn std::fmt::Display| format!("cannot open the log file in {}: {e}", dir.display());
    crate::platform::private_dir(dir).map_err(|e| failed(&e))?;
    let mut builder = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(&stem)
        .max_log_files(keep);
    if let Some(ext) = &ext {
        builder = builder.filename_suffix(ext);
    }
    let appender = builder.build(dir).map_err(|e| failed(&e))?;
    let today = time::OffsetDateTime::now_utc().date();
    let name = format!(
        "{stem}.{:04}-{:02}-{:02}{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        ext.map_or(String::new(), |e| format!(".{e}"))
    );
    Ok((appender, dir.join(name)))
}

/// The filter by precedence: `flag`, else `env` (unset or empty counts as absent), else `configured`.
pub fn choose_filter(
    flag: Option<&str>,
    env: Option<&str>,
    configured: &str,
) -> Result<EnvFilter, String> {
    if let Some(level) = flag {
        return parse_filter(level);
    }
    match env.filter(|v| !v.trim().is_empty()) {
        Some(text) => parse_filter(text).map_err(|e| format!("{LOG_ENV}={text:?}: {e}")),
        None => parse_filter(configured).map_err(|e| format!("log level {configured:?}: {e}")),
    }
}

/// Parses a filter such as `info` or `exoproxy=debug,hyper=warn`: each comma-separated directive is a
/// level or `TARGET=LEVEL`.
pub fn parse_filter(text: &str) -> Result<EnvFilter, String> {
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "{directive:?} names no level: write one of {} or TARGET=LEVEL (e.g. exoproxy=debug)",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(text).map_err(|e| format!("invalid log filter: {e}"))
}

/// Lines waiting for the writer thread; beyond this, new lines are dropped (a few hundred KiB).
const QUEUE_LINES: usize = 4096;

/// Bytes gathered into one write at most.
const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer lets lines gather after the first one: at load, one wake-up and one write per
/// window instead of one per line (waking the writer for every line cost more than the write).
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Longest wait for the writer at exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// Where tracing writes: hands each finished line to the writer thread.
#[derive(Debug, Clone)]
pub struct LogSink {
    /// `None` when the writer thread could not start: lines go straight to stderr.
    queue: Option<Queue>,
}

/// The bounded queue to the writer thread, and the count of lines it had no room for.
#[derive(Debug, Clone)]
struct Queue {
    lines: SyncSender<Msg>,
    /// Dropped since the writer last reported; the writer takes it to zero when it reports.
    dropped: Arc<AtomicU64>,
}

/// Flushes the sink when dropped; keep it alive for the life of `main`.
#[derive(Debug)]
pub struct LogGuard {
    sink: LogSink,
}

/// One event's bytes, sent as one line when tracing drops the writer.
#[derive(Debug)]
pub struct LineWriter<'a> {
    line: Vec<u8>,
    queue: Option<&'a Queue>,
}

impl LogSink {
    /// Starts the writer thread over `out` (stderr in the binary, a buffer in tests).
    pub fn start(out: impl Write + Send + 'static) -> (LogSink, LogGuard) {
        Self::start_with_capacity(out, QUEUE_LINES)
    }

    fn start_with_capacity(out: impl Write + Send + 'static, lines: usize) -> (LogSink, LogGuard) {
        let (tx, rx) = mpsc::sync_channel(lines);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("exoproxy-log".into())
            .spawn(move || write_batches(rx, out, &counted));
        let sink = LogSink {
            queue: spawned.is_ok().then_some(Queue { lines: tx, dropped }),
        };
        (sink.clone(), LogGuard { sink })
    }

    /// Waits (at most `timeout`) until every line queued so far is written; false on timeout.
    /// Never blocks longer: a full queue is retried until the deadline, not waited on.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (done, written) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(done);
        loop {
            match queue.lines.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            line: Vec::with_capacity(256),
            queue: self.queue.as_ref(),
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        let unsent = match self.queue {
            Some(queue) => match queue.lines.try_send(Msg::Line(line)) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    queue.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(TrySendError::Disconnected(Msg::Line(line))) => line,
                Err(TrySendError::Disconnected(_)) => return,
            },
            None => line,
        };
        // The writer thread is gone (or never started): write it ourselves rather than lose it.
        let _ = std::io::stderr().write_all(&unsent);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if !self.sink.flush(FLUSH_TIMEOUT) {
            // stderr is what is stuck: write the warning from a thread and wait for it only
            // briefly, or the exit would hang on the very console that made the flush fail.
            let (done, written) = mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new().spawn(move || {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: some log lines were not written"
                );
                let _ = done.send(());
            });
            if spawned.is_ok() {
                let _ = written.recv_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// The line written in place of `count` lines the queue had no room for.
pub fn dropped_notice(count: u64) -> String {
    format!("exoproxy: {count} log lines dropped: the log output was not being read\n")
}

/// The writer thread: waits for a line, lets more gather for [`BATCH_WINDOW`], takes what is queued
/// (up to [`BATCH_BYTES`]), writes it in one go, then answers the flushes queued behind those lines.
/// Lines are dropped only while the queue is full, so a drop is always followed by a batch: the
/// notice goes out right after the batch during which the count grew.
fn write_batches(queue: Receiver<Msg>, mut out: impl Write, dropped: &AtomicU64) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut flushed = Vec::new();
    while let Ok(first) = queue.recv() {
        if matches!(first, Msg::Line(_)) {
            std::thread::sleep(BATCH_WINDOW);
        }
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => batch.extend_from_slice(&line),
                Msg::Flush(done) => flushed.push(done),
            }
            next = match batch.len() < BATCH_BYTES {
                true => queue.try_recv().ok(),
                false => None,
            };
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            batch.extend_from_slice(dropped_notice(lost).as_bytes());
        }
        // A failing console cannot be reported anywhere better; the lines are dropped.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` that records every write call, to see both the bytes and the batching.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn text(&self) -> String {
            let writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&writes.concat()).into_owned()
        }
    }

    fn log_line(sink: &LogSink, text: &str) {
        let mut w = sink.make_writer();
        let _ = w.write_all(text.as_bytes());
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_per_thread_order() {
        let out = Recorder::default();
        // Room for every line: this test is about order and batching, not about a full queue.
        let (sink, guard) = LogSink::start_with_capacity(out.clone(), 8_000);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        log_line(&sink, &format!("t{t} line {i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().ok();
        }
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 8_000, "every line is written");
        for t in 0..4 {
            let own: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("t{t} line ")))
                .map(|n| n.parse().unwrap_or(usize::MAX))
                .collect();
            assert_eq!(own, (0..2_000).collect::<Vec<_>>(), "thread {t} in order");
        }
        let writes = out.0.lock().map(|w| w.len()).unwrap_or(0);
        assert!(
            writes < 8_000,
            "a burst is batched ({writes} writes for 8000 lines)"
        );
    }

    #[test]
    fn flush_returns_after_everything_queued_before_it_is_written() {
        let out = Recorder::default();
        let (sink, _guard) = LogSink::start(out.clone());
        for i in 0..100 {
            log_line(&sink, &format!("{i}\n"));
        }
        assert!(sink.flush(FLUSH_TIMEOUT));
        assert_eq!(out.text().lines().last(), Some("99"));
    }

    /// A console that stalls: the first write blocks until the test opens the gate.
    #[derive(Clone)]
    struct Stalled {
        out: Recorder,
        entered: Arc<(Mutex<bool>, std::sync::Condvar)>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (entered, cv) = &*self.entered;
            *entered.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
            drop(self.gate.lock().unwrap_or_else(|e| e.into_inner()));
            self.out.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_drops_lines_without_blocking_and_reports_how_many() {
        let out = Recorder::default();
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap_or_else(|e| e.into_inner());
        let stalled = Stalled {
            out: out.clone(),
            entered: Arc::default(),
            gate: gate.clone(),
        };
        let (sink, guard) = LogSink::start_with_capacity(stalled.clone(), 8);
        log_line(&sink, "first\n");
        {
            let (entered, cv) = &*stalled.entered;
            let mut writing = entered.lock().unwrap_or_else(|e| e.into_inner());
            while !*writing {
                writing = cv.wait(writing).unwrap_or_else(|e| e.into_inner());
            }
        }
        // The writer is stuck in its first write: 8 lines fit in the queue, 100 do not, and none
        // of the 108 calls waits.
        let started = Instant::now();
        for i in 0..108 {
            log_line(&sink, &format!("line {i}\n"));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "logging waited");
        assert!(!sink.flush(Duration::from_millis(50)), "flush is bounded");
        drop(closed);
        drop(guard);
        let text = out.text();
        let mut expected = vec!["first".to_string()];
        expected.extend((0..8).map(|i| format!("line {i}")));
        expected.push(dropped_notice(100).trim_end().to_string());
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn the_dropped_notice_says_how_many_and_why() {
        assert_eq!(
            dropped_notice(1234),
            "exoproxy: 1234 log lines dropped: the log output was not being read\n"
        );
    }

    #[test]
    fn the_flag_beats_the_environment_which_beats_the_file() {
        let chosen = |flag, env, file| choose_filter(flag, env, file).map(|f| f.to_string());
        assert_eq!(
            chosen(Some("debug"), Some("error"), "info"),
            Ok("debug".into())
        );
        assert_eq!(chosen(None, Some("error"), "info"), Ok("error".into()));
        assert_eq!(chosen(None, Some(" "), "warn"), Ok("warn".into()));
        assert_eq!(
            chosen(None, None, "exoproxy=debug"),
            Ok("exoproxy=debug".into())
        );
    }

    #[test]
    fn a_filter_without_a_level_is_an_error_that_names_the_source() {
        let env = choose_filter(None, Some("verbose"), "info").map(|f| f.to_string());
        let env = env.expect_err("EXOPROXY_LOG=verbose is refused");
        assert!(env.contains("EXOPROXY_LOG=\"verbose\""), "{env}");
        assert!(env.contains("TARGET=LEVEL"), "{env}");
        let file = choose_filter(None, None, "info,loud").map(|f| f.to_string());
        assert!(file.expect_err("refused").contains("log level"));
        assert!(parse_filter("exoproxy=LOUD").is_err());
        assert!(parse_filter("exoproxy").is_err());
        assert!(parse_filter("INFO,exoproxy::route=trace").is_ok());
    }

    #[test]
    fn an_empty_event_writes_nothing() {
        let out = Recorder::default();
        let (sink, guard) = LogSink::start(out.clone());
        drop(sink.make_writer());
        drop(guard);
        assert_eq!(out.text(), "");
    }
}
