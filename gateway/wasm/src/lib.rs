//! The WebAssembly plugin host (wasmtime, component model): engine, bindings, instance pools,
//! the plugin threads and the host services plugins import.
//!
//! A crate of its own, below the gateway: it knows no sessions, listeners or brokers. The
//! gateway hands it plugin bytes, a [`services::PluginMetrics`] to count into and a channel
//! for the records plugins publish ([`services::Published`]), and calls hooks with views of
//! requests and records. It is also the one crate allowed an `unsafe` block (loading
//! precompiled plugin code from the compilation cache).
//!
//! - One [`Runtime`] per gateway: one `Engine` with the pooling allocator and epoch
//!   interruption (a ticker thread advances the epoch every [`TICK`]), and one `Linker` with
//!   the host functions of the `sluice:interceptor` world plus a WASI that grants nothing
//!   (components from other languages' toolchains import WASI and must still instantiate).
//! - A [`Plugin`] is a compiled, validated component: compiled once at upload, cached on disk
//!   by content hash so a restart deserializes instead of recompiling, with an `InstancePre`
//!   ready to instantiate.
//! - An [`Instances`] pool per installed interceptor holds configured instances for reuse.
//!   A call runs under a deadline and a memory cap; a trap, timeout or refused allocation
//!   discards that instance (a trapped store cannot be entered again), and the caller applies
//!   the interceptor's failure policy. Instances are also recycled past a call count or a
//!   memory high-water mark, since some language runtimes leak.
//! - Calls from the request path run on the plugin threads of [`pool`], never on the async
//!   workers, with a bound on how many calls of one interceptor run at once: a plugin that
//!   spins to its deadline holds its own share of the plugin threads, not the proxy.
//! - An interceptor's `memoryMb` bounds the linear memory of all its instances together
//!   ([`host::MemoryBudget`]), so concurrent calls do not multiply it. A dropped instance's
//!   memory goes back to the OS: the pooling allocator keeps no linear memory resident
//!   between instances (`linear_memory_keep_resident` 0: a freed slot is decommitted), and an
//!   uninstalled interceptor's idle instances are dropped at once ([`Instances::retire`]), not
//!   when the last connection that saw it lets go of its chain.
//! - The deadline is CPU time: the interceptor's `timeoutMs` plus an allowance per record and
//!   per MiB the call is given ([`Budget`]), charged for the CPU time the calling thread spends
//!   in the call, so a call that was descheduled on a busy machine is not failed for it. The
//!   epoch ticker wakes the store when the budget could have been used up in wall time; the
//!   deadline callback then reads the thread's CPU clock and lets the call go on while budget
//!   remains. A wall-clock ceiling ([`Budget::wall`]) still bounds how long a call can hold a
//!   plugin thread.
//! - A plugin's stdout and stderr are captured ([`output`]) and logged as the interceptor's
//!   lines after each call.

pub mod bindings {
    //! Host bindings generated from `wit/`.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "interceptor",
        imports: { default: trappable },
        with: {
            "sluice:interceptor/types.message": super::host::MessageBody,
            "sluice:interceptor/types.records": super::host::RecordsView,
        },
    });
}
pub mod atomic_file;
pub mod host;
pub mod kms;
pub mod output;
pub mod pool;
pub mod services;

