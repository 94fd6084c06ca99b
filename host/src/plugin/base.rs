//! The threads that call into the plugin base. A control thread runs `InitPluginBaseV2` and the
//! hold-on windows (HoldOn → LoadConfig of every live base pipeline → Resume). Batches go to the
//! base through each pipeline's own sender queue (`feed_for`), served by the shared flusher
//! runner. Neither path can hold up native collection, so a base that hangs stalls only the
//! pipelines that use it; the main loop notices and says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tailrace::plugin::Flusher;
use tailrace::rslice::{GoSlice, GoString};
use tailrace::PipelineEventGroup;

use crate::plugin::delivery::Deliveries;
use crate::plugin::loader::BaseApi;

/// What the base should run after a window: config name (`P/1`, `P/2`) → its plugin JSON.
pub type BaseConfigs = BTreeMap<String, BaseConfig>;

#[derive(Clone, Debug, PartialEq)]
pub struct BaseConfig {
    pub json: String,
    pub logstore_key: i64,
}

/// The outcome of one window.
#[derive(Debug)]
pub struct WindowReport {
    pub id: u64,
    /// Config name → why it failed to load (and whether the previous version was reloaded in
    /// its place); or why the base could not run the window at all.
    pub failures: Result<BTreeMap<String, String>, String>,
}

enum Control {
    Init { global_json: String },
    Window { id: u64, configs: BaseConfigs },
    Exit,
}

/// The flusher behind a pipeline's feed to its part in the plugin base (`P/2`): a sender
/// queue like any native flusher's, served by the shared flusher runner, so a base that
/// refuses or hangs holds up that pipeline's feed only.
struct BaseFeed {
    api: BaseApi,
    config_name: String,
    /// With Tailrace's base: the packs that wait for its delivery report.
    deliveries: Option<Arc<Deliveries>>,
    pb: Vec<u8>,
    /// When a refusal was last reported.
    reported: Option<Instant>,
}

impl Flusher for BaseFeed {
    /// A batch the base accepted is acknowledged when the base reports it delivered (or at once,
    /// with a base that never reports).
    fn takes_acks(&self) -> bool {
        true
    }

    /// `ProcessLogGroup` takes a serialized LogGroup.
    fn takes_encoded(&self) -> bool {
        true
    }

    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        let mut delivered = 0;
        let mut result = Ok(());
        for group in groups.iter_mut() {
            let pb = tailrace::proto::log_group_bytes(group, &mut self.pb);
            let pack = self.deliveries.as_ref().map(|d| {
                let (seq, id) = d.next_pack();
                // Before the call: the base may report the pack before the call returns.
                d.sending(seq, group.acks.clone());
                (seq, id)
            });
            let pack_id = pack.as_ref().map_or("", |(_, id)| id.as_str());
            // SAFETY: GoString/GoSlice borrowing live buffers for the duration of the call.
            let code = unsafe {
                (self.api.process_log_group)(
                    go_str(&self.config_name),
                    GoSlice::from_bytes(pb),
                    go_str(pack_id),
                )
            };
            if code != 0 {
                if let (Some(deliveries), Some((seq, _))) = (&self.deliveries, &pack) {
                    deliveries.refused(*seq);
                }
                if self
                    .reported
                    .is_none_or(|t| t.elapsed() >= FEED_REFUSED_REPORT)
                {
                    self.reported = Some(Instant::now());
                    tracing::error!(
                        config = self.config_name,
                        code,
                        "the plugin base refuses a batch; retrying (collection for this pipeline waits)"
                    );
                }
                result = Err(format!("ProcessLogGroup returned {code}"));
                break;
            }
            // Accepted: with a base that reports, the pack holds the acknowledgements (run
            // once it is delivered); with one that does not, acceptance is delivery.
            let acks = std::mem::take(&mut group.acks);
            if pack.is_none() {
                acks.delivered();
            }
            delivered += 1;
        }
        groups.drain(..delivered);
        result
    }
}

/// The host's handle on the plugin base.
pub struct BaseClient {
    control: Sender<Control>,
    reports: Receiver<WindowReport>,
    api: BaseApi,
    next_window: u64,
    /// Window sent and not yet reported, since when; and whether the stall was reported.
    pending: Option<(u64, Instant, bool)>,
    control_thread: Option<JoinHandle<()>>,
}

/// How long a window may take before the host says the base is stuck.
const STALL_WARNING: Duration = Duration::from_secs(5);
/// How often a batch the base keeps refusing is reported (it is retried as long as its
/// pipeline lives: dropping it would let the checkpoint pass data never delivered).
const FEED_REFUSED_REPORT: Duration = Duration::from_secs(30);

