//! Re-reads the system settings on an interval and when the network changes (FLT-13), publishing a
//! [`SettingsSnapshot`] on a `tokio::sync::watch` channel whenever the selected settings or the set of
//! local addresses differ from the last snapshot.
//!
//! Network changes are detected by polling the machine's interface addresses, a cheap read, every
//! `address_interval` (2 s by default, so a VPN coming up is seen well within FLT-13's 5 s); settings
//! are re-read every `settings_interval` (30 s) and immediately after an address change, since VPN
//! clients rewrite proxy settings when they connect. Polling instead of OS notifications keeps this
//! portable and testable: the address source is an injected function, and the default one is
//!
//! - Linux: `/proc/net/fib_trie` (IPv4 `/32 host LOCAL` entries) and `/proc/net/if_inet6`, no ioctl
//!   or `getifaddrs`;
//! - Windows: `GetIpAddrTable`, IPv4 only (see `system::windows`);
//! - elsewhere: nothing, so only the settings interval applies.
//!
//! A settings read that fails keeps the previous snapshot (a transient registry or file error must not
//! flip routing) and is logged; the first read, having nothing to keep, publishes `Direct` with the
//! error as its explanation. The task ends when every receiver is dropped.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::route::system::{Selected, SettingsError};

/// Reads and selects the current settings (registry, files, env, config), synchronously and quickly.
pub type SettingsReader = Box<dyn Fn() -> Result<Selected, SettingsError> + Send + Sync>;
/// Lists the machine's current interface addresses.
pub type AddressSource = Box<dyn Fn() -> Vec<IpAddr> + Send + Sync>;

/// What the router should use now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsSnapshot {
    pub selected: Selected,
    /// Sorted, de-duplicated local addresses when the snapshot was taken.
    pub addresses: Vec<IpAddr>,
    /// Increases with every published snapshot; PAC caches key on it to re-fetch after a change.
    pub generation: u64,
    /// Why this snapshot was published: `"start"`, `"settings changed"`, `"network changed"`.
    pub reason: &'static str,
}

/// The polling loop's configuration and sources.
pub struct SettingsWatcher {
    read_settings: SettingsReader,
    addresses: AddressSource,
    pub address_interval: Duration,
    pub settings_interval: Duration,
}

// === impl SettingsWatcher ===

impl std::fmt::Debug for SettingsWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsWatcher")
            .field("address_interval", &self.address_interval)
            .field("settings_interval", &self.settings_interval)
            .finish_non_exhaustive()
    }
}

impl SettingsWatcher {
    /// A watcher with the default intervals (2 s addresses, 30 s settings).
    pub fn new(read_settings: SettingsReader, addresses: AddressSource) -> SettingsWatcher {
        SettingsWatcher {
            read_settings,
            addresses,
            address_interval: Duration::from_secs(2),
            settings_interval: Duration::from_secs(30),
        }
    }

    /// Takes the first snapshot now and starts the polling task.
    pub fn spawn(self) -> (watch::Receiver<Arc<SettingsSnapshot>>, JoinHandle<()>) {
        let selected = (self.read_settings)().unwrap_or_else(|e| Selected::Direct {
            why: format!("system settings unavailable: {e}"),
        });
        let first = SettingsSnapshot {
            selected,
            addresses: sorted((self.addresses)()),
            generation: 0,
            reason: "start",
        };
        let (tx, rx) = watch::channel(Arc::new(first));
        let task = tokio::spawn(self.run(tx));
        (rx, task)
    }

    async fn run(self, tx: watch::Sender<Arc<SettingsSnapshot>>) {
        let mut tick = tokio::time::interval_at(
            Instant::now() + self.address_interval,
            self.address_interval,
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_settings_read = Instant::now() + self.settings_interval;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let current = tx.borrow().clone();
            let addresses = sorted((self.addresses)());
            let network_changed = addresses != current.addresses;
            let due = Instant::now() >= next_settings_read;
            if !network_changed && !due {
                continue;
            }
            next_settings_read = Instant::now() + self.settings_interval;
            let selected = self.read_or_keep(&current.selected);
            if let Some(next) = next_snapshot(&current, selected, addresses, network_changed) {
                tracing::info!(reason = next.reason, settings = %next.selected.describe(), "proxy settings snapshot");
                tx.send_replace(Arc::new(next));
            }
        }
    }

    fn read_or_keep(&self, previous: &Selected) -> Selected {
        match (self.read_settings)() {
            Ok(selected) => selected,
            Err(e) => {
                tracing::warn!(error = %e, "re-reading proxy settings failed; keeping the previous ones");
                previous.clone()
            }
        }
    }
}

/// The snapshot to publish, if anything changed.
fn next_snapshot(
    current: &SettingsSnapshot,
    selected: Selected,
    addresses: Vec<IpAddr>,
    network_changed: bool,
) -> Option<SettingsSnapshot> {
    let settings_changed = selected != current.selected;
    if !settings_changed && !network_changed {
        return None;
    }
    Some(SettingsSnapshot {
        selected,
        addresses,
        generation: current.generation + 1,
        reason: if network_changed {
            "network changed"
        } else {
            "settings changed"
        },
    })
}

fn sorted(mut addresses: Vec<IpAddr>) -> Vec<IpAddr> {
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The platform's default address source (see the module doc).
pub fn system_addresses() -> Vec<IpAddr> {
    #[cfg(target_os = "linux")]
    {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let mut out = parse_fib_trie(&read("/proc/net/fib_trie"));
        out.extend(parse_if_inet6(&read("/proc/net/if_inet6")));
        sorted(out)
    }
    #[cfg(windows)]
    {
        super::windows::interface_addresses()
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        Vec::new()
    }
}

/// Local IPv4 addresses from `/proc/net/fib_trie`: an address line `|-- a.b.c.d` followed by a
/// `/32 host LOCAL` line.
pub fn parse_fib_trie(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in text.lines().map(str::trim) {
        if let Some(addr) = line.strip_prefix("|--") {
            last = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            out.extend(last);
        }
    }
    sorted(out)
}

/// IPv6 addresses from `/proc/net/if_inet6` (`address ifindex prefixlen scope flags name`, hex).
/// Temporary privacy addresses (flag `IFA_F_TEMPORARY` = 0x01) are skipped: they rotate daily and
/// would look like a network change.
pub fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    const IFA_F_TEMPORARY: u32 = 0x01;
    let parse = |line: &str| -> Option<IpAddr> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (hex, flags) = (fields.first()?, fields.get(4)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        let bits = u128::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() == 32)?;
        (flags & IFA_F_TEMPORARY == 0).then_some(IpAddr::V6(bits.into()))
    };
    sorted(text.lines().filter_map(parse).collect())
}