use anyhow::{Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::WasiCtx;

use bindings::sluice::interceptor::types::{self as wit, Hooks};
use bindings::{Interceptor, InterceptorPre};
use host::{HostState, MemoryBudget, MemoryLimiter, MessageBody, RecordsView};
use services::Services;

/// Epoch tick: the resolution of plugin call deadlines.
pub const TICK: Duration = Duration::from_millis(2);
/// CPU time a record hook is allowed per record it is given, on top of the timeout.
pub const BUDGET_PER_RECORD: Duration = Duration::from_micros(25);
/// CPU time a hook is allowed per MiB of records or body it is given, on top of the timeout.
pub const BUDGET_PER_MIB: Duration = Duration::from_millis(10);
/// The wall-clock ceiling of a call is this many times its CPU budget...
const WALL_FACTOR: u32 = 20;
/// ...and at least this long.
const WALL_MIN: Duration = Duration::from_secs(2);
/// Largest memory cap an interceptor may ask for.
pub const MAX_MEMORY_MB: u64 = 512;
/// Largest plugin component accepted.
pub const MAX_PLUGIN_BYTES: usize = 64 * 1024 * 1024;
/// Instances an interceptor keeps ready between calls.
const POOL_SIZE: usize = 8;
/// Calls after which an instance is replaced.
const RECYCLE_CALLS: u64 = 100_000;
/// Fraction of the memory cap past which an instance is replaced after its call.
const RECYCLE_MEMORY_FRACTION: f64 = 0.75;

/// What a plugin wants to be called for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Implements `on-request`.
    pub request: bool,
    /// Implements `on-response`.
    pub response: bool,
    /// Implements `on-produce`.
    pub produce: bool,
    /// Implements `on-fetch`.
    pub fetch: bool,
    /// API keys of the generic hooks; empty means all.
    pub api_keys: Vec<i16>,
}

impl Capabilities {
    /// The hook names, for display.
    pub fn hook_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.request {
            v.push("on-request");
        }
        if self.response {
            v.push("on-response");
        }
        if self.produce {
            v.push("on-produce");
        }
        if self.fetch {
            v.push("on-fetch");
        }
        v
    }

    /// Whether the generic hooks apply to `api_key`.
    pub fn wants_key(&self, api_key: i16) -> bool {
        self.api_keys.is_empty() || self.api_keys.contains(&api_key)
    }
}

/// Why a plugin cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Not a WebAssembly component, or it does not compile.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// A component, but not of the `sluice:interceptor/interceptor` world.
    #[error("the component does not implement sluice:interceptor/interceptor@0.1.0: {0}")]
    WrongWorld(String),
    /// Too large.
    #[error("plugin of {0} bytes exceeds the limit of {MAX_PLUGIN_BYTES} bytes")]
    TooLarge(usize),
}

/// The gateway's plugin runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    stop_ticker: Arc<AtomicBool>,
    calls: pool::CallPool,
    per_interceptor: usize,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        self.calls.shutdown();
    }
}

