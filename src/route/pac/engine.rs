//! The sandbox: one QuickJS runtime holding one compiled PAC script, evaluated under a budget.
//!
//! Contract (PAC-1…PAC-4, PAC-7):
//! - CPU: an interrupt handler stops any evaluation (script load or one call) after `eval_budget`
//!   (250 ms by default); time spent waiting for DNS does not count, the DNS budget bounds it instead.
//! - memory: the runtime's heap is capped (32 MiB); stack: capped (deep recursion is a JS error).
//! - surface: only the helpers of `helpers.js`; `eval`, `Function` and friends are disabled by
//!   `harden.js`, nothing of the host (files, env, network) is reachable.
//! - a sandbox that was interrupted or ran out of memory says so through [`Sandbox::is_poisoned`]:
//!   the worker throws it away and builds a fresh one.
//!
//! A `Sandbox` is `!Send` (QuickJS is single-threaded): it lives and dies on its worker thread.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::intrinsic;
use rquickjs::{Context, Ctx, Function, Object, Runtime, Value};

use super::glob::sh_exp_match;
use super::host_env::{HostEnv, parse_ip_literal, usable_local_addrs};

const HELPERS_JS: &str = include_str!("helpers.js");
const HARDEN_JS: &str = include_str!("harden.js");

/// Limits of one sandbox.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// CPU time for loading the script or for one `FindProxyForURL` call (PAC-1).
    pub eval_budget: Duration,
    /// QuickJS heap cap (PAC-2).
    pub memory: usize,
    /// QuickJS stack cap (PAC-3); the worker thread's stack must be larger.
    pub stack: usize,
}

/// Why an evaluation produced no string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EvalError {
    /// The script does not compile or its top level throws (PAC-9).
    #[error("script error: {0}")]
    Script(String),
    /// `FindProxyForURL` threw, ran too long, or exhausted memory or stack.
    #[error("evaluation failed: {0}")]
    Runtime(String),
    /// `FindProxyForURL` returned something other than a string (PAC-6).
    #[error("FindProxyForURL returned {0}, not a string")]
    NotAString(String),
}

/// A runtime with the helpers and one PAC script loaded.
pub(crate) struct Sandbox {
    // Field order matters: the context must be dropped before its runtime.
    context: Context,
    _runtime: Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
    limits: SandboxLimits,
    env: HostEnv,
    poisoned: bool,
}

// === impl SandboxLimits ===

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            eval_budget: Duration::from_millis(250),
            memory: 32 << 20,
            stack: 512 << 10,
        }
    }
}

// === impl Sandbox ===

