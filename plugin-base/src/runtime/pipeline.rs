//! One pipeline instance: its plugins, and once started, its tasks.
//!
//! ```text
//! inputs ─┐                                   ┌─> flusher task 1 (own queue, retries)
//!         ├─> process queue ─> processor task ┤
//! host  ──┘   (bounded)        (processors,   └─> flusher task 2
//!  (ProcessLogGroup)            aggregator)
//! ```
//! Every queue is bounded, so a flusher that cannot deliver (the host's queue is full) slows
//! the processor, which slows the inputs: backpressure, never loss. Stopping goes inputs first,
//! then processors and the aggregator flush, then the flushers drain what they can until a
//! deadline; what they could not deliver is kept as [`Carried`] data, which the next instance
//! of the same pipeline takes over (or which is persisted at exit).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tailrace::ffi_boundary::panic_message;
use tailrace::plugin::{Aggregator, Flusher, MetricInput, Processor};
use tailrace::plugin_config::{PluginEntry, PluginManagerConfig};
use tailrace::PipelineEventGroup;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use crate::context::statistics::GroupSize;
use crate::context::{AlarmLevel, PipelineStats, PluginStats};
use crate::plugins::aggregators::context::default_for_host_feed;
use crate::plugins::aggregators::default::default_aggregator;
use crate::runtime::feed::{self, Feed, FeedReceiver};
use crate::runtime::registry::{
    BaseServices, PluginContext, PluginFactory, Registry, ServiceInput,
};

/// How long inputs get to stop.
const INPUT_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the processor task gets to drain its queue once the inputs stopped.
const PROCESSOR_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long flushers keep trying to deliver after a stop, before carrying the rest over.
const FLUSH_GRACE_RELOAD: Duration = Duration::from_millis(1500);
const FLUSH_GRACE_EXIT: Duration = Duration::from_millis(1000);
/// Retry backoff of a flusher whose destination is not ready or failed.
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Batches a flusher had not delivered when its instance stopped.
#[derive(Debug, Default)]
pub struct Carried {
    /// The `type` of the flusher they were meant for, as configured (suffixes kept).
    pub flusher_type: String,
    pub groups: Vec<PipelineEventGroup>,
}

/// One plugin of an instance, with its configured `type` and its counters.
struct Slot<T> {
    plugin_type: String,
    plugin: T,
    stats: Arc<PluginStats>,
}

struct Plugins {
    metric_inputs: Vec<Slot<Box<dyn MetricInput>>>,
    service_inputs: Vec<Slot<Box<dyn ServiceInput>>>,
    processors: Vec<Slot<Box<dyn Processor>>>,
    aggregator: Slot<Box<dyn Aggregator>>,
    flushers: Vec<Slot<Box<dyn Flusher>>>,
}

/// A plugin's id in its pipeline (the same on both sides: `tailrace::context::plugin_id`).
fn plugin_id(entry: &PluginEntry, position: usize) -> String {
    tailrace::context::plugin_id(&entry.plugin_type, position)
}

struct Running {
    input_stop: watch::Sender<bool>,
    inputs: Vec<JoinHandle<()>>,
    processor: JoinHandle<()>,
    flusher_deadline: watch::Sender<Option<Instant>>,
    flushers: Vec<JoinHandle<Carried>>,
}

pub struct PipelineInstance {
    pub ctx: Arc<PluginContext>,
    pub stats: Arc<PipelineStats>,
    has_input: bool,
    plugins: Option<Plugins>,
    feed: Option<Feed>,
    process_rx: Option<FeedReceiver>,
    carried: Vec<Carried>,
    running: Option<Running>,
}

