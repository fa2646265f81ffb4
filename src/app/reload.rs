//! Live configuration: the running proxy reads its configuration file again when the file's
//! content changes (checked every [`POLL`]), on SIGHUP (Unix), or when the status page asks
//! (`handler::Proxy::reload_config`), and applies it to new requests without a restart.
//!
//! Contract (docs/ARCHITECTURE.md, "Live configuration"):
//! - The file goes through the same loader and validator as at start ([`config::load`], secrets
//!   required as for `run`). An invalid file is refused: every error is logged and shown on the
//!   status page, and the running configuration stays, untouched.
//! - A valid file becomes a new [`Routing`] (router, upstream proxies and their credentials,
//!   intercepted hosts and profiles, accounts, STS discovery), swapped in whole. Requests and
//!   tunnels in flight keep the snapshot they started with, so nothing open is closed; the token
//!   manager, its tokens and the local CA are the same objects before and after. The proxy's own
//!   calls (token endpoint, STS discovery) follow the new route too, and STS hosts discovered for
//!   domains still configured stay DIRECT while the new router rediscovers them.
//! - Settings fixed for the process ([`restart_needed`]: listen addresses, state dir, connection
//!   limit, logging, turning interception on, the CA's domains, extra roots) keep their running
//!   value; a change is reported as "needs a restart" (log and status page) and the rest applies.
//! - Reloads run one at a time; the outcome is logged and kept for the status page
//!   (docs/STATUS.md, `config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::services::{intercept_state, routing_parts};
use super::signals::Hangups;
use super::{ConfigSource, Services, spawn_sts_refresher};
use crate::admin::action::Actions;
use crate::admin::status::{
    ConfigView, ReloadOutcome, ReloadRequests, ReloadResult, ReloadTrigger, Sources, unix_now,
};
use crate::client::OutboundClient;
use crate::config::{self, Config, SecretUse};
use crate::handler::{BoxFuture, Proxy, Reload, Routing};
use crate::intercept::LeafCache;
use crate::route::Router;
use crate::route::sts::StsDirectory;
use crate::token::TokenManager;
use crate::upstream::Upstream;

/// What the configuration in force runs: replaced on each applied reload.
struct Current {
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    /// Stopped when a new router replaces this one.
    sts_refresher: Option<AbortHandle>,
}

/// How often the file's content is compared with the one last read.
pub const POLL: Duration = Duration::from_secs(2);
/// A changed file is read again after this long and reloaded only when both reads agree, so a
/// file caught half-written by its editor is not reported as invalid.
const SETTLE: Duration = Duration::from_millis(300);

/// Builds each new configuration's [`Routing`] over the services that outlive it.
pub struct Reloader {
    source: ConfigSource,
    /// The configuration the process started with: the reference for [`restart_needed`].
    started: Config,
    bound: Vec<SocketAddr>,
    upstream_tls: Arc<ClientConfig>,
    client: OutboundClient,
    tokens: TokenManager,
    /// The local CA's leaves; `None` when interception was off at start.
    leaves: Option<Arc<LeafCache>>,
    since: tokio::time::Instant,
    view: Arc<Mutex<ConfigView>>,
    /// The router of the configuration in force and its STS refresher.
    current: Mutex<Current>,
    /// One reload at a time, so the last one read is the one in force.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// What every snapshot's status sources share: the admin actions and the reload requests.
    admin: AdminHandles,
}

/// The admin state that outlives a configuration: every snapshot's [`Sources`] gets the same.
#[derive(Debug, Clone)]
pub(super) struct AdminHandles {
    pub(super) actions: Arc<Actions>,
    pub(super) reload: ReloadRequests,
}

// === impl Reloader ===

