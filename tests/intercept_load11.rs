//! LOAD-11 through the proxy: a cold-cache thundering herd. The account is signed in (it holds a
//! refresh token) but has no access token for the Security & Compliance audience yet; 1,000
//! concurrent intercepted requests to the S&C host, each on its own client connection, must cause
//! exactly one refresh-token call, and all 1,000 must succeed after it, none timing out.
//! The connections are opened first (64 at a time, so a 2-core machine's listen backlogs are not the
//! thing measured), then all 1,000 requests are released together by a barrier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::time::{Duration, Instant};

use intercept_support::*;

const CLIENTS: usize = 1000;
const GET_LABEL: &str = r#"{"CmdletInput":{"CmdletName":"Get-Label","Parameters":{}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load11_a_thousand_intercepted_requests_on_a_cold_audience_make_one_token_call() {
    let h = std::sync::Arc::new(Harness::start(Options::default()).await);
    // The emulator's S&C tenant host (its front door would redirect there); no request has gone to
    // S&C yet, so the account holds an Exchange token only.
    let scc = "nam12b.ps.compliance.protection.outlook.com".to_string();
    let before = refresh_calls(&h);
    let started = Instant::now();
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (h, scc) = (h.clone(), scc.clone());
            let (opening, barrier) = (opening.clone(), barrier.clone());
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.unwrap();
                let mut client = h.client(&scc).await;
                drop(permit);
                barrier.wait().await;
                let (status, _, body) =
                    send(&mut client, post_json(&scc, REST_PATH, GET_LABEL)).await;
                (status, body)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        let (status, body) = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("a request timed out")
            .unwrap();
        if status != 200 || !body.contains("Confidential") {
            failures.push(format!("{status} {body}"));
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} failed, e.g. {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(
        refresh_calls(&h) - before,
        1,
        "exactly one refresh-token call for {CLIENTS} concurrent requests"
    );
    eprintln!("LOAD-11: {CLIENTS} intercepted requests in {elapsed:?}, 1 token call");
}
