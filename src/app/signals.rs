//! Process signals: which ones stop the proxy, and which one must not.
//!
//! Contract:
//! - [`install`] installs every handler when it is called (before the proxy binds and announces
//!   that it is ready, so a signal during startup is handled too) and returns a future that
//!   completes on the first stop signal, after logging which one it was. The caller then stops
//!   accepting and drains the connections in flight (see `listener::serve`).
//! - Stop signals: Ctrl-C and SIGTERM on Unix; on Windows Ctrl-C, Ctrl-Break, closing the console
//!   window, logoff and system shutdown (each of which would otherwise end the process at once).
//!   Windows ends the process as soon as the console handler returns from a close, logoff or
//!   shutdown event; tokio's handler does not return for those, so the drain runs until `main`
//!   returns or Windows' own limit (about 5 s for a closed console) runs out.
//! - SIGHUP never stops the proxy: [`install`] hands each one to the caller ([`Hangups`]), which
//!   reloads the configuration file (`app::reload`); a SIGHUP before the proxy is ready waits there.
//! - A handler that cannot be installed is a warning; the signal keeps its default action.

use std::future::Future;

use tokio::sync::mpsc;

/// The names of the stop signals received, first one first.
type Stops = mpsc::UnboundedSender<&'static str>;

/// One message per SIGHUP received (never on other platforms).
pub type Hangups = mpsc::UnboundedReceiver<()>;

/// Installs the handlers now; the future completes on the first stop signal, [`Hangups`] yields
/// each SIGHUP.
pub fn install() -> (impl Future<Output = ()>, Hangups) {
    let (stops, mut received) = mpsc::unbounded_channel();
    let (hangup, hangups) = mpsc::unbounded_channel();
    install_handlers(&stops, hangup);
    let stopped = async move {
        // Holding a sender keeps `recv` pending when no handler could be installed.
        let _keep = stops;
        if let Some(name) = received.recv().await {
            tracing::info!("{name}: shutting down");
        }
    };
    (stopped, hangups)
}

#[cfg(unix)]
fn install_handlers(stops: &Stops, hangup: mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let recv_once = |mut s: tokio::signal::unix::Signal| async move {
        s.recv().await;
    };
    stop_on(
        stops,
        "Ctrl-C",
        signal(SignalKind::interrupt()).map(recv_once),
    );
    stop_on(
        stops,
        "SIGTERM",
        signal(SignalKind::terminate()).map(recv_once),
    );
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if hangup.send(()).is_err() {
                        tracing::warn!("SIGHUP: the proxy is stopping; nothing reloaded");
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP: it will stop the proxy"),
    }
}

#[cfg(windows)]
fn install_handlers(stops: &Stops, _hangup: mpsc::UnboundedSender<()>) {
    use tokio::signal::windows;
    // Each event type is its own stream type; each is awaited once.
    stop_on(
        stops,
        "Ctrl-C",
        windows::ctrl_c().map(|mut s| async move {
            s.recv().await;
        }),
    );
    stop_on(
        stops,
        "Ctrl-Break",
        windows::ctrl_break().map(|mut s| async move {
            s.recv().await;
        }),
    );
    stop_on(
        stops,
        "console window closed",
        windows::ctrl_close().map(|mut s| async move {
            s.recv().await;
        }),
    );
    stop_on(
        stops,
        "logoff",
        windows::ctrl_logoff().map(|mut s| async move {
            s.recv().await;
        }),
    );
    stop_on(
        stops,
        "system shutdown",
        windows::ctrl_shutdown().map(|mut s| async move {
            s.recv().await;
        }),
    );
}

#[cfg(not(any(unix, windows)))]
fn install_handlers(stops: &Stops, _hangup: mpsc::UnboundedSender<()>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    stop_on(stops, "Ctrl-C", Ok(ctrl_c));
}

/// Sends `name` once `received` completes; an installation error is logged.
fn stop_on<F>(stops: &Stops, name: &'static str, received: std::io::Result<F>)
where
    F: Future<Output = ()> + Send + 'static,
{
    match received {
        Ok(received) => {
            let stops = stops.clone();
            tokio::spawn(async move {
                received.await;
                let _ = stops.send(name);
            });
        }
        Err(e) => tracing::warn!(signal = name, error = %e, "cannot handle this signal"),
    }
}