impl Reloader {
    /// The reloader for a proxy started with `config` (read from `source`) on `bound`.
    pub(super) fn new(
        source: ConfigSource,
        config: &Config,
        bound: &[SocketAddr],
        services: &Services,
        sts_refresher: Option<AbortHandle>,
        admin: AdminHandles,
    ) -> Reloader {
        let view = ConfigView {
            file: source.file.as_ref().map(|f| f.display().to_string()),
            loaded_at: unix_now(),
            last_reload: None,
        };
        Reloader {
            source,
            started: config.clone(),
            bound: bound.to_vec(),
            upstream_tls: services.upstream_tls.clone(),
            client: services.client.clone(),
            tokens: services.tokens.clone(),
            leaves: services.intercept.as_ref().map(|s| s.leaves().clone()),
            since: tokio::time::Instant::now(),
            view: Arc::new(Mutex::new(view)),
            current: Mutex::new(Current {
                router: services.router.clone(),
                upstream: services.upstream.clone(),
                sts_refresher,
            }),
            one_at_a_time: tokio::sync::Mutex::new(()),
            admin,
        }
    }

    /// The status page's view of the configuration (shared with every snapshot's [`Sources`]).
    pub(super) fn view(&self) -> Arc<Mutex<ConfigView>> {
        self.view.clone()
    }

    /// The status sources of a configuration's snapshot.
    pub(super) fn sources(&self, routing: &Routing, router: &Arc<Router>) -> Sources {
        Sources {
            router: router.clone(),
            upstream: routing.upstream.clone(),
            intercept: routing.intercept.clone(),
            started: self.since,
            config: Some(self.view()),
            actions: self.admin.actions.clone(),
            reload: Some(self.admin.reload.clone()),
        }
    }

    async fn reload_now(
        &self,
        trigger: ReloadTrigger,
        apply: &(dyn Fn(Routing) + Send + Sync),
    ) -> ReloadOutcome {
        let _one = self.one_at_a_time.lock().await;
        let file = self.file_name();
        tracing::info!("{}: reading the configuration from {file}", words(trigger));
        let outcome = match self.build().await {
            Ok((routing, restart_needed)) => {
                apply(routing);
                ReloadOutcome {
                    at: unix_now(),
                    trigger,
                    result: ReloadResult::Applied,
                    errors: Vec::new(),
                    restart_needed,
                }
            }
            Err(errors) => ReloadOutcome {
                at: unix_now(),
                trigger,
                result: ReloadResult::Refused,
                errors,
                restart_needed: Vec::new(),
            },
        };
        log(&outcome, &file);
        let mut view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if outcome.result == ReloadResult::Applied {
            view.loaded_at = outcome.at;
        }
        view.last_reload = Some(outcome.clone());
        outcome
    }

    /// Loads and validates the file, then builds the new routing; nothing running is touched
    /// until everything that can fail has succeeded.
    async fn build(&self) -> Result<(Routing, Vec<String>), Vec<String>> {
        let mut config = config::load(self.source.file.as_deref(), &self.source.overrides)?;
        config.require_secrets(SecretUse::Serve)?;
        let restart_needed = restart_needed(&self.started, &config);
        if self.started.intercept.enabled {
            intercept_within(&mut config, &self.started.intercept.ca_domains());
        }
        let (router, upstream) = routing_parts(&config, &self.bound, &self.upstream_tls).await?;
        upstream.inherit_bad_proxies(&self.current().upstream);
        // Discovered STS hosts stay DIRECT while the new refresher rediscovers them.
        if let (true, Some(new), Some(old)) =
            (config.route.sts.discover, router.sts(), self.current_sts())
        {
            new.inherit(&old, &config.route.sts.domains);
        }
        // From here on nothing fails: the proxy's own calls and the accounts move over.
        self.client.set_route(router.clone(), upstream.clone());
        for account in &config.intercept.accounts {
            self.tokens.add_account(account.clone());
        }
        let intercept = (self.leaves.clone())
            .map(|leaves| intercept_state(&config, leaves, &self.upstream_tls, &self.tokens));
        let next = Current {
            router: router.clone(),
            upstream: upstream.clone(),
            sts_refresher: spawn_sts_refresher(&router, &self.client, &config.route.sts),
        };
        let old = std::mem::replace(&mut *self.current(), next);
        if let Some(refresher) = old.sts_refresher {
            refresher.abort();
        }
        let mut routing = Routing {
            resolver: router.clone(),
            upstream,
            intercept,
            admin: None,
        };
        routing.admin = Some(Arc::new(self.sources(&routing, &router)));
        Ok((routing, restart_needed))
    }