impl PipelineInstance {
    /// Builds every plugin. An unknown input, processor or aggregator is skipped with an alarm
    /// (as iLogtail's base does); an unknown flusher or extension, bad options, or a plugin that
    /// panics while being built fail the whole pipeline.
    pub fn build(
        ctx: PluginContext,
        config: &PluginManagerConfig,
        registry: &Registry,
    ) -> Result<PipelineInstance, String> {
        let stats = Arc::new(PipelineStats::default());
        let slot = |entry: &PluginEntry, position: usize| {
            let id = plugin_id(entry, position);
            let plugin_stats = stats.plugin(entry.kind(), &id);
            let mut plugin_ctx = ctx.for_plugin(&id);
            plugin_ctx.plugin_stats = plugin_stats.clone();
            (plugin_ctx, plugin_stats)
        };
        let mut plugins = Plugins {
            metric_inputs: Vec::new(),
            service_inputs: Vec::new(),
            processors: Vec::new(),
            aggregator: Slot {
                plugin_type: "aggregator_default".to_owned(),
                plugin: default_aggregator(),
                stats: Arc::new(PluginStats::default()),
            },
            flushers: Vec::new(),
        };
        let skip = |entry: &PluginEntry, section: &str| {
            ctx.alarm(
                "PLUGIN_ALARM",
                AlarmLevel::Error,
                format!(
                    "{section}: unknown plugin type {:?}, skipped",
                    entry.plugin_type
                ),
            );
        };
        for (i, entry) in config.inputs.iter().enumerate() {
            let (plugin_ctx, plugin_stats) = slot(entry, i);
            match registry.get(entry.kind()) {
                Some(PluginFactory::MetricInput(b)) => plugins.metric_inputs.push(Slot {
                    plugin_type: entry.plugin_type.clone(),
                    plugin: construct(&plugin_ctx, entry, b)?,
                    stats: plugin_stats.clone(),
                }),
                Some(PluginFactory::ServiceInput(b)) => plugins.service_inputs.push(Slot {
                    plugin_type: entry.plugin_type.clone(),
                    plugin: construct(&plugin_ctx, entry, b)?,
                    stats: plugin_stats.clone(),
                }),
                _ => skip(entry, "inputs"),
            }
        }
        for (i, entry) in config.processors.iter().enumerate() {
            let (plugin_ctx, plugin_stats) = slot(entry, i);
            let processor = match registry.get(entry.kind()) {
                Some(PluginFactory::Processor(b)) => construct(&plugin_ctx, entry, b)?,
                Some(PluginFactory::CoreProcessor(b)) => {
                    let mut processor = construct(&plugin_ctx, entry, |_, detail| {
                        build_core_processor(b, detail)
                    })?;
                    processor.init(Arc::new(BaseServices::of(&plugin_ctx)));
                    processor
                }
                _ => {
                    skip(entry, "processors");
                    continue;
                }
            };
            plugins.processors.push(Slot {
                plugin_type: entry.plugin_type.clone(),
                plugin: processor,
                stats: plugin_stats,
            });
        }
        let mut aggregators = Vec::new();
        for (i, entry) in config.aggregators.iter().enumerate() {
            match registry.get(entry.kind()) {
                Some(PluginFactory::Aggregator(b)) => {
                    let (plugin_ctx, plugin_stats) = slot(entry, i);
                    aggregators.push(Slot {
                        plugin_type: entry.plugin_type.clone(),
                        plugin: construct(&plugin_ctx, entry, b)?,
                        stats: plugin_stats,
                    })
                }
                _ => skip(entry, "aggregators"),
            }
        }
        if aggregators.len() > 1 {
            ctx.alarm(
                "PLUGIN_ALARM",
                AlarmLevel::Warning,
                "aggregators: only the first aggregator is used",
            );
        }
        if let Some(first) = aggregators.into_iter().next() {
            plugins.aggregator = first;
        } else if plugins.metric_inputs.is_empty() && plugins.service_inputs.is_empty() {
            // Fed by the host, whose input is a file input: iLogtail's aggregator after a
            // file input keeps each file's lines together and in order.
            plugins.aggregator = Slot {
                plugin_type: "aggregator_context".to_owned(),
                plugin: default_for_host_feed(),
                stats: stats.plugin("aggregator_context", "aggregator_context/1"),
            };
        } else {
            plugins.aggregator.stats = stats.plugin("aggregator_default", "aggregator_default/1");
        }
        for (i, entry) in config.flushers.iter().enumerate() {
            match registry.get(entry.kind()) {
                Some(PluginFactory::Flusher(b)) => {
                    let (plugin_ctx, plugin_stats) = slot(entry, i);
                    plugins.flushers.push(Slot {
                        plugin_type: entry.plugin_type.clone(),
                        plugin: construct(&plugin_ctx, entry, b)?,
                        stats: plugin_stats,
                    })
                }
                _ => {
                    return Err(format!(
                        "flushers: unknown flusher type {:?}",
                        entry.plugin_type
                    ))
                }
            }
        }
        if let Some(entry) = config.extensions.first() {
            return Err(format!(
                "extensions: unknown extension type {:?}",
                entry.plugin_type
            ));
        }
        if plugins.flushers.is_empty() {
            // Without a flusher, data goes back to the host, as iLogtail's base does.
            let entry = PluginEntry {
                plugin_type: "flusher_sls".to_owned(),
                detail: serde_json::json!({}),
            };
            match registry.get("flusher_sls") {
                Some(PluginFactory::Flusher(b)) => {
                    let (plugin_ctx, plugin_stats) = slot(&entry, 0);
                    plugins.flushers.push(Slot {
                        plugin_type: entry.plugin_type.clone(),
                        plugin: construct(&plugin_ctx, &entry, b)?,
                        stats: plugin_stats,
                    })
                }
                _ => return Err("no flusher, and flusher_sls is not registered".to_owned()),
            }
        }
        let (feed, process_rx) = feed::channel(
            ctx.global.default_log_queue_size,
            ctx.global.default_log_queue_bytes,
        );
        Ok(PipelineInstance {
            has_input: !plugins.metric_inputs.is_empty() || !plugins.service_inputs.is_empty(),
            ctx: Arc::new(ctx),
            stats,
            plugins: Some(plugins),
            feed: Some(feed),
            process_rx: Some(process_rx),
            carried: Vec::new(),
            running: None,
        })
    }