impl Runtime {
    /// Creates the engine and linker; compiled plugins are cached in `cache_dir`.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Component-model async costs ~370 ns per sync call and is not used.
        config.concurrency_support(false);
        config.max_wasm_stack(1 << 20);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(2048)
            .total_memories(512)
            .total_tables(512)
            .max_memories_per_component(16)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .table_elements(100_000)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wt(Engine::new(&config), "creating the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wt(
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker),
            "linking WASI",
        )?;
        wt(
            output::add_to_linker(&mut linker),
            "linking WASI I/O for plugin output",
        )?;
        wt(
            Interceptor::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
                &mut linker,
                |s| s,
            ),
            "linking the host functions",
        )?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the plugin cache {}", dir.display()))?;
        }
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?;
        }
        let calls =
            pool::CallPool::start(pool::threads()).context("starting the plugin threads")?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache_dir,
            stop_ticker,
            calls,
            per_interceptor: pool::per_interceptor(),
        }))
    }

    /// Compiles (or loads from the cache) and validates a plugin. Blocking: seconds for large
    /// components; call it off the async workers.
    pub fn load_plugin(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, PluginError> {
        if bytes.len() > MAX_PLUGIN_BYTES {
            return Err(PluginError::TooLarge(bytes.len()));
        }
        let sha256 = hex(&Sha256::digest(bytes));
        let component = self.compile(&sha256, bytes)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let pre =
            InterceptorPre::new(pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let mut plugin = Plugin {
            name: name.to_string(),
            sha256,
            size: bytes.len(),
            capabilities: Capabilities {
                request: false,
                response: false,
                produce: false,
                fetch: false,
                api_keys: Vec::new(),
            },
            pre,
            runtime: self.clone(),
        };
        // Instantiating proves the imports resolve and the exports exist; `describe` says what
        // the plugin wants.
        let services = Arc::new(Services::new(
            name,
            Arc::default(),
            Arc::new(kms::Kms::open(None).expect("in-memory KMS")),
            Arc::new(services::DiscardMetrics),
            None,
        ));
        let mut inst = plugin
            .instantiate(services, Arc::new(MemoryBudget::new(64 << 20)))
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        inst.start(Budget::fixed(Duration::from_secs(5)));
        let caps = inst
            .bindings
            .call_describe(&mut inst.store)
            .map_err(|e| PluginError::WrongWorld(format!("describe failed: {e:#}")))?;
        plugin.capabilities = Capabilities {
            request: caps.hooks.contains(Hooks::REQUEST),
            response: caps.hooks.contains(Hooks::RESPONSE),
            produce: caps.hooks.contains(Hooks::PRODUCE),
            fetch: caps.hooks.contains(Hooks::FETCH),
            api_keys: caps.api_keys,
        };
        Ok(Arc::new(plugin))
    }

    fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}.cwasm")));
        if let Some(path) = &cached {
            if path.exists() {
                // SAFETY: the file was written by `Component::serialize` of this gateway into
                // its own state directory; wasmtime checks that it was compiled by a compatible
                // engine with the same settings and refuses it otherwise (then we recompile).
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => {
                        debug!(sha256, "plugin loaded from the compilation cache");
                        return Ok(c);
                    }
                    Err(e) => warn!(sha256, "ignoring stale compiled plugin: {e:#}"),
                }
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        info!(sha256, elapsed = ?started.elapsed(), "plugin compiled");
        if let Some(path) = &cached {
            match component.serialize() {
                Ok(data) => {
                    if let Err(e) = atomic_file::write_atomic(path, &data, false) {
                        warn!(sha256, "cannot cache the compiled plugin: {e:#}");
                    }
                }
                Err(e) => warn!(sha256, "cannot serialize the compiled plugin: {e:#}"),
            }
        }
        Ok(component)
    }
}

/// wasmtime's error type is not `std::error::Error`; carry its message into anyhow.
fn wt<T>(r: wasmtime::Result<T>, context: &str) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{context}: {e:?}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// CPU time used by the calling thread so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// What one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// CPU time of the calling thread.
    pub cpu: Duration,
    /// Wall-clock ceiling, whatever the CPU time.
    pub wall: Duration,
}

impl Budget {
    /// A budget of `cpu` CPU time.
    pub fn fixed(cpu: Duration) -> Budget {
        Budget {
            cpu,
            wall: (cpu * WALL_FACTOR).max(WALL_MIN),
        }
    }

    /// `timeout` plus the allowance for `records` records and `bytes` bytes of data.
    pub fn scaled(timeout: Duration, records: usize, bytes: usize) -> Budget {
        let per_record = BUDGET_PER_RECORD.saturating_mul(records.min(u32::MAX as usize) as u32);
        let per_byte = BUDGET_PER_MIB.mul_f64(bytes as f64 / (1 << 20) as f64);
        Budget::fixed(timeout + per_record + per_byte)
    }
}

/// The clocks of the call in progress on a store.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    budget: Budget,
    cpu_start: Duration,
    wall_start: Instant,
    /// CPU and wall time when the call was interrupted, for the failure message.
    interrupted: Option<(Duration, Duration)>,
}

impl CallClock {
    fn start(budget: Budget) -> CallClock {
        CallClock {
            budget,
            cpu_start: thread_cpu(),
            wall_start: Instant::now(),
            interrupted: None,
        }
    }

    /// CPU and wall time spent since the call started.
    fn spent(&self) -> (Duration, Duration) {
        (
            thread_cpu().saturating_sub(self.cpu_start),
            self.wall_start.elapsed(),
        )
    }
}

