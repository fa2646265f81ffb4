//! The demo's steady phase: REST calls from several keep-alive clients plus a WS-Man `whoami` every
//! few seconds, for a fixed time, so the calls straddle several token rollovers.
//!
//! Contract: every request is recorded in the [`Tally`]; a client whose request failed reconnects
//! (as PowerShell would) and carries on until the deadline. Requests are paced so the demo stays
//! light on a laptop: it shows correctness across rollovers, it is not a benchmark.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{Conn, Dialer};
use super::tally::{Api, Tally};
use super::wsman;

/// Concurrent REST clients, each on its own keep-alive connection.
pub(crate) const REST_CLIENTS: usize = 3;
/// Pause between one REST client's requests.
const REST_PAUSE: Duration = Duration::from_millis(50);
/// How often a WS-Man `whoami` session runs.
const WHOAMI_EVERY: Duration = Duration::from_secs(3);

/// The Exchange admin API call the REST module makes for `Get-Mailbox`.
pub(crate) const REST_PATH: &str = "/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;

/// What to run and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The tenant host (the front door's redirect target).
    pub(crate) host: String,
    /// The account `whoami` must print.
    pub(crate) upn: String,
    /// The WS-Man affinity cookie from the first session.
    pub(crate) cookie: Option<String>,
    pub(crate) duration: Duration,
}

/// The WS-Man sessions of the steady phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    /// Sessions run.
    pub(crate) run: u64,
    /// Sessions whose `whoami` printed the expected account.
    pub(crate) matched: u64,
}

/// Runs the REST clients and the periodic `whoami` until `plan.duration` has passed.
pub(crate) async fn run(dialer: &Dialer, tally: &Arc<Tally>, plan: &Plan) -> Sessions {
    let deadline = Instant::now() + plan.duration;
    let mut clients = JoinSet::new();
    for _ in 0..REST_CLIENTS {
        clients.spawn(rest_client(
            dialer.clone(),
            tally.clone(),
            plan.host.clone(),
            deadline,
        ));
    }
    let sessions = whoami_loop(dialer, tally, plan, deadline).await;
    while clients.join_next().await.is_some() {}
    sessions
}

/// One REST client: Get-Mailbox on a keep-alive connection until the deadline.
async fn rest_client(dialer: Dialer, tally: Arc<Tally>, host: String, deadline: Instant) {
    let mut conn: Option<Conn> = None;
    while Instant::now() < deadline {
        let outcome = match conn.as_mut() {
            Some(open) => rest_call(open).await,
            None => match dialer.connect(&host).await {
                Ok(mut fresh) => {
                    let outcome = rest_call(&mut fresh).await;
                    conn = Some(fresh);
                    outcome
                }
                Err(e) => Err(e),
            },
        };
        if outcome.is_err() {
            conn = None;
        }
        tally.record(Api::Rest, &outcome);
        tokio::time::sleep(REST_PAUSE).await;
    }
}

/// `POST /adminapi/.../InvokeCommand` without Authorization: exoproxy adds the default account's token.
async fn rest_call(conn: &mut Conn) -> Result<(), String> {
    let headers = [("content-type", "application/json")];
    let reply = conn.post(REST_PATH, &headers, GET_MAILBOX.into()).await?;
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(wsman::describe_failure(conn.host(), &reply))
    }
}

/// A `whoami` session every [`WHOAMI_EVERY`] until the deadline.
async fn whoami_loop(dialer: &Dialer, tally: &Tally, plan: &Plan, deadline: Instant) -> Sessions {
    let mut sessions = Sessions::default();
    let mut cookie = plan.cookie.clone();
    let mut next = Instant::now() + WHOAMI_EVERY;
    while next < deadline {
        tokio::time::sleep_until(next).await;
        next += WHOAMI_EVERY;
        sessions.run += 1;
        // Failed requests are already in the tally; the session just does not count as matched.
        if let Ok(done) = wsman::whoami(dialer, tally, &plan.upn, &plan.host, cookie.clone()).await
        {
            cookie = done.cookie;
            if done.output.eq_ignore_ascii_case(&plan.upn) {
                sessions.matched += 1;
            }
        }
    }
    tokio::time::sleep_until(deadline).await;
    sessions
}