    pub fn has_input(&self) -> bool {
        self.has_input
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Where the host's data for this pipeline goes (None once it is stopping).
    pub fn feed(&self) -> Option<Feed> {
        self.feed.clone()
    }

    /// Takes over data another instance of the same pipeline could not deliver.
    pub fn take_over(&mut self, carried: Vec<Carried>) {
        self.carried
            .extend(carried.into_iter().filter(|c| !c.groups.is_empty()));
    }

    /// Gives up the undelivered data: what a stopped instance could not deliver, and what a
    /// never-started one was handed (taken over, or fed by the host and not yet processed).
    pub fn take_carried(&mut self) -> Vec<Carried> {
        let mut carried = std::mem::take(&mut self.carried);
        if let Some(rx) = &mut self.process_rx {
            let mut unprocessed = Vec::new();
            while let Ok(group) = rx.try_recv() {
                unprocessed.push(group);
            }
            if !unprocessed.is_empty() {
                // Not yet processed: the next instance's flushers get it as it is.
                carried.push(Carried {
                    flusher_type: String::new(),
                    groups: unprocessed,
                });
            }
        }
        carried
    }

    /// Starts the tasks, outputs first: flushers, then the processor, then the inputs.
    pub fn start(&mut self, rt: &Handle) {
        let (Some(plugins), Some(process_rx)) = (self.plugins.take(), self.process_rx.take())
        else {
            return;
        };
        let Plugins {
            metric_inputs,
            service_inputs,
            processors,
            aggregator,
            flushers,
        } = plugins;
        let global = &self.ctx.global;
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let mut carried = std::mem::take(&mut self.carried);
        let flusher_count = flushers.len();
        let mut flusher_txs = Vec::with_capacity(flusher_count);
        let mut flusher_tasks = Vec::with_capacity(flusher_count);
        let max_retries = max_flush_retries(global);
        for (i, slot) in flushers.into_iter().enumerate() {
            let Slot {
                plugin_type: flusher_type,
                plugin: flusher,
                stats: plugin_stats,
            } = slot;
            let (tx, rx) = mpsc::channel(global.default_log_group_queue_size.max(1));
            let mut pending = Vec::new();
            for c in carried.iter_mut() {
                if c.flusher_type == flusher_type {
                    pending.append(&mut c.groups);
                } else if i + 1 == flusher_count {
                    // Meant for a flusher this instance does not have: every flusher gets it.
                    pending.append(&mut c.groups);
                } else {
                    pending.extend(c.groups.iter().cloned());
                }
            }
            flusher_txs.push(tx);
            flusher_tasks.push(rt.spawn(run_flusher(FlusherTask {
                flusher_type,
                flusher,
                rx,
                pending,
                deadline: deadline_rx.clone(),
                queue_cap: global.default_log_group_queue_size.max(1),
                max_retries,
                failed_attempts: 0,
                ctx: self.ctx.clone(),
                stats: self.stats.clone(),
                plugin_stats,
            })));
        }
        let processor = rt.spawn(run_processors(ProcessorTask {
            rx: process_rx,
            processors,
            aggregator,
            flushers: flusher_txs,
            interval: Duration::from_millis(global.aggregat_interval_ms.max(1)),
            ctx: self.ctx.clone(),
            stats: self.stats.clone(),
        }));
        let (input_stop, input_stop_rx) = watch::channel(false);
        let feed = self.feed.clone().expect("a built instance has its feed");
        let interval = Duration::from_millis(global.input_interval_ms.max(1));
        let first_delay = first_collect_delay(interval.min(Duration::from_millis(
            global.input_max_first_collect_delay_ms,
        )));
        let mut inputs = Vec::new();
        for input in metric_inputs {
            let interval = input
                .plugin
                .interval()
                .unwrap_or(interval)
                .max(Duration::from_millis(1));
            inputs.push(rt.spawn(run_metric_input(
                input,
                feed.clone(),
                interval,
                first_delay,
                input_stop_rx.clone(),
                self.ctx.clone(),
            )));
        }
        for input in service_inputs {
            let feed = feed.for_input(input.stats.clone());
            inputs.push(rt.spawn(input.plugin.run(feed, input_stop_rx.clone())));
        }
        self.running = Some(Running {
            input_stop,
            inputs,
            processor,
            flusher_deadline: deadline_tx,
            flushers: flusher_tasks,
        });
    }

    /// Stops the tasks: inputs first, then the processor drains its queue and the aggregator
    /// flushes, then the flushers deliver what they can until a deadline. What they could not
    /// deliver stays in the instance (see [`PipelineInstance::take_carried`]).
    pub async fn stop(&mut self, exit: bool) {
        let Some(running) = self.running.take() else {
            return;
        };
        let grace = if exit {
            FLUSH_GRACE_EXIT
        } else {
            FLUSH_GRACE_RELOAD
        };
        let deadline = Instant::now() + grace;
        // From now on flushers accept everything, so nothing upstream can block on them.
        let _ = running.flusher_deadline.send(Some(deadline));
        let _ = running.input_stop.send(true);
        let ctx = self.ctx.clone();
        for handle in running.inputs {
            await_task(&ctx, handle, INPUT_STOP_TIMEOUT, "an input").await;
        }
        self.feed = None;
        await_task(
            &ctx,
            running.processor,
            PROCESSOR_STOP_TIMEOUT,
            "the processors",
        )
        .await;
        for handle in running.flushers {
            let abort = handle.abort_handle();
            match timeout(grace + Duration::from_millis(500), handle).await {
                Ok(Ok(carried)) => {
                    if !carried.groups.is_empty() {
                        self.carried.push(carried)
                    }
                }
                Ok(Err(e)) => stop_alarm(&ctx, format!("a flusher task failed: {e}")),
                Err(_) => {
                    abort.abort();
                    stop_alarm(
                        &ctx,
                        "a flusher did not stop in time; its batches are lost".into(),
                    );
                }
            }
        }
    }
}

async fn await_task(ctx: &PluginContext, handle: JoinHandle<()>, limit: Duration, what: &str) {
    let abort = handle.abort_handle();
    match timeout(limit, handle).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => stop_alarm(ctx, format!("{what} failed: {e}")),
        Err(_) => {
            abort.abort();
            stop_alarm(ctx, format!("{what} did not stop within {limit:?}"));
        }
    }
}