impl BaseClient {
    /// The base's `GetGoMetrics`, if it has one.
    pub fn go_metrics(&self) -> Option<crate::plugin::go_metrics::GetGoMetricsFn> {
        self.api.get_go_metrics
    }

    /// Whether a config window (HoldOn → LoadConfig → Resume) has been waiting on the base
    /// for longer than [`STALL_WARNING`]: the base looks hung.
    pub fn is_stalled(&self) -> bool {
        self.pending
            .is_some_and(|(_, since, _)| since.elapsed() >= STALL_WARNING)
    }

    /// Starts the threads and queues `InitPluginBaseV2(global_json)`.
    pub fn start(api: BaseApi, global_json: String) -> BaseClient {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        let control_thread = std::thread::Builder::new()
            .name("plugin-base-control".into())
            .spawn(move || control_loop(api, control_rx, reports_tx))
            .expect("spawn the plugin-base control thread");
        let _ = control.send(Control::Init { global_json });
        BaseClient {
            control,
            reports,
            api,
            next_window: 0,
            pending: None,
            control_thread: Some(control_thread),
        }
    }

    /// Whether the base reports deliveries (it is Tailrace's own).
    pub fn reports_delivery(&self) -> bool {
        self.api.reports_delivery
    }

    /// The flusher of the feed to pipeline part `config_name` (`P/2`); `deliveries` holds its
    /// packs until the base reports them delivered.
    pub fn feed_for(
        &self,
        config_name: &str,
        deliveries: Option<Arc<Deliveries>>,
    ) -> Box<dyn Flusher> {
        Box::new(BaseFeed {
            api: self.api,
            config_name: config_name.to_owned(),
            deliveries: deliveries.filter(|_| self.api.reports_delivery),
            pb: Vec::new(),
            reported: None,
        })
    }

    /// Queues a hold-on window that leaves exactly `configs` running in the base.
    pub fn apply(&mut self, configs: BaseConfigs) -> u64 {
        let id = self.next_window;
        self.next_window += 1;
        let _ = self.control.send(Control::Window { id, configs });
        if self.pending.is_none() {
            self.pending = Some((id, Instant::now(), false));
        }
        id
    }

    /// Reports of finished windows (non-blocking); warns once when a window takes too long.
    pub fn poll(&mut self) -> Vec<WindowReport> {
        let reports: Vec<_> = self.reports.try_iter().collect();
        for report in &reports {
            if self.pending.is_some_and(|(id, _, _)| id <= report.id) {
                self.pending = (report.id + 1 < self.next_window)
                    .then(|| (report.id + 1, Instant::now(), false));
            }
        }
        if let Some((id, since, warned)) = &mut self.pending {
            if !*warned && since.elapsed() >= STALL_WARNING {
                *warned = true;
                tracing::error!(
                    window = *id,
                    "the plugin base has not returned from HoldOn/LoadConfig/Resume for {}s: \
                     pipelines that use plugins are stalled; native collection goes on",
                    STALL_WARNING.as_secs()
                );
            }
        }
        reports
    }

    /// `HoldOn(1)`: waits at most `limit` for the base to stop.
    pub fn exit(mut self, limit: Duration) {
        let _ = self.control.send(Control::Exit);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        if let Some(thread) = self.control_thread.take() {
            std::thread::spawn(move || {
                let _ = thread.join();
                let _ = done_tx.send(());
            });
            if done_rx.recv_timeout(limit).is_err() {
                tracing::error!("the plugin base did not return from HoldOn(1) within {limit:?}; exiting without it");
            }
        }
    }
}

fn go_str(s: &str) -> GoString {
    GoString::from_str_ref(s)
}