/// The deadline decision, when the epoch deadline is reached after `cpu` CPU time and `wall`
/// wall time in a call: `Some(d)` goes on and checks again in `d` of wall time (the soonest the
/// rest of the CPU budget or the ceiling could be used up), `None` interrupts the call.
pub fn next_check(budget: Budget, cpu: Duration, wall: Duration) -> Option<Duration> {
    if cpu >= budget.cpu || wall >= budget.wall {
        return None;
    }
    Some((budget.cpu - cpu).min(budget.wall - wall))
}

/// A compiled and validated plugin.
pub struct Plugin {
    /// Name it was uploaded under.
    pub name: String,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// What `describe` said.
    pub capabilities: Capabilities,
    pre: InterceptorPre<HostState>,
    runtime: Arc<Runtime>,
}

/// A live plugin instance with its store.
pub struct Instance {
    store: Store<HostState>,
    bindings: Interceptor,
    calls: u64,
}

/// Starts the clock of a call on `store`: the first check comes when the CPU budget could have
/// been used up.
fn start_call(store: &mut Store<HostState>, budget: Budget) {
    store.data_mut().clock = CallClock::start(budget);
    store.set_epoch_deadline(deadline_ticks(budget.cpu.min(budget.wall)));
}

impl Instance {
    fn start(&mut self, budget: Budget) {
        start_call(&mut self.store, budget);
    }

    /// Logs what the plugin wrote to stdout (info) and stderr (warn); `flush` also takes an
    /// unfinished last line (the instance is going away).
    fn drain_output(&self, flush: bool) {
        let state = self.store.data();
        for (stream, out) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let drained = out.take_lines(flush);
            for line in &drained.lines {
                state.services.plugin_output(stream, line);
            }
            if drained.dropped > 0 {
                warn!(interceptor = %state.services.name, stream, dropped_bytes = drained.dropped, "plugin output dropped (buffer full)");
            }
        }
    }
}

impl Plugin {
    fn instantiate(&self, services: Arc<Services>, memory: Arc<MemoryBudget>) -> Result<Instance> {
        let stdout = output::PluginOutput::default();
        let stderr = output::PluginOutput::default();
        let state = HostState {
            // Nothing granted: no preopened directories, no sockets, no environment, no args.
            // Output goes to in-memory buffers the host logs.
            wasi: WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .build(),
            stdout,
            stderr,
            clock: CallClock::start(Budget::fixed(Duration::from_secs(5))),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: memory.cap,
                used: 0,
                peak: 0,
                refused: false,
                budget: memory,
            },
            services,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let clock = &mut ctx.data_mut().clock;
            let (cpu, wall) = clock.spent();
            match next_check(clock.budget, cpu, wall) {
                Some(wait) => Ok(UpdateDeadline::Continue(deadline_ticks(wait))),
                None => {
                    clock.interrupted = Some((cpu, wall));
                    Err(Trap::Interrupt.into())
                }
            }
        });
        start_call(&mut store, Budget::fixed(Duration::from_secs(5)));
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(Instance {
            store,
            bindings,
            calls: 0,
        })
    }
}

/// How a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The call used up its CPU budget, or reached its wall-clock ceiling.
    Timeout {
        /// CPU time spent in the call.
        cpu: Duration,
        /// Wall time spent in the call.
        wall: Duration,
        /// The call's CPU budget.
        budget: Duration,
    },
    /// A memory allocation beyond the cap was refused.
    OutOfMemory,
    /// The plugin trapped (panic, unreachable, bad host call...).
    Trap(String),
    /// The plugin could not be instantiated.
    Instantiate(String),
    /// The interceptor already ran as many calls as it may at once, and none finished within
    /// the call's wall-clock ceiling.
    Busy {
        /// How long the call waited.
        waited: Duration,
        /// Calls the interceptor may run at once.
        limit: usize,
    },
}