fn stop_alarm(ctx: &PluginContext, message: String) {
    ctx.alarm("CONFIG_STOP_TIMEOUT_ALARM", AlarmLevel::Error, message);
}

/// Builds one plugin; a panic in its constructor becomes an error and an alarm.
/// Builds one of the core's processors (shared with the host) from its `detail`.
fn build_core_processor(
    build: tailrace::processor::Constructor,
    detail: &serde_json::Value,
) -> Result<Box<dyn tailrace::plugin::Processor>, String> {
    match detail {
        serde_json::Value::Object(options) => build(options).map_err(|e| e.to_string()),
        other => Err(format!(
            "detail: expected an object of options, got {other}"
        )),
    }
}

fn construct<T>(
    ctx: &PluginContext,
    entry: &PluginEntry,
    build: impl FnOnce(&PluginContext, &serde_json::Value) -> Result<T, String>,
) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(|| build(ctx, &entry.detail))) {
        Ok(Ok(plugin)) => Ok(plugin),
        Ok(Err(e)) => Err(format!("plugin {:?}: {e}", entry.plugin_type)),
        Err(payload) => {
            let message = format!(
                "plugin {:?} panicked while loading: {}",
                entry.plugin_type,
                panic_message(&*payload)
            );
            ctx.alarm("PLUGIN_PANIC_ALARM", AlarmLevel::Critical, message.clone());
            Err(message)
        }
    }
}

