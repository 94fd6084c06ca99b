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

use crate::context::{AlarmLevel, PipelineStats};
use crate::plugins::aggregators::default::default_aggregator;
use crate::runtime::registry::{PluginContext, PluginFactory, Registry, ServiceInput};

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

struct Plugins {
    metric_inputs: Vec<(String, Box<dyn MetricInput>)>,
    service_inputs: Vec<(String, Box<dyn ServiceInput>)>,
    processors: Vec<(String, Box<dyn Processor>)>,
    aggregator: Box<dyn Aggregator>,
    flushers: Vec<(String, Box<dyn Flusher>)>,
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
    feed: Option<mpsc::Sender<PipelineEventGroup>>,
    process_rx: Option<mpsc::Receiver<PipelineEventGroup>>,
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
        let mut plugins = Plugins {
            metric_inputs: Vec::new(),
            service_inputs: Vec::new(),
            processors: Vec::new(),
            aggregator: default_aggregator(),
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
        for entry in &config.inputs {
            match registry.get(entry.kind()) {
                Some(PluginFactory::MetricInput(b)) => plugins
                    .metric_inputs
                    .push((entry.plugin_type.clone(), construct(&ctx, entry, b)?)),
                Some(PluginFactory::ServiceInput(b)) => plugins
                    .service_inputs
                    .push((entry.plugin_type.clone(), construct(&ctx, entry, b)?)),
                _ => skip(entry, "inputs"),
            }
        }
        for entry in &config.processors {
            match registry.get(entry.kind()) {
                Some(PluginFactory::Processor(b)) => plugins
                    .processors
                    .push((entry.plugin_type.clone(), construct(&ctx, entry, b)?)),
                Some(PluginFactory::CoreProcessor(b)) => plugins.processors.push((
                    entry.plugin_type.clone(),
                    construct(&ctx, entry, |_, detail| build_core_processor(b, detail))?,
                )),
                _ => skip(entry, "processors"),
            }
        }
        let mut aggregators = Vec::new();
        for entry in &config.aggregators {
            match registry.get(entry.kind()) {
                Some(PluginFactory::Aggregator(b)) => aggregators.push(construct(&ctx, entry, b)?),
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
        }
        for entry in &config.flushers {
            match registry.get(entry.kind()) {
                Some(PluginFactory::Flusher(b)) => plugins
                    .flushers
                    .push((entry.plugin_type.clone(), construct(&ctx, entry, b)?)),
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
                Some(PluginFactory::Flusher(b)) => plugins
                    .flushers
                    .push((entry.plugin_type.clone(), construct(&ctx, &entry, b)?)),
                _ => return Err("no flusher, and flusher_sls is not registered".to_owned()),
            }
        }
        let (feed, process_rx) = mpsc::channel(ctx.global.default_log_queue_size.max(1));
        Ok(PipelineInstance {
            has_input: !plugins.metric_inputs.is_empty() || !plugins.service_inputs.is_empty(),
            ctx: Arc::new(ctx),
            stats: Arc::new(PipelineStats::default()),
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
    pub fn feed(&self) -> Option<mpsc::Sender<PipelineEventGroup>> {
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
        for (i, (flusher_type, flusher)) in flushers.into_iter().enumerate() {
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
                ctx: self.ctx.clone(),
                stats: self.stats.clone(),
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
        for (input_type, input) in metric_inputs {
            inputs.push(rt.spawn(run_metric_input(
                input_type,
                input,
                feed.clone(),
                interval,
                first_delay,
                input_stop_rx.clone(),
                self.ctx.clone(),
            )));
        }
        for (_, input) in service_inputs {
            inputs.push(rt.spawn(input.run(feed.clone(), input_stop_rx.clone())));
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
    input_type: String,
    mut input: Box<dyn MetricInput>,
    out: mpsc::Sender<PipelineEventGroup>,
    interval: Duration,
    first_delay: Duration,
    mut stop: watch::Receiver<bool>,
    ctx: Arc<PluginContext>,
) {
    tokio::select! {
        _ = tokio::time::sleep(first_delay) => {}
        _ = stop.wait_for(|stopped| *stopped) => return,
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let mut groups = Vec::new();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| input.collect(&mut groups))) {
            ctx.alarm(
                "PLUGIN_PANIC_ALARM",
                AlarmLevel::Critical,
                format!(
                    "input {input_type:?} panicked: {}",
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
    rx: mpsc::Receiver<PipelineEventGroup>,
    processors: Vec<(String, Box<dyn Processor>)>,
    aggregator: Box<dyn Aggregator>,
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
            _ = tick.tick() => task.aggregator.flush(),
        };
        task.dispatch(ready).await;
    }
    let rest = task.aggregator.flush();
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
        for (processor_type, processor) in &mut self.processors {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| processor.process(&mut group))) {
                PipelineStats::add(&self.stats.plugin_panics, 1);
                self.ctx.alarm(
                    "PLUGIN_PANIC_ALARM",
                    AlarmLevel::Critical,
                    format!(
                        "processor {processor_type:?} panicked: {}; the batch goes on as the \
                         processor left it",
                        panic_message(&*payload)
                    ),
                );
            }
        }
        self.aggregator.add(group)
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
    ctx: Arc<PluginContext>,
    stats: Arc<PipelineStats>,
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
                Some(group) => task.pending.push(group),
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
        let pending = &mut self.pending;
        let result = catch_unwind(AssertUnwindSafe(|| flusher.flush(pending)));
        let delivered = before - self.pending.len();
        for ack in &acks[..delivered] {
            ack.delivered();
        }
        PipelineStats::add(&self.stats.groups_flushed, delivered);
        match result {
            Ok(Ok(())) if self.pending.is_empty() => true,
            Ok(Ok(())) => false,
            Ok(Err(reason)) => {
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