impl Sandbox {
    /// Builds a runtime, installs the helpers, hardens the globals and runs the script's top level.
    pub(crate) fn load(
        script: &str,
        limits: SandboxLimits,
        env: HostEnv,
    ) -> Result<Sandbox, EvalError> {
        let script_error = |e: rquickjs::Error| EvalError::Script(e.to_string());
        let runtime = Runtime::new().map_err(script_error)?;
        runtime.set_memory_limit(limits.memory);
        runtime.set_max_stack_size(limits.stack);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|d| Instant::now() >= d)
        })));
        // Promise is required even though PAC is synchronous: without it QuickJS leaks async function
        // objects, and freeing a runtime with leaked objects aborts the process.
        type Intrinsics = (
            intrinsic::Date,
            intrinsic::Promise,
            intrinsic::Eval,
            intrinsic::RegExpCompiler,
            intrinsic::RegExp,
            intrinsic::Json,
            intrinsic::MapSet,
        );
        let context = Context::custom::<Intrinsics>(&runtime).map_err(script_error)?;
        let mut sandbox = Sandbox {
            context,
            _runtime: runtime,
            deadline,
            limits,
            env,
            poisoned: false,
        };
        sandbox.install_prelude()?;
        sandbox.run_script(script)?;
        Ok(sandbox)
    }

    /// True after an interrupt or an out-of-memory: QuickJS state may be half-updated, rebuild.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Calls `FindProxyForURLEx` (when defined) or `FindProxyForURL` and returns its string.
    pub(crate) fn find_proxy(&mut self, url: &str, host: &str) -> Result<String, EvalError> {
        self.env.dns.reset_budget();
        self.arm_deadline();
        let outcome = self.context.with(|ctx| {
            let globals = ctx.globals();
            let entry: Function = match globals.get::<_, Value>("FindProxyForURLEx") {
                Ok(v) if v.is_function() => v.into_function(),
                _ => globals
                    .get::<_, Value>("FindProxyForURL")
                    .ok()
                    .and_then(Value::into_function),
            }
            .ok_or_else(|| EvalError::Script("FindProxyForURL is not defined".into()))?;
            let result: Result<Value, _> = entry.call((url, host));
            match result {
                Ok(v) => result_string(v),
                Err(e) => Err(EvalError::Runtime(exception_text(&ctx, e))),
            }
        });
        self.disarm_deadline(outcome)
    }

    fn install_prelude(&mut self) -> Result<(), EvalError> {
        let env = self.env.clone();
        let deadline = self.deadline.clone();
        self.context.with(|ctx| {
            let setup = || -> rquickjs::Result<()> {
                let natives = natives_object(&ctx, env, deadline)?;
                ctx.globals().set("__pac_natives", natives)?;
                ctx.eval::<(), _>(HELPERS_JS)?;
                ctx.eval::<(), _>(HARDEN_JS)
            };
            setup().map_err(|e| EvalError::Script(format!("prelude: {}", exception_text(&ctx, e))))
        })
    }

    fn run_script(&mut self, script: &str) -> Result<(), EvalError> {
        self.arm_deadline();
        let outcome = self.context.with(|ctx| {
            ctx.eval::<(), _>(script)
                .map_err(|e| EvalError::Script(exception_text(&ctx, e)))?;
            let globals = ctx.globals();
            let defined = ["FindProxyForURLEx", "FindProxyForURL"].iter().any(|name| {
                globals
                    .get::<_, Value>(*name)
                    .is_ok_and(|v| v.is_function())
            });
            if defined {
                Ok(())
            } else {
                Err(EvalError::Script(
                    "the script defines no FindProxyForURL function".into(),
                ))
            }
        });
        self.disarm_deadline(outcome)
    }

    fn arm_deadline(&self) {
        self.deadline
            .set(Some(Instant::now() + self.limits.eval_budget));
    }

    /// Clears the deadline and decides whether the runtime can be reused. An error after the
    /// deadline passed is the budget's doing, and says so with the budget.
    fn disarm_deadline<T>(&mut self, outcome: Result<T, EvalError>) -> Result<T, EvalError> {
        let expired = self.deadline.get().is_some_and(|d| Instant::now() >= d);
        self.deadline.set(None);
        if let Err(EvalError::Runtime(msg) | EvalError::Script(msg)) = &outcome {
            let lower = msg.to_ascii_lowercase();
            if expired || lower.contains("interrupted") || lower.contains("out of memory") {
                self.poisoned = true;
            }
        }
        let budget = || {
            format!(
                "interrupted: stopped by the {} ms time budget",
                self.limits.eval_budget.as_millis()
            )
        };
        match outcome {
            Err(EvalError::Runtime(_)) if expired => Err(EvalError::Runtime(budget())),
            Err(EvalError::Script(_)) if expired => Err(EvalError::Script(budget())),
            other => other,
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Converts the return value: strings pass, anything else is named (PAC-6).
fn result_string(v: Value<'_>) -> Result<String, EvalError> {
    match v.as_string() {
        Some(s) => s
            .to_string()
            .map_err(|e| EvalError::Runtime(format!("unreadable result string: {e}"))),
        None => Err(EvalError::NotAString(v.type_name().to_string())),
    }
}

/// The text of a pending JS exception, or of the Rust-side error.
fn exception_text(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if !matches!(e, rquickjs::Error::Exception) {
        return e.to_string();
    }
    let thrown = ctx.catch();
    let text = if let Some(ex) = thrown.as_exception() {
        ex.message().unwrap_or_else(|| "exception".into())
    } else if let Some(s) = thrown.as_string() {
        s.to_string().unwrap_or_default()
    } else {
        format!("thrown {}", thrown.type_name())
    };
    let text = if thrown.is_uncatchable_error() {
        format!("interrupted: {text}")
    } else {
        text
    };
    text.chars().take(300).collect()
}

/// The Rust side of the helpers, as one object consumed (and hidden) by `helpers.js`.
fn natives_object<'js>(
    ctx: &Ctx<'js>,
    env: HostEnv,
    deadline: Rc<Cell<Option<Instant>>>,
) -> rquickjs::Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;
    let resolve = {
        let env = env.clone();
        move |host: &str| -> Arc<[IpAddr]> {
            let (ips, waited) = env.dns.resolve(host);
            // DNS waiting is bounded by its own budget; do not let it eat the CPU budget.
            if let Some(d) = deadline.get() {
                deadline.set(Some(d + waited));
            }
            ips
        }
    };
    let r = resolve.clone();
    natives.set(
        "dnsResolve",
        Function::new(ctx.clone(), move |host: String| first_ipv4(&r(&host)))?,
    )?;
    let r = resolve.clone();
    natives.set(
        "dnsResolveEx",
        Function::new(ctx.clone(), move |host: String| join_v6_first(&r(&host)))?,
    )?;
    let r = resolve;
    natives.set(
        "isInNetEx",
        Function::new(ctx.clone(), move |host: String, prefix: String| {
            is_in_net_ex(&host, &prefix, &r)
        })?,
    )?;
    install_local_and_time(ctx, &natives, env)?;
    natives.set(
        "shExpMatch",
        Function::new(ctx.clone(), |s: String, p: String| sh_exp_match(&s, &p))?,
    )?;
    natives.set(
        "sortIpAddressList",
        Function::new(ctx.clone(), |list: String| sort_ip_address_list(&list))?,
    )?;
    Ok(natives)
}