/// A pseudo-random delay below `max`, so that many inputs do not all collect at once.
fn first_collect_delay(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(u64::from(nanos) % max_ms)
    }
}

async fn run_metric_input(
    mut input: Slot<Box<dyn MetricInput>>,
    out: Feed,
    interval: Duration,
    first_delay: Duration,
    mut stop: watch::Receiver<bool>,
    ctx: Arc<PluginContext>,
) {
    let started = tokio::select! {
        _ = tokio::time::sleep(first_delay) => true,
        _ = stop.wait_for(|stopped| *stopped) => false,
    };
    if started {
        collect_until_stopped(&mut input, &out, interval, &mut stop, &ctx).await;
    }
    let plugin = &mut input.plugin;
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| plugin.stop())) {
        input.stats.record_error();
        ctx.alarm(
            "PLUGIN_PANIC_ALARM",
            AlarmLevel::Critical,
            format!(
                "input {:?} panicked while stopping: {}",
                input.plugin_type,
                panic_message(&*payload)
            ),
        );
    }
}

async fn collect_until_stopped(
    input: &mut Slot<Box<dyn MetricInput>>,
    out: &Feed,
    interval: Duration,
    stop: &mut watch::Receiver<bool>,
    ctx: &PluginContext,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let mut groups = Vec::new();
        let plugin = &mut input.plugin;
        let began = std::time::Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| plugin.collect(&mut groups)));
        input.stats.record_time(began.elapsed());
        input.stats.record_out(&groups);
        if let Err(payload) = result {
            input.stats.record_error();
            ctx.alarm(
                "PLUGIN_PANIC_ALARM",
                AlarmLevel::Critical,
                format!(
                    "input {:?} panicked: {}",
                    input.plugin_type,
                    panic_message(&*payload)
                ),
            );
        }
        for group in groups {
            // Stop only after what was collected is queued: the processor keeps draining.
            if out.send(group).await.is_err() {
                return;
            }
        }
    }
}

struct ProcessorTask {
    rx: FeedReceiver,
    processors: Vec<Slot<Box<dyn Processor>>>,
    aggregator: Slot<Box<dyn Aggregator>>,
    flushers: Vec<mpsc::Sender<PipelineEventGroup>>,
    interval: Duration,
    ctx: Arc<PluginContext>,
    stats: Arc<PipelineStats>,
}

async fn run_processors(mut task: ProcessorTask) {
    let mut tick = tokio::time::interval_at(Instant::now() + task.interval, task.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ready = tokio::select! {
            msg = task.rx.recv() => match msg {
                Some(group) => task.process(group),
                None => break,
            },
            _ = tick.tick() => task.flush_aggregator(),
        };
        task.dispatch(ready).await;
    }
    // Stopping (HoldOn, reload, exit): what the aggregator holds goes to the flushers now.
    let rest = task.flush_aggregator();
    task.dispatch(rest).await;
}