fn control_loop(api: BaseApi, commands: Receiver<Control>, reports: Sender<WindowReport>) {
    let mut available: Result<(), String> = Err("not initialised".to_owned());
    let mut resumed = false;
    // The last version of each config the base accepted: reloaded when a new one fails.
    let mut accepted: BTreeMap<String, BaseConfig> = BTreeMap::new();
    for command in commands.iter() {
        match command {
            Control::Init { global_json } => {
                // SAFETY: a GoString borrowing a live String for the duration of the call.
                let code = unsafe { (api.init_v2)(go_str(&global_json)) };
                available = if code == 0 {
                    Ok(())
                } else {
                    let e = format!("InitPluginBaseV2 returned {code}");
                    tracing::warn!("plugin base unavailable: {e}; plugin pipelines will not load");
                    Err(e)
                };
            }
            Control::Window { id, configs } => {
                if let Err(e) = &available {
                    let _ = reports.send(WindowReport {
                        id,
                        failures: Err(format!("plugin base unavailable: {e}")),
                    });
                    continue;
                }
                if resumed {
                    // SAFETY: a plain call into the base.
                    unsafe { (api.hold_on)(0) };
                }
                let mut failures = BTreeMap::new();
                let mut now_accepted = BTreeMap::new();
                for (name, config) in configs {
                    if load(&api, &name, &config) {
                        now_accepted.insert(name, config);
                        continue;
                    }
                    let mut why = "LoadConfig failed (the base's alarm says why)".to_owned();
                    if let Some(previous) = accepted.get(&name).filter(|p| **p != config) {
                        if load(&api, &name, previous) {
                            why.push_str("; the previous version keeps running");
                            now_accepted.insert(name.clone(), previous.clone());
                        }
                    }
                    failures.insert(name, why);
                }
                accepted = now_accepted;
                // SAFETY: a plain call into the base.
                unsafe { (api.resume)() };
                resumed = true;
                let _ = reports.send(WindowReport {
                    id,
                    failures: Ok(failures),
                });
            }
            Control::Exit => {
                if available.is_ok() {
                    // SAFETY: a plain call into the base.
                    unsafe { (api.hold_on)(1) };
                }
                return;
            }
        }
    }
}

fn load(api: &BaseApi, name: &str, config: &BaseConfig) -> bool {
    // SAFETY: GoStrings borrowing live Strings for the duration of the call.
    let code = unsafe {
        (api.load_config)(
            go_str(""),
            go_str(""),
            go_str(name),
            config.logstore_key,
            go_str(&config.json),
        )
    };
    code == 0
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    use tailrace::rslice::{GoInt, GoInt64};
    use tailrace::{DeliveryHook, LogEvent, PipelineEvent};

    use super::*;

    /// The pipeline's deliveries, which the fake base reports to from inside its
    /// `ProcessLogGroup`, and what that call returns.
    static DELIVERIES: OnceLock<Arc<Deliveries>> = OnceLock::new();
    static CODE: AtomicI64 = AtomicI64::new(0);
    /// One test at a time uses the statics above.
    static SERIAL: Mutex<()> = Mutex::new(());

    unsafe extern "C" fn init_v2(_: GoString) -> GoInt {
        0
    }
    unsafe extern "C" fn load_config(
        _: GoString,
        _: GoString,
        _: GoString,
        _: GoInt64,
        _: GoString,
    ) -> GoInt {
        0
    }
    unsafe extern "C" fn hold_on(_: GoInt) {}
    unsafe extern "C" fn resume() {}

    /// A base that processes and delivers a batch at once: it reports the pack delivered before
    /// `ProcessLogGroup` returns (unless it refuses the batch).
    unsafe extern "C" fn process_log_group(_: GoString, _: GoSlice, pack_id: GoString) -> GoInt {
        let code = CODE.load(Ordering::SeqCst) as GoInt;
        if code == 0 {
            // SAFETY: the feed passes a GoString valid for the duration of the call.
            let id = unsafe { pack_id.as_str("packId") }.expect("a pack id");
            assert!(DELIVERIES.get().expect("set by the test").reported(id));
        }
        code
    }

    struct Count(AtomicUsize);
    impl DeliveryHook for Count {
        fn delivered(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_pack_reported_delivered_inside_process_log_group_is_acknowledged() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let deliveries = DELIVERIES.get_or_init(|| Deliveries::new("p", 1)).clone();
        let mut feed = BaseFeed {
            api: BaseApi {
                init_v2,
                load_config,
                hold_on,
                resume,
                process_log_group,
                reports_delivery: true,
                get_go_metrics: None,
            },
            config_name: "p/2".into(),
            deliveries: Some(deliveries),
            pb: Vec::new(),
            reported: None,
        };
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut group = PipelineEventGroup::default();
        let mut log = LogEvent::new(1, None);
        log.set_content("content", "a line");
        group.events.push(PipelineEvent::Log(log));
        group.acks.push(count.clone());

        // Refused: the batch stays, with its acknowledgement, and no pack waits.
        CODE.store(-1, Ordering::SeqCst);
        let mut groups = vec![group];
        assert!(feed.flush(&mut groups).is_err());
        assert_eq!(groups.len(), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);

        // Accepted and reported within the call: acknowledged once the call returns.
        CODE.store(0, Ordering::SeqCst);
        feed.flush(&mut groups).unwrap();
        assert!(groups.is_empty());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the report was not lost");
    }
}