fn install_local_and_time<'js>(
    ctx: &Ctx<'js>,
    natives: &Object<'js>,
    env: HostEnv,
) -> rquickjs::Result<()> {
    let local = env.local.clone();
    natives.set(
        "myIpAddress",
        Function::new(ctx.clone(), move || {
            my_ip_address(&usable_local_addrs(&*local))
        })?,
    )?;
    let local = env.local.clone();
    natives.set(
        "myIpAddressEx",
        Function::new(ctx.clone(), move || join_all(&usable_local_addrs(&*local)))?,
    )?;
    let clock = env.clock.clone();
    natives.set(
        "now",
        Function::new(ctx.clone(), move || clock.now_millis())?,
    )?;
    let clock = env.clock.clone();
    natives.set(
        "utcOffsetMinutes",
        Function::new(ctx.clone(), move || clock.utc_offset_minutes())?,
    )?;
    let alert = env.alert.clone();
    natives.set(
        "alert",
        Function::new(ctx.clone(), move |msg: String| {
            let msg: String = msg.chars().take(1000).collect();
            tracing::debug!(target: "exoproxy::pac::alert", "{msg}");
            if let Some(sink) = &alert {
                sink(&msg);
            }
        })?,
    )?;
    Ok(())
}

// === helper semantics (pure) ===

/// `dnsResolve`: the first IPv4 address, `""` (→ null) when there is none (legacy helpers are IPv4 only).
pub(crate) fn first_ipv4(ips: &[IpAddr]) -> String {
    ips.iter()
        .find(|ip| ip.is_ipv4())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// `dnsResolveEx`: IPv6 addresses first, each family in resolver order, `;`-separated.
pub(crate) fn join_v6_first(ips: &[IpAddr]) -> String {
    let v6 = ips.iter().filter(|ip| ip.is_ipv6());
    let v4 = ips.iter().filter(|ip| ip.is_ipv4());
    let all: Vec<String> = v6.chain(v4).map(ToString::to_string).collect();
    all.join(";")
}

fn join_all(ips: &[IpAddr]) -> String {
    let all: Vec<String> = ips.iter().map(ToString::to_string).collect();
    all.join(";")
}

/// `myIpAddress`: IPv4 preferred (scripts feed it to `isInNet`), `127.0.0.1` when nothing is known.
pub(crate) fn my_ip_address(ips: &[IpAddr]) -> String {
    ips.iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| ips.first())
        .map_or_else(|| "127.0.0.1".to_string(), ToString::to_string)
}

/// `isInNetEx(host, "prefix/len")`: CIDR match for IPv4 or IPv6; names are resolved.
pub(crate) fn is_in_net_ex(
    host: &str,
    prefix: &str,
    resolve: &dyn Fn(&str) -> Arc<[IpAddr]>,
) -> bool {
    let Some((net, len)) = prefix.trim().split_once('/') else {
        return false;
    };
    let (Some(net), Ok(len)) = (parse_ip_literal(net), len.parse::<u8>()) else {
        return false;
    };
    let candidates: Vec<IpAddr> = match parse_ip_literal(host.trim()) {
        Some(ip) => vec![ip],
        None => resolve(host).to_vec(),
    };
    candidates.iter().any(|ip| cidr_contains(net, len, *ip))
}

fn cidr_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// `sortIpAddressList`: IPv6 before IPv4, ascending within a family; `""` if any entry is not an IP.
pub(crate) fn sort_ip_address_list(list: &str) -> String {
    let parsed: Option<Vec<IpAddr>> = list
        .split(';')
        .map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    match parsed {
        Some(mut ips) if !ips.is_empty() => {
            ips.sort_by_key(|ip| (ip.is_ipv4(), *ip));
            join_all(&ips)
        }
        _ => String::new(),
    }
}