impl ProcessorTask {
    fn process(&mut self, mut group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        PipelineStats::add(&self.stats.events_in, group.len());
        for (k, v) in &self.ctx.global.tags {
            if group.tag(k.as_bytes()).is_none() {
                group.set_tag(k.clone(), v.clone());
            }
        }
        // One measure between two stages: what a processor hands on is what the next takes.
        let mut size = GroupSize::of(&group);
        for slot in &mut self.processors {
            slot.stats.add_in(size);
            let processor = &mut slot.plugin;
            let began = std::time::Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| processor.process(&mut group)));
            slot.stats.record_time(began.elapsed());
            size = GroupSize::of(&group);
            slot.stats.add_out(size);
            if let Err(payload) = result {
                slot.stats.record_error();
                PipelineStats::add(&self.stats.plugin_panics, 1);
                self.ctx.alarm(
                    "PLUGIN_PANIC_ALARM",
                    AlarmLevel::Critical,
                    format!(
                        "processor {:?} panicked: {}; the batch goes on as the processor left it",
                        slot.plugin_type,
                        panic_message(&*payload)
                    ),
                );
            }
        }
        let aggregator = &mut self.aggregator;
        aggregator.stats.add_in(size);
        let began = std::time::Instant::now();
        let full = aggregator.plugin.add(group);
        aggregator.stats.record_time(began.elapsed());
        aggregator.stats.record_out(&full);
        full
    }

    fn flush_aggregator(&mut self) -> Vec<PipelineEventGroup> {
        let aggregator = &mut self.aggregator;
        let began = std::time::Instant::now();
        let out = aggregator.plugin.flush();
        aggregator.stats.record_time(began.elapsed());
        aggregator.stats.record_out(&out);
        out
    }

    async fn dispatch(&mut self, groups: Vec<PipelineEventGroup>) {
        for group in groups {
            if group.is_empty() {
                // Nothing left to deliver: delivered, as far as whoever waits for it knows.
                group.acks.delivered();
                continue;
            }
            PipelineStats::add(&self.stats.events_out, group.len());
            let mut group = group;
            group.acks.split(self.flushers.len());
            if let Some((last, others)) = self.flushers.split_last() {
                for tx in others {
                    let _ = tx.send(group.clone()).await;
                }
                let _ = last.send(group).await;
            }
        }
    }
}

struct FlusherTask {
    flusher_type: String,
    flusher: Box<dyn Flusher>,
    rx: mpsc::Receiver<PipelineEventGroup>,
    pending: Vec<PipelineEventGroup>,
    deadline: watch::Receiver<Option<Instant>>,
    queue_cap: usize,
    /// Failed delivery attempts after which the oldest batch is dropped (with an alarm and a
    /// count); 0: never drop, retry until delivered or carried over.
    max_retries: u64,
    /// Failed attempts in a row at delivering the oldest batch.
    failed_attempts: u64,
    ctx: Arc<PluginContext>,
    stats: Arc<PipelineStats>,
    plugin_stats: Arc<PluginStats>,
}

