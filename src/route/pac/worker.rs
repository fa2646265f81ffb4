//! JS worker threads: evaluation never runs on a tokio worker, so a slow script cannot stall the accept
//! loop (LOAD-12).
//!
//! Contract: [`WorkerPool::run`] queues a job on a bounded channel and awaits its oneshot reply. Each
//! worker thread owns one [`Sandbox`], reused across calls while the script hash is unchanged, and rebuilt
//! after an interrupt or out-of-memory. A full queue is an immediate error, not an unbounded wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::engine::{EvalError, Sandbox, SandboxLimits};
use super::host_env::HostEnv;

/// Stack of a worker thread: comfortably above the QuickJS stack cap.
const WORKER_STACK: usize = 8 << 20;
/// Jobs that may wait for a worker.
const QUEUE_DEPTH: usize = 1024;

/// A PAC script as loaded: its text and the hex SHA-256 that identifies it in logs, status and caches.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) text: Arc<str>,
    pub(crate) hash: String,
}

/// What a worker does for one job: load the script (validation) or also call it.
struct Job {
    script: Arc<Script>,
    call: Option<(String, String)>,
    reply: oneshot::Sender<Result<String, EvalError>>,
}

/// The handle to the worker threads; dropping it lets them finish and exit.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    jobs: mpsc::Sender<Job>,
}

/// Why a job produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunError {
    Eval(EvalError),
    /// Queue full or workers gone: the proxy is overloaded or shutting down.
    Unavailable(String),
}

// === impl Script ===

impl Script {
    pub(crate) fn new(text: String) -> Script {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        Script {
            text: text.into(),
            hash: hex::encode(digest.as_ref()),
        }
    }

    /// The first 12 hex digits, enough for logs.
    pub(crate) fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

// === impl WorkerPool ===

impl WorkerPool {
    pub(crate) fn start(workers: usize, limits: SandboxLimits, env: HostEnv) -> WorkerPool {
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..workers.max(1) {
            let queue = queue.clone();
            let env = env.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pac-js-{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || worker_loop(&queue, limits, env));
            if let Err(e) = spawned {
                tracing::error!("cannot start PAC worker thread: {e}");
            }
        }
        WorkerPool { jobs }
    }

    /// Runs one job; `call` is `(url, host)`, or `None` to only load (validate) the script.
    pub(crate) async fn run(
        &self,
        script: Arc<Script>,
        call: Option<(String, String)>,
        wait: Duration,
    ) -> Result<String, RunError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            script,
            call,
            reply,
        };
        self.jobs.try_send(job).map_err(|e| {
            RunError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => "PAC evaluation queue is full".into(),
                mpsc::error::TrySendError::Closed(_) => "PAC workers have stopped".into(),
            })
        })?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result.map_err(RunError::Eval),
            Ok(Err(_)) => Err(RunError::Unavailable("PAC worker died".into())),
            Err(_) => Err(RunError::Unavailable(format!(
                "no PAC worker answered within {wait:?}"
            ))),
        }
    }
}

fn worker_loop(queue: &Mutex<mpsc::Receiver<Job>>, limits: SandboxLimits, env: HostEnv) {
    let mut loaded: Option<(String, Sandbox)> = None;
    loop {
        let job = match queue.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        let Some(job) = job else { return };
        if job.reply.is_closed() {
            continue;
        }
        let result = run_job(&mut loaded, &job, limits, &env);
        let _ = job.reply.send(result);
    }
}

fn run_job(
    loaded: &mut Option<(String, Sandbox)>,
    job: &Job,
    limits: SandboxLimits,
    env: &HostEnv,
) -> Result<String, EvalError> {
    let reusable =
        matches!(loaded, Some((hash, sb)) if *hash == job.script.hash && !sb.is_poisoned());
    if !reusable {
        *loaded = None;
        let sandbox = Sandbox::load(&job.script.text, limits, env.clone())?;
        *loaded = Some((job.script.hash.clone(), sandbox));
    }
    let Some((_, sandbox)) = loaded.as_mut() else {
        return Err(EvalError::Script("sandbox unavailable".into()));
    };
    let Some((url, host)) = &job.call else {
        return Ok(String::new());
    };
    let result = sandbox.find_proxy(url, host);
    if sandbox.is_poisoned() {
        tracing::warn!("PAC sandbox interrupted or out of memory: rebuilding it");
        *loaded = None;
    }
    result
}