    /// The STS directory of the configuration in force (its discovered hosts carry over).
    fn current_sts(&self) -> Option<Arc<StsDirectory>> {
        self.current().router.sts().cloned()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn file_name(&self) -> String {
        self.source.file.as_ref().map_or_else(
            || "built-in defaults and the command line".into(),
            |f| f.display().to_string(),
        )
    }
}

impl Reload for Reloader {
    fn reload<'a>(
        &'a self,
        trigger: ReloadTrigger,
        apply: &'a (dyn Fn(Routing) + Send + Sync),
    ) -> BoxFuture<'a, ReloadOutcome> {
        Box::pin(self.reload_now(trigger, apply))
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.source.file)
            .finish_non_exhaustive()
    }
}

/// The settings that differ between the `running` configuration and the `new` one and that only
/// a restart applies, each naming the key and both values.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |key: &str, old: String, new: String| {
        if old != new {
            out.push(format!("{key} ({old} → {new})"));
        }
    };
    let addrs = |c: &Config| {
        let list: Vec<String> = c.listen.iter().map(SocketAddr::to_string).collect();
        list.join(", ")
    };
    differs("listen", addrs(running), addrs(new));
    differs(
        "state_dir",
        running.state_dir.display().to_string(),
        new.state_dir.display().to_string(),
    );
    differs(
        "max_connections",
        running.max_connections.to_string(),
        new.max_connections.to_string(),
    );
    differs(
        "log.level",
        running.log_level.clone(),
        new.log_level.clone(),
    );
    differs(
        "log.file",
        format!("{:?}", running.log_file),
        format!("{:?}", new.log_file),
    );
    let roots = |c: &Config| {
        (c.intercept.extra_roots.as_deref()).map_or("none".into(), |p| p.display().to_string())
    };
    differs("tls.extra_roots", roots(running), roots(new));
    if new.intercept.enabled && !running.intercept.enabled {
        out.push("intercept (turned on; the local CA is loaded at start)".into());
    }
    let ca_domains = running.intercept.ca_domains();
    let outside: Vec<String> = (new.intercept.ca_domains().into_iter())
        .filter(|d| running.intercept.enabled && !ca_domains.contains(d))
        .collect();
    if !outside.is_empty() {
        out.push(format!(
            "intercepted hosts outside the local CA's domains ({})",
            outside.join(", ")
        ));
    }
    out
}

/// Leaves out of the route the intercepted host patterns outside the running CA's `ca_domains`
/// (its leaves could not be trusted for them): those hosts keep their running route until a
/// restart, which [`restart_needed`] reports.
fn intercept_within(new: &mut Config, ca_domains: &[String]) {
    for rule in &mut new.route.intercept {
        rule.hosts
            .retain(|h| ca_domains.contains(&config::intercept::ca_domain(h)));
    }
}

fn words(trigger: ReloadTrigger) -> &'static str {
    match trigger {
        ReloadTrigger::FileChanged => "configuration file changed",
        ReloadTrigger::Sighup => "SIGHUP",
        ReloadTrigger::Admin => "reload asked on the status page",
    }
}

fn log(outcome: &ReloadOutcome, file: &str) {
    match outcome.result {
        ReloadResult::Applied => {
            tracing::info!(
                "configuration reloaded from {file}: new requests use it, open tunnels keep theirs"
            );
            for setting in &outcome.restart_needed {
                tracing::warn!("configuration: {setting} needs a restart; the running value stays");
            }
        }
        ReloadResult::Refused => {
            for e in &outcome.errors {
                tracing::warn!("config error: {e}");
            }
            tracing::warn!(
                "configuration reload refused ({} error(s)): the running configuration stays",
                outcome.errors.len()
            );
        }
    }
}

/// What asks the watcher for a reload through the status page's `reload` action.
pub type AdminReloads = mpsc::UnboundedReceiver<oneshot::Sender<ReloadOutcome>>;