/// `MaxFlushRetryTimes` in the global block (Tailrace's): how many failed attempts a flusher of
/// the plugin base makes before it drops a batch. Unset or 0: it never drops one; the batch is
/// retried with backoff, carried over on a reload and persisted at exit.
fn max_flush_retries(global: &tailrace::plugin_config::GlobalConfig) -> u64 {
    global
        .extra
        .get("MaxFlushRetryTimes")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

async fn run_flusher(mut task: FlusherTask) -> Carried {
    let mut backoff = MIN_BACKOFF;
    let mut retry_at: Option<Instant> = None;
    let mut closed = false;
    let mut deadline_gone = false;
    loop {
        let deadline = *task.deadline.borrow();
        let now = Instant::now();
        if !task.pending.is_empty() && retry_at.is_none_or(|t| now >= t) {
            if task.deliver() {
                backoff = MIN_BACKOFF;
                retry_at = None;
            } else {
                task.count_failure(deadline.is_some());
                retry_at = Some(now + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if closed && task.pending.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Take what is still queued, then carry it all over.
            while let Ok(group) = task.rx.try_recv() {
                task.plugin_stats.record_in(&group);
                task.pending.push(group);
            }
            break;
        }
        // While running, hold at most a queue's worth (backpressure); once stopping, take
        // everything so that nothing upstream blocks.
        let accepting = !closed && (task.pending.len() < task.queue_cap || deadline.is_some());
        let wake = match (retry_at.filter(|_| !task.pending.is_empty()), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            msg = task.rx.recv(), if accepting => match msg {
                Some(group) => {
                    task.plugin_stats.record_in(&group);
                    task.pending.push(group);
                    // And whatever else is queued already (up to a queue's worth): one flush
                    // call gets them all, so that a flusher can send them together.
                    while task.pending.len() < task.queue_cap {
                        let Ok(group) = task.rx.try_recv() else {
                            break;
                        };
                        task.plugin_stats.record_in(&group);
                        task.pending.push(group);
                    }
                }
                None => closed = true,
            },
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            changed = task.deadline.changed(), if !deadline_gone => {
                deadline_gone = changed.is_err();
            }
        }
    }
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task.flusher.stop())) {
        task.ctx.alarm(
            "PLUGIN_PANIC_ALARM",
            AlarmLevel::Critical,
            format!(
                "flusher {:?} panicked while stopping: {}",
                task.flusher_type,
                panic_message(&*payload)
            ),
        );
    }
    Carried {
        flusher_type: task.flusher_type,
        groups: task.pending,
    }
}

impl FlusherTask {
    /// After a failed attempt: once the retry limit is reached (and not while stopping, when
    /// the rest is carried over instead), the oldest batch is dropped, loudly.
    fn count_failure(&mut self, stopping: bool) {
        self.failed_attempts += 1;
        if self.max_retries == 0 || stopping || self.failed_attempts < self.max_retries {
            return;
        }
        self.failed_attempts = 0;
        if self.pending.is_empty() {
            return;
        }
        let dropped = self.pending.remove(0);
        // Nobody will deliver it: whoever waits for it must not wait forever.
        dropped.acks.delivered();
        PipelineStats::add(&self.stats.groups_dropped, 1);
        self.plugin_stats.record_error();
        self.ctx.alarm(
            "DISCARD_DATA_ALARM",
            AlarmLevel::Error,
            format!(
                "flusher {:?}: a batch of {} events dropped after {} failed attempts \
                 (MaxFlushRetryTimes)",
                self.flusher_type,
                dropped.len(),
                self.max_retries
            ),
        );
    }

    /// One delivery attempt of everything pending; true when all of it was delivered.
    fn deliver(&mut self) -> bool {
        let flusher = &mut self.flusher;
        let ready = catch_unwind(AssertUnwindSafe(|| flusher.is_ready())).unwrap_or(false);
        if !ready {
            PipelineStats::add(&self.stats.flush_retries, 1);
            return false;
        }
        let before = self.pending.len();
        let acks: Vec<_> = self.pending.iter().map(|g| g.acks.clone()).collect();
        let sizes: Vec<_> = self.pending.iter().map(GroupSize::of).collect();
        let pending = &mut self.pending;
        let began = std::time::Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| flusher.flush(pending)));
        self.plugin_stats.record_time(began.elapsed());
        let delivered = before - self.pending.len();
        if delivered > 0 {
            self.failed_attempts = 0;
        }
        // What is left need not be a tail (a flusher may send groups concurrently). Groups are
        // told apart by their hooks, and several groups may share the same hooks (the runs an
        // aggregator cut one group into share one countdown): each set of hooks is told once
        // per group of it that is no longer pending.
        for (i, ack) in acks.iter().enumerate() {
            if ack.is_empty() || acks[..i].iter().any(|seen| seen.same_hooks(ack)) {
                continue;
            }
            let before = acks.iter().filter(|a| a.same_hooks(ack)).count();
            let left = self
                .pending
                .iter()
                .filter(|g| g.acks.same_hooks(ack))
                .count();
            for _ in left..before {
                ack.delivered();
            }
        }
        if delivered > 0 {
            let left: Vec<GroupSize> = self.pending.iter().map(GroupSize::of).collect();
            let sum = |s: &[GroupSize]| {
                s.iter().fold(GroupSize::default(), |a, b| GroupSize {
                    events: a.events + b.events,
                    bytes: a.bytes + b.bytes,
                })
            };
            let (all, kept) = (sum(&sizes), sum(&left));
            self.plugin_stats.add_out(GroupSize {
                events: all.events.saturating_sub(kept.events),
                bytes: all.bytes.saturating_sub(kept.bytes),
            });
        }
        PipelineStats::add(&self.stats.groups_flushed, delivered);
        match result {
            Ok(Ok(())) if self.pending.is_empty() => true,
            Ok(Ok(())) => false,
            Ok(Err(reason)) => {
                self.plugin_stats.record_error();
                PipelineStats::add(&self.stats.flush_retries, 1);
                self.ctx.alarm(
                    "FLUSH_DATA_ALARM",
                    AlarmLevel::Warning,
                    format!(
                        "flusher {:?}: {reason}; {} batches kept for retry",
                        self.flusher_type,
                        self.pending.len()
                    ),
                );
                false
            }
            Err(payload) => {
                self.plugin_stats.record_error();
                PipelineStats::add(&self.stats.plugin_panics, 1);
                self.ctx.alarm(
                    "PLUGIN_PANIC_ALARM",
                    AlarmLevel::Critical,
                    format!(
                        "flusher {:?} panicked: {}; its batches are kept for retry",
                        self.flusher_type,
                        panic_message(&*payload)
                    ),
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_are_stable_and_follow_ilogtail_suffixes() {
        let entry = |t: &str| PluginEntry {
            plugin_type: t.to_owned(),
            detail: serde_json::json!({}),
        };
        assert_eq!(
            plugin_id(&entry("processor_regex/3"), 0),
            "processor_regex/3"
        );
        assert_eq!(plugin_id(&entry("flusher_sls/4#100"), 0), "flusher_sls/4");
        assert_eq!(plugin_id(&entry("flusher_sls#100"), 1), "flusher_sls/2");
        assert_eq!(plugin_id(&entry("metric_mock"), 0), "metric_mock/1");
    }

    /// A flusher that delivers every group but the second.
    struct KeepsTheSecond;

    impl Flusher for KeepsTheSecond {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            let second = groups.remove(1);
            groups.clear();
            groups.push(second);
            Err("the second failed".to_owned())
        }
    }

    #[derive(Default)]
    struct Hook(std::sync::atomic::AtomicUsize);

    impl tailrace::DeliveryHook for Hook {
        fn delivered(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The runs an aggregator cut one group into share its hooks: a run delivered while
    /// another is left still counts, so the hooks run once all of them are delivered.
    #[test]
    fn runs_that_share_their_hooks_each_count_when_delivered() {
        let hook = Arc::new(Hook::default());
        let mut acks = tailrace::Acks::default();
        acks.push(hook.clone());
        acks.split(3);
        let pending = (0..3)
            .map(|_| {
                let mut group = PipelineEventGroup {
                    acks: acks.clone(),
                    ..Default::default()
                };
                group
                    .events
                    .push(tailrace::PipelineEvent::Log(tailrace::LogEvent::new(
                        1, None,
                    )));
                group
            })
            .collect();
        let (_tx, rx) = mpsc::channel(1);
        let (_deadline_tx, deadline) = watch::channel(None);
        let mut task = FlusherTask {
            flusher_type: "flusher_test".to_owned(),
            flusher: Box::new(KeepsTheSecond),
            rx,
            pending,
            deadline,
            queue_cap: 10,
            max_retries: 0,
            failed_attempts: 0,
            ctx: Arc::new(crate::runtime::registry::tests_support::context("c")),
            stats: Arc::new(PipelineStats::default()),
            plugin_stats: Arc::new(PluginStats::default()),
        };
        assert!(!task.deliver());
        assert_eq!(hook.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        task.flusher = Box::new(DeliversAll);
        assert!(task.deliver());
        assert_eq!(
            hook.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the hook runs once, after the third run"
        );
    }

    struct DeliversAll;

    impl Flusher for DeliversAll {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            groups.clear();
            Ok(())
        }
    }

    #[test]
    fn a_flusher_may_leave_a_group_that_is_not_the_tail() {
        let hooks: Vec<Arc<Hook>> = (0..3).map(|_| Arc::new(Hook::default())).collect();
        let pending = hooks
            .iter()
            .map(|hook| {
                let mut group = PipelineEventGroup::default();
                group.acks.push(hook.clone());
                group
                    .events
                    .push(tailrace::PipelineEvent::Log(tailrace::LogEvent::new(
                        1, None,
                    )));
                group
            })
            .collect();
        let (_tx, rx) = mpsc::channel(1);
        let (_deadline_tx, deadline) = watch::channel(None);
        let plugin_stats = Arc::new(PluginStats::default());
        let mut task = FlusherTask {
            flusher_type: "flusher_test".to_owned(),
            flusher: Box::new(KeepsTheSecond),
            rx,
            pending,
            deadline,
            queue_cap: 10,
            max_retries: 0,
            failed_attempts: 0,
            ctx: Arc::new(crate::runtime::registry::tests_support::context("c")),
            stats: Arc::new(PipelineStats::default()),
            plugin_stats: plugin_stats.clone(),
        };
        assert!(!task.deliver());
        let counts: Vec<usize> = hooks
            .iter()
            .map(|h| h.0.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        assert_eq!(counts, [1, 0, 1], "the first and third were delivered");
        assert_eq!(task.pending.len(), 1);
        assert_eq!(
            plugin_stats
                .events_out
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }
}
