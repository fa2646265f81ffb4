//! The panic report: where, never what (docs/TESTING.md#sec-20).
//!
//! Contract:
//! - [`install`] replaces the default panic hook (which prints the panic message to stderr) before
//!   anything else runs. A panic is logged as one `error` line through the log queue (so a stalled
//!   console cannot stall the panicking thread, `app::log`) naming the thread and the source
//!   location.
//! - The message is shown only when it is a literal (`panic!("literal")`): a formatted message
//!   (`unwrap()` on an error, `expect`, `panic!("{x}")`) may carry request data, a header value, a
//!   body or a token, so it is withheld. The location is what a developer needs to find the line.
//! - A panic inside a connection task ends that connection only (tokio catches it; the client sees
//!   the connection close); the listener releases the connection's slot as for any other end
//!   (`listener.rs`), and the proxy keeps serving.
//! - A panic while logging the panic (the subscriber itself failing) is not logged again.

use std::cell::Cell;
use std::panic::PanicHookInfo;

/// What replaces a message that may hold request data.
pub const WITHHELD: &str = "message withheld: it may hold request data";

thread_local! {
    /// Set while this thread reports a panic: a second panic from inside the report is not reported.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// Installs the redacting panic hook for the whole process.
pub fn install() {
    std::panic::set_hook(Box::new(report));
}

fn report(info: &PanicHookInfo<'_>) {
    if REPORTING.with(|r| r.replace(true)) {
        return;
    }
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let location = info
        .location()
        .map_or_else(|| "unknown location".to_string(), ToString::to_string);
    let message = message(info);
    if tracing::dispatcher::has_been_set() {
        tracing::error!(%thread, %location, "panic: {message}");
    } else {
        eprintln!("error: panic in thread '{thread}' at {location}: {message}");
    }
    REPORTING.with(|r| r.set(false));
}

/// The message when it is a literal; [`WITHHELD`] when it was formatted at run time.
fn message<'a>(info: &'a PanicHookInfo<'_>) -> &'a str {
    // `panic!("literal")` carries a `&'static str`; anything formatted carries a `String`.
    info.payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or(WITHHELD)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread named `sec20-…` and returns what the hook would report for its panic.
    fn reported(f: impl FnOnce() + Send + 'static) -> Vec<String> {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let previous = std::panic::take_hook();
        // Other tests of this binary may panic meanwhile: only our thread's report counts.
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("sec20-probe") {
                sink.lock().unwrap().push(message(info).to_string());
            }
        }));
        let joined = std::thread::Builder::new()
            .name("sec20-probe".into())
            .spawn(f)
            .unwrap()
            .join();
        std::panic::set_hook(previous);
        assert!(joined.is_err(), "the probe did not panic");
        seen.lock().unwrap().clone()
    }

    #[test]
    fn sec_20_formatted_messages_are_withheld_literals_kept() {
        let secret = "Bearer CANARY-sec20-unit";
        assert_eq!(reported(move || panic!("header {secret}")), [WITHHELD]);
        let unwrapped = move || {
            "x".parse::<u8>().map_err(|_| secret).unwrap();
        };
        assert_eq!(reported(unwrapped), [WITHHELD]);
        assert_eq!(reported(|| panic!("a literal")), ["a literal"]);
    }
}