impl CallFailure {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::Timeout { .. } => "timeout",
            CallFailure::OutOfMemory => "out_of_memory",
            CallFailure::Trap(_) => "trap",
            CallFailure::Instantiate(_) => "instantiate",
            CallFailure::Busy { .. } => "busy",
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Timeout { cpu, wall, budget } => write!(
                f,
                "deadline exceeded ({:.1} ms CPU, {:.1} ms wall, budget {:.1} ms CPU)",
                cpu.as_secs_f64() * 1e3,
                wall.as_secs_f64() * 1e3,
                budget.as_secs_f64() * 1e3
            ),
            CallFailure::OutOfMemory => write!(f, "memory limit exceeded"),
            CallFailure::Trap(m) => write!(f, "trap: {m}"),
            CallFailure::Instantiate(m) => write!(f, "cannot instantiate: {m}"),
            CallFailure::Busy { waited, limit } => write!(
                f,
                "no call slot free after {:.1} ms ({limit} calls of it already running)",
                waited.as_secs_f64() * 1e3
            ),
        }
    }
}

/// The configured instances of one installed interceptor.
pub struct Instances {
    plugin: Arc<Plugin>,
    services: Arc<Services>,
    config: String,
    timeout: Duration,
    memory: Arc<MemoryBudget>,
    idle: Mutex<Vec<Instance>>,
    /// Calls that may run at once (see [`pool`]).
    slots: Arc<Semaphore>,
    /// Uninstalled or replaced: instances are dropped after their call, not kept.
    retired: AtomicBool,
}

impl Instances {
    /// Prepares instances of `plugin` configured with `config`; instantiates and configures
    /// one now so a refused configuration is reported at install time.
    pub fn new(
        plugin: Arc<Plugin>,
        services: Arc<Services>,
        config: String,
        timeout: Duration,
        memory_mb: u64,
    ) -> Result<Arc<Instances>, String> {
        let slots = Arc::new(Semaphore::new(plugin.runtime.per_interceptor));
        let instances = Arc::new(Instances {
            plugin,
            services,
            config,
            timeout,
            memory: Arc::new(MemoryBudget::new((memory_mb as usize) << 20)),
            idle: Mutex::new(Vec::new()),
            slots,
            retired: AtomicBool::new(false),
        });
        let inst = instances.fresh().map_err(|e| e.to_string())?;
        instances.idle.lock().expect("pool lock").push(inst);
        Ok(instances)
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Bytes of linear memory the interceptor's live instances hold now.
    pub fn memory_used(&self) -> usize {
        self.memory.used()
    }

    /// The interceptor was uninstalled or replaced: drops its idle instances now (their memory
    /// goes back to the OS) and keeps none from calls still in flight. Calls may still come
    /// (requests that took the old chain finish on it); they get a fresh instance.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        drop(idle);
    }

    /// What the configured plugin wants: `describe` asked again after `configure`, so a plugin
    /// can subscribe to hooks depending on its configuration (a masker that only masks on
    /// produce need not make the gateway decode every fetch response for it).
    pub fn capabilities(&self) -> Result<Capabilities, CallFailure> {
        let caps = self.call(Budget::fixed(self.timeout), |inst| {
            inst.bindings.call_describe(&mut inst.store)
        })?;
        Ok(Capabilities {
            request: caps.hooks.contains(Hooks::REQUEST),
            response: caps.hooks.contains(Hooks::RESPONSE),
            produce: caps.hooks.contains(Hooks::PRODUCE),
            fetch: caps.hooks.contains(Hooks::FETCH),
            api_keys: caps.api_keys,
        })
    }

    fn fresh(&self) -> Result<Instance, CallFailure> {
        let mut inst = self
            .plugin
            .instantiate(self.services.clone(), self.memory.clone())
            .map_err(|e| CallFailure::Instantiate(format!("{e:#}")))?;
        inst.start(Budget::fixed(Duration::from_secs(5).max(self.timeout)));
        let outcome = inst.bindings.call_configure(&mut inst.store, &self.config);
        inst.drain_output(outcome.is_err());
        match outcome {
            Ok(Ok(())) => Ok(inst),
            Ok(Err(refusal)) => Err(CallFailure::Instantiate(format!(
                "the plugin refused its configuration: {refusal}"
            ))),
            Err(e) => Err(classify(&inst, e)),
        }
    }

