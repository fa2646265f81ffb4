//! The proxy's own limits on the client side: connection count, request head size, and the idle
//! and drain timeouts.
//!
//! Contract: one plain value, built in `app.rs` (defaults plus configured overrides) and read by the
//! [`listener`](crate::listener) (connection count, drain), the [`handler`](crate::handler) (head
//! guard, idle limits of forwarded requests and tunnels) and interception. It holds no state.
//! - [`Limits::stream_idle_for`] is the one place that says which request paths get the longer
//!   streaming idle limit (EWS streaming notifications: docs/TESTING.md#flt-15).

use std::time::Duration;

/// Limits of the client side (docs/TESTING.md#limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent client connections (1,024); more get a 503.
    pub max_connections: usize,
    /// Request head size including the request line (64 KiB); larger → 431.
    pub max_head_bytes: usize,
    /// Header fields per request (100); more → 431.
    pub max_headers: usize,
    /// Request line length (16 KiB); longer → 414.
    pub max_request_line: usize,
    /// Time to receive a whole request head once its first byte arrived (15 s, slowloris guard).
    pub header_read_timeout: Duration,
    /// Time a fresh client connection may stay silent before its first request (90 s).
    pub client_idle: Duration,
    /// At the connection limit, a connection silent for at least this long (1 s) may be closed to
    /// admit a new one; younger ones are still sending their request (a burst gets 503s, LOAD-5).
    pub evict_idle_after: Duration,
    /// No traffic on a forwarded request/response for this long ends it (5 min).
    pub stream_idle: Duration,
    /// [`Limits::stream_idle`] of intercepted EWS requests (35 min): `GetStreamingEvents` keeps a
    /// response open with up to 30 min between events (`[timeouts] streaming_idle_secs`).
    pub streaming_idle: Duration,
    /// No traffic in either direction of a tunnel for this long closes it (1 h).
    pub tunnel_idle: Duration,
    /// Time connections in flight get to finish after shutdown (10 s).
    pub drain_timeout: Duration,
}

/// The default of [`Limits::streaming_idle`]: 35 min.
pub const DEFAULT_STREAMING_IDLE: Duration = Duration::from_secs(35 * 60);

// === impl Limits ===

impl Limits {
    /// The stream-idle limit of an intercepted request to `path`: [`Limits::streaming_idle`] for EWS
    /// (`/EWS/…`, any case: streaming notifications are `POST /EWS/Exchange.asmx` like every other
    /// EWS call), else [`Limits::stream_idle`].
    pub fn stream_idle_for(&self, path: &str) -> Duration {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first.eq_ignore_ascii_case("ews") {
            true => self.streaming_idle,
            false => self.stream_idle,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_request_line: 16 * 1024,
            header_read_timeout: Duration::from_secs(15),
            client_idle: Duration::from_secs(90),
            evict_idle_after: Duration::from_secs(1),
            stream_idle: Duration::from_secs(300),
            streaming_idle: DEFAULT_STREAMING_IDLE,
            tunnel_idle: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WS-Man Receive long-polls for up to 180 s with no byte in either direction
    /// (docs/PROTOCOL.md#wsman-timeouts): neither the per-request idle limit nor the tunnel's may cut it.
    #[test]
    fn default_idle_limits_outlast_a_wsman_long_poll() {
        let limits = Limits::default();
        let long_poll = Duration::from_secs(180);
        assert!(limits.stream_idle >= long_poll + Duration::from_secs(60));
        assert!(limits.tunnel_idle >= limits.stream_idle);
    }

    /// FLT-15: EWS gets the streaming limit (which outlasts 30 min between events and stays under
    /// the tunnel's own idle limit); WS-Man, REST and the rest keep the stream limit.
    #[test]
    fn flt_15_ews_paths_get_the_streaming_idle_limit() {
        let limits = Limits::default();
        assert!(limits.streaming_idle > Duration::from_secs(30 * 60));
        assert!(limits.tunnel_idle >= limits.streaming_idle);
        for ews in ["/EWS/Exchange.asmx", "/ews/exchange.asmx", "/Ews/", "/EWS"] {
            assert_eq!(limits.stream_idle_for(ews), limits.streaming_idle, "{ews}");
        }
        for other in [
            "/PowerShell-LiveID",
            "/adminapi/beta/x",
            "/owa/",
            "/",
            "/EWSx/a",
            "/x/EWS/",
        ] {
            assert_eq!(limits.stream_idle_for(other), limits.stream_idle, "{other}");
        }
    }
}