/// Reloads on SIGHUP, on the `reload` action and whenever the content of `file` changes, until
/// the task is aborted.
pub async fn watch(
    proxy: Arc<Proxy>,
    file: Option<PathBuf>,
    mut hangups: Hangups,
    mut admin: AdminReloads,
) {
    let mut seen = file.as_deref().map(fingerprint);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            Some(()) = hangups.recv() => ReloadTrigger::Sighup,
            Some(reply) = admin.recv() => {
                seen = file.as_deref().map(fingerprint);
                let _ = reply.send(proxy.reload_config(ReloadTrigger::Admin).await);
                continue;
            }
            _ = tick.tick() => ReloadTrigger::FileChanged,
        };
        let now = file.as_deref().map(fingerprint);
        if trigger == ReloadTrigger::FileChanged {
            if now == seen {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            if file.as_deref().map(fingerprint) != now {
                continue; // still being written: the next check sees it again
            }
        }
        seen = now;
        proxy.reload_config(trigger).await;
    }
}

/// SHA-256 of the file's content; `None` when it cannot be read (a reload then says why).
fn fingerprint(file: &Path) -> Option<Vec<u8>> {
    let content = std::fs::read(file).ok()?;
    Some(
        ring::digest::digest(&ring::digest::SHA256, &content)
            .as_ref()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config(text: &str) -> Config {
        let file = config::parse(text).unwrap();
        config::validate::validate(file, &Overrides::default(), Some(text), &|_| None).unwrap()
    }

    #[test]
    fn only_process_settings_need_a_restart() {
        let running = config("[listen]\naddresses = [\"127.0.0.1:8765\"]\n");
        let routing_only = config(
            "[listen]\naddresses = [\"127.0.0.1:8765\"]\n\
             [upstream]\nproxies = [\"http://10.0.0.1:3128\"]\n",
        );
        assert_eq!(
            restart_needed(&running, &routing_only),
            Vec::<String>::new()
        );
        let moved = config("[listen]\naddresses = [\"127.0.0.1:9000\"]\nmax_connections = 7\n");
        let needed = restart_needed(&running, &moved);
        assert_eq!(needed.len(), 2, "{needed:?}");
        assert_eq!(needed[0], "listen (127.0.0.1:8765 → 127.0.0.1:9000)");
        assert!(needed[1].starts_with("max_connections ("), "{needed:?}");
    }

    #[test]
    fn interception_turned_on_or_widened_beyond_the_ca_needs_a_restart() {
        let off = config("[intercept]\nenabled = false\n");
        let on = config("");
        assert_eq!(
            restart_needed(&off, &on),
            ["intercept (turned on; the local CA is loaded at start)"]
        );
        assert_eq!(
            restart_needed(&on, &off),
            Vec::<String>::new(),
            "turning it off applies"
        );
        let graph = config(
            "[[intercept.profile]]\nname = \"graph\"\n\
             hosts = { \"graph.microsoft.com\" = \"https://graph.microsoft.com\" }\n",
        );
        assert_eq!(
            restart_needed(&on, &graph),
            ["intercepted hosts outside the local CA's domains (graph.microsoft.com)"]
        );
        assert_eq!(
            restart_needed(&graph, &on),
            Vec::<String>::new(),
            "narrowing applies"
        );
    }

    #[test]
    fn hosts_outside_the_running_ca_are_not_intercepted_until_a_restart() {
        let running = config("");
        let mut widened = config(
            "[[intercept.profile]]\nname = \"graph\"\n\
             hosts = { \"graph.microsoft.com\" = \"https://graph.microsoft.com\" }\n",
        );
        let hosts = |c: &Config| -> Vec<String> {
            c.route
                .intercept
                .iter()
                .flat_map(|r| r.hosts.clone())
                .collect()
        };
        let before = hosts(&widened);
        assert!(
            before.contains(&"graph.microsoft.com".to_string()),
            "{before:?}"
        );
        intercept_within(&mut widened, &running.intercept.ca_domains());
        let after = hosts(&widened);
        assert!(
            !after.contains(&"graph.microsoft.com".to_string()),
            "{after:?}"
        );
        assert_eq!(
            after.len(),
            before.len() - 1,
            "the running hosts stay intercepted"
        );
    }
}