    /// Runs `f` on an instance with `budget` (see [`Budget`]).
    fn call<R>(
        &self,
        budget: Budget,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.fresh()?,
        };
        inst.start(budget);
        inst.calls += 1;
        // No host function is expected to panic (WASI I/O is driven without a runtime, see
        // `output`); should one, the call fails like a trap and the instance is discarded
        // rather than the plugin thread unwinding.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut inst)));
        inst.drain_output(!matches!(outcome, Ok(Ok(_))));
        let outcome = match outcome {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("host function panicked");
                if inst.store.data().limiter.refused {
                    return Err(CallFailure::OutOfMemory);
                }
                return Err(CallFailure::Trap(format!(
                    "a host function panicked: {what}"
                )));
            }
        };
        match outcome {
            Ok(r) => {
                let limiter = &inst.store.data().limiter;
                let worn = inst.calls >= RECYCLE_CALLS
                    || limiter.peak as f64 > limiter.cap as f64 * RECYCLE_MEMORY_FRACTION;
                if worn {
                    debug!(interceptor = %self.services.name, calls = inst.calls, peak = limiter.peak, "recycling plugin instance");
                } else {
                    // Checked under the lock `retire` drains: an instance is either drained
                    // with the others or never kept.
                    let mut idle = self.idle.lock().expect("pool lock");
                    if idle.len() < POOL_SIZE && !self.retired.load(Ordering::Acquire) {
                        idle.push(inst);
                    }
                }
                Ok(r)
            }
            // The store is poisoned after a trap: drop the instance.
            Err(e) => Err(classify(&inst, e)),
        }
    }

    /// Runs `f` on an instance on a plugin thread (see [`pool`]), once one of the
    /// interceptor's call slots is free; the caller's task waits without holding its thread.
    async fn call_off_thread<R: Send + 'static>(
        self: &Arc<Self>,
        budget: Budget,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, CallFailure> {
        let queued = Instant::now();
        let permit =
            match tokio::time::timeout(budget.wall, self.slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(CallFailure::Instantiate("shutting down".into())),
                Err(_) => {
                    return Err(CallFailure::Busy {
                        waited: queued.elapsed(),
                        limit: self.plugin.runtime.per_interceptor,
                    })
                }
            };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let submitted = self.plugin.runtime.calls.submit(Box::new(move || {
            let _permit = permit;
            // The request went away (its connection closed) while the call was queued.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(this.call(budget, f));
        }));
        if !submitted {
            return Err(CallFailure::Instantiate("shutting down".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(CallFailure::Trap("the plugin thread ended".into())))
    }

    /// `on-request`.
    pub async fn on_request(
        self: &Arc<Self>,
        ctx: wit::Context,
        body: Bytes,
    ) -> Result<wit::RequestAction, CallFailure> {
        self.with_body(body, move |inst, borrowed| {
            inst.bindings
                .call_on_request(&mut inst.store, &ctx, borrowed)
        })
        .await
    }

    /// `on-response`.
    pub async fn on_response(
        self: &Arc<Self>,
        ctx: wit::Context,
        body: Bytes,
    ) -> Result<wit::ResponseAction, CallFailure> {
        self.with_body(body, move |inst, borrowed| {
            inst.bindings
                .call_on_response(&mut inst.store, &ctx, borrowed)
        })
        .await
    }

    /// Calls a generic hook off the async workers with `body` lent as a `message` resource,
    /// taken back from the instance's table afterwards.
    async fn with_body<T: Send + 'static>(
        self: &Arc<Self>,
        body: Bytes,
        hook: impl FnOnce(&mut Instance, Resource<MessageBody>) -> wasmtime::Result<T> + Send + 'static,
    ) -> Result<T, CallFailure> {
        let budget = Budget::scaled(self.timeout, 0, body.len());
        self.call_off_thread(budget, move |inst| {
            let res = inst.store.data_mut().table.push(MessageBody(body))?;
            let borrowed = Resource::<MessageBody>::new_borrow(res.rep());
            let out = hook(inst, borrowed);
            inst.store.data_mut().table.delete(res)?;
            out
        })
        .await
    }

    /// `on-produce` or `on-fetch` over `view`; returns the view as the plugin left it.
    pub async fn on_records(
        self: &Arc<Self>,
        fetch: bool,
        ctx: wit::Context,
        view: RecordsView,
    ) -> Result<RecordsOutcome, CallFailure> {
        let (records, bytes) = view.size();
        let budget = Budget::scaled(self.timeout, records, bytes);
        self.call_off_thread(budget, records_call(fetch, ctx, view))
            .await
    }
}

