//! The log sink: formatted tracing lines go to stderr through one writer thread, so a request never
//! waits for the console or the disk, and a burst of lines becomes one write instead of one per line
//! (the proxy logs one line per request; at load that write was a tenth of its system calls).
//!
//! Contract:
//! - Nothing is dropped: when the queue is full (a stalled console), the logging thread waits for
//!   room, which slows requests rather than losing lines.
//! - Lines keep their order: one queue, one writer.
//! - [`LogGuard::drop`] flushes: every line logged before the guard is dropped is written before
//!   `main` returns (bounded by [`FLUSH_TIMEOUT`], so a stuck console cannot hang the exit). A
//!   process killed outright (SIGKILL) loses at most the lines still queued.
//! - When the writer thread cannot start, lines are written directly, as an unbuffered writer would.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for the writer thread before loggers wait for room.
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
    queue: Option<SyncSender<Msg>>,
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
    queue: Option<&'a SyncSender<Msg>>,
}

impl LogSink {
    /// Starts the writer thread over `out` (stderr in the binary, a buffer in tests).
    pub fn start(out: impl Write + Send + 'static) -> (LogSink, LogGuard) {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("exoproxy-log".into())
            .spawn(move || write_batches(rx, out));
        let sink = LogSink {
            queue: spawned.is_ok().then_some(tx),
        };
        (sink.clone(), LogGuard { sink })
    }

    /// Waits (at most `timeout`) until every line queued so far is written; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let (done, written) = mpsc::sync_channel(1);
        queue.send(Msg::Flush(done)).is_ok() && written.recv_timeout(timeout).is_ok()
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
            Some(queue) => match queue.send(Msg::Line(line)) {
                Ok(()) => return,
                Err(mpsc::SendError(Msg::Line(line))) => line,
                Err(_) => return,
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
            let _ = writeln!(
                std::io::stderr(),
                "warning: some log lines were not written"
            );
        }
    }
}

/// The writer thread: waits for a line, lets more gather for [`BATCH_WINDOW`], takes what is queued
/// (up to [`BATCH_BYTES`]), writes it in one go, then answers the flushes queued behind those lines.
fn write_batches(queue: Receiver<Msg>, mut out: impl Write) {
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
        let (sink, guard) = LogSink::start(out.clone());
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

    #[test]
    fn an_empty_event_writes_nothing() {
        let out = Recorder::default();
        let (sink, guard) = LogSink::start(out.clone());
        drop(sink.make_writer());
        drop(guard);
        assert_eq!(out.text(), "");
    }
}