/// The body of an `on-produce` or `on-fetch` call.
type RecordsOutcome = (RecordsView, Result<(), wit::KafkaError>);

fn records_call(
    fetch: bool,
    ctx: wit::Context,
    view: RecordsView,
) -> impl FnOnce(&mut Instance) -> wasmtime::Result<RecordsOutcome> + Send + 'static {
    move |inst| {
        let res = inst.store.data_mut().table.push(view)?;
        let borrowed = Resource::<RecordsView>::new_borrow(res.rep());
        let out = if fetch {
            inst.bindings.call_on_fetch(&mut inst.store, &ctx, borrowed)
        } else {
            inst.bindings
                .call_on_produce(&mut inst.store, &ctx, borrowed)
        };
        let view = inst.store.data_mut().table.delete(res)?;
        out.map(|verdict| (view, verdict))
    }
}

fn classify(inst: &Instance, e: wasmtime::Error) -> CallFailure {
    if inst.store.data().limiter.refused {
        return CallFailure::OutOfMemory;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            let clock = &inst.store.data().clock;
            let (cpu, wall) = clock.interrupted.unwrap_or_else(|| clock.spent());
            CallFailure::Timeout {
                cpu,
                wall,
                budget: clock.budget.cpu,
            }
        }
        // The reason only (the client may see it): the wasm backtrace, tens of lines for a
        // language runtime, goes to the debug log.
        _ => {
            debug!(interceptor = %inst.store.data().services.name, "plugin trap: {e:?}");
            CallFailure::Trap(e.root_cause().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_deadline_charges_cpu_time_not_wall_time() {
        let budget = Budget::fixed(50 * MS);
        assert_eq!(budget.wall, WALL_MIN);
        // Woken after 50 ms of wall time with 10 ms of CPU (descheduled): go on, and look again
        // when the other 40 ms of CPU could have been used.
        assert_eq!(next_check(budget, 10 * MS, 50 * MS), Some(40 * MS));
        // Still descheduled much later: go on.
        assert_eq!(next_check(budget, 49 * MS, 1500 * MS), Some(MS));
        // The CPU budget is used up: interrupt, whatever the wall time.
        assert_eq!(next_check(budget, 50 * MS, 50 * MS), None);
        assert_eq!(next_check(budget, 51 * MS, 52 * MS), None);
        // The wall-clock ceiling holds even with CPU budget left.
        assert_eq!(next_check(budget, 20 * MS, WALL_MIN), None);
        assert_eq!(next_check(budget, 20 * MS, WALL_MIN - 5 * MS), Some(5 * MS));
    }

    #[test]
    fn the_budget_scales_with_the_batch() {
        assert_eq!(Budget::scaled(50 * MS, 0, 0), Budget::fixed(50 * MS));
        // 1 MiB in 1,000 records: 50 + 25 + 10 ms.
        let b = Budget::scaled(50 * MS, 1000, 1 << 20);
        assert_eq!(b.cpu, 85 * MS);
        assert_eq!(b.wall, WALL_MIN);
        // 60,000 small records.
        assert_eq!(Budget::scaled(50 * MS, 60_000, 0).cpu, 1550 * MS);
        assert_eq!(
            Budget::scaled(50 * MS, 60_000, 0).wall,
            31 * Duration::from_secs(1)
        );
    }

    #[test]
    fn the_thread_cpu_clock_moves_with_work_not_with_sleep() {
        let start = thread_cpu();
        std::thread::sleep(30 * MS);
        let slept = thread_cpu() - start;
        assert!(slept < 10 * MS, "sleeping used {slept:?} of CPU");
        // Work moves it (however descheduled this thread is on a busy machine).
        let start = thread_cpu();
        let wall = Instant::now();
        let mut n = 0u64;
        while thread_cpu() - start < 20 * MS {
            n = std::hint::black_box(n.wrapping_add(1));
            assert!(wall.elapsed() < Duration::from_secs(30));
        }
    }

    /// add-header (if built: `make plugins`) on 1 KiB records: µs per record and per MiB, and
    /// CPU against wall time of the call; a batch of the largest frame the gateway accepts
    /// stays within its budget.
    #[test]
    fn record_hook_cost_of_add_header() {
        record_hook_cost(
            "add-header",
            r#"{"headers": {"x-origin": "gateway"}}"#,
            &[(1000, 1024), (60_000, 16), (100_000, 1024)],
        );
    }

    /// The same for the Python plugin, which adds a header to every record the same way
    /// (slow to compile in a debug build: run by hand with `--ignored`).
    #[test]
    #[ignore]
    fn record_hook_cost_of_python_print() {
        record_hook_cost("python-print", "{}", &[(1000, 1024), (60_000, 16)]);
    }

    fn record_hook_cost(name: &str, config: &str, cases: &[(usize, usize)]) {
        let path = format!(
            "{}/../../target/plugins/{name}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipped: {path} not built (make plugins)");
            return;
        };
        let runtime = Runtime::new(None).unwrap();
        let plugin = runtime.load_plugin(name, &bytes).unwrap();
        let services = Arc::new(Services::new(
            "tag",
            Arc::default(),
            Arc::new(kms::Kms::open(None).unwrap()),
            Arc::new(services::DiscardMetrics),
            None,
        ));
        let timeout = 50 * MS;
        let instances = Instances::new(plugin, services, config.into(), timeout, 64).unwrap();
        let view = |records: usize, size: usize| RecordsView {
            fetch: false,
            partitions: vec![host::PartitionView::with_records(
                "t".into(),
                0,
                (0..records)
                    .map(|i| host::RecordView {
                        key: Some(Bytes::from(format!("k{i}"))),
                        value: Some(Bytes::from(vec![b'v'; size])),
                        headers: Vec::new(),
                        timestamp: 0,
                        removed: false,
                        changed: false,
                        batch: Some(0),
                        offset_delta: i as i32,
                        attributes: 0,
                    })
                    .collect(),
            )],
        };
        let ctx = wit::Context {
            interceptor: "tag".into(),
            vcluster: None,
            principal: None,
            groups: Vec::new(),
            client_id: None,
            client_address: "127.0.0.1:1".into(),
            api_key: 0,
            api_version: 9,
            correlation_id: 1,
        };
        for &(records, size) in cases {
            let v = view(records, size);
            let (_, bytes) = v.size();
            let budget = Budget::scaled(timeout, records, bytes);
            let (cpu0, wall0) = (thread_cpu(), Instant::now());
            // On this thread, so its CPU clock measures the call.
            let (mut out, verdict) = instances
                .call(budget, records_call(false, ctx.clone(), v))
                .unwrap();
            let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
            verdict.unwrap();
            assert_eq!(out.partitions[0].records()[records - 1].headers.len(), 1);
            let mib = bytes as f64 / (1 << 20) as f64;
            eprintln!(
                "{name}, {records} records of {size} B ({mib:.1} MiB): {:.2} µs/record, \
                 {:.1} ms/MiB, call {:.1} ms CPU / {:.1} ms wall, budget {:.0} ms CPU",
                cpu.as_secs_f64() * 1e6 / records as f64,
                cpu.as_secs_f64() * 1e3 / mib,
                cpu.as_secs_f64() * 1e3,
                wall.as_secs_f64() * 1e3,
                budget.cpu.as_secs_f64() * 1e3
            );
            assert!(cpu < budget.cpu / 2, "{cpu:?} of {budget:?}");
        }
    }
}
