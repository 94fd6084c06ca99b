//! Every `extern "C"` export of `libPluginBase.so`, and nothing else (DESIGN §3).
//!
//! Each body runs inside [`tailrace::ffi_panic_boundary!`] (a panic becomes the error return
//! and a `PLUGIN_PANIC_ALARM`), checks its arguments through `rslice` (null pointers, negative
//! lengths and invalid UTF-8 are errors), and calls the safe runtime.

use std::os::raw::{c_char, c_int, c_void};

use prost::Message;
use tailrace::ffi_panic_boundary;
use tailrace::proto::meta;
use tailrace::{Log, LogEvent, LogGroup, PipelineEvent, PipelineEventGroup};

use crate::context::AlarmLevel;
use crate::global;
use crate::runtime::{LoadRequest, PluginBase, Settings};
use tailrace::rslice::{
    ArgError, GoInt, GoInt64, GoSlice, GoString, KeyValue, PluginMetric, PluginMetrics,
};

/// Metadata key of the pack id a host gives with its data.
const PACK_ID_META: &str = tailrace::proto::meta::PACK_ID;

/// Error return of the functions whose contract says "0 ok, 1 error".
const LOAD_ERROR: GoInt = 1;
/// Error return of the `Process*` functions and `UnloadPipeline`.
const PROCESS_ERROR: GoInt = -1;

/// Starts the base with default settings. 0 ok, 1 error.
#[no_mangle]
pub extern "C" fn InitPluginBase() -> GoInt {
    ffi_panic_boundary!("InitPluginBase", LOAD_ERROR, {
        init_with(Settings::default())
    })
}

/// Starts the base with iLogtail's global config (data dir, log level, ...). 0 ok, 1 error.
#[no_mangle]
pub extern "C" fn InitPluginBaseV2(global_config: GoString) -> GoInt {
    ffi_panic_boundary!("InitPluginBaseV2", LOAD_ERROR, {
        init_from_json("InitPluginBaseV2", global_config)
    })
}

/// Replaces the global config (starting the base if needed). 0 ok, 1 error.
#[no_mangle]
pub extern "C" fn LoadGlobalConfig(json_str: GoString) -> GoInt {
    ffi_panic_boundary!("LoadGlobalConfig", LOAD_ERROR, {
        init_from_json("LoadGlobalConfig", json_str)
    })
}

/// Loads a pipeline while held on. 0 ok, 1 error (nothing loaded).
#[no_mangle]
pub extern "C" fn LoadConfig(
    project: GoString,
    logstore: GoString,
    config_name: GoString,
    logstore_key: GoInt64,
    json_str: GoString,
) -> GoInt {
    ffi_panic_boundary!("LoadConfig", LOAD_ERROR, {
        load(
            "LoadConfig",
            project,
            logstore,
            config_name,
            logstore_key,
            json_str,
            |b, r| b.load_config(r),
        )
    })
}

/// Kept for iLogtail 1.x cores; forgets a loaded pipeline that was not started. Always 0.
#[no_mangle]
pub extern "C" fn UnloadConfig(
    project: GoString,
    logstore: GoString,
    config_name: GoString,
) -> GoInt {
    ffi_panic_boundary!("UnloadConfig", 0, {
        let _ = (project, logstore);
        // SAFETY: the caller passes a GoString valid for the duration of the call.
        if let Ok(name) = unsafe { config_name.as_str("configName") } {
            if let Ok(base) = global::get() {
                base.unload(name);
            }
        }
        0
    })
}

/// Stops every pipeline and sets it aside; `exitFlag` non-zero also persists undelivered data.
#[no_mangle]
pub extern "C" fn HoldOn(exit_flag: GoInt) {
    ffi_panic_boundary!("HoldOn", {
        if let Ok(base) = global::get() {
            base.hold_on(exit_flag != 0);
        }
    })
}

/// Starts what was loaded, outputs first; discards set-aside pipelines not reloaded.
#[no_mangle]
pub extern "C" fn Resume() {
    ffi_panic_boundary!("Resume", {
        if let Ok(base) = global::get() {
            base.resume();
        }
    })
}

/// Feeds one raw log (a `content`) to a pipeline. 0, or -1.
#[no_mangle]
pub extern "C" fn ProcessRawLog(
    config_name: GoString,
    raw_log: GoSlice,
    pack_id: GoString,
    topic: GoString,
) -> GoInt {
    ffi_panic_boundary!("ProcessRawLog", PROCESS_ERROR, {
        feed_raw("ProcessRawLog", config_name, raw_log, pack_id, topic, None)
    })
}

/// Feeds one raw log with tags (`k1~=~v1^^^k2~=~v2`) to a pipeline. 0, or -1.
#[no_mangle]
pub extern "C" fn ProcessRawLogV2(
    config_name: GoString,
    raw_log: GoSlice,
    pack_id: GoString,
    topic: GoString,
    tags: GoSlice,
) -> GoInt {
    ffi_panic_boundary!("ProcessRawLogV2", PROCESS_ERROR, {
        feed_raw(
            "ProcessRawLogV2",
            config_name,
            raw_log,
            pack_id,
            topic,
            Some(tags),
        )
    })
}

/// Feeds one serialized `sls_logs.Log` with tags to a pipeline. 0, or -1.
#[no_mangle]
pub extern "C" fn ProcessLog(
    config_name: GoString,
    log_pb: GoSlice,
    pack_id: GoString,
    topic: GoString,
    tags: GoSlice,
) -> GoInt {
    ffi_panic_boundary!("ProcessLog", PROCESS_ERROR, {
        let export = "ProcessLog";
        // SAFETY: the caller passes a GoSlice valid for the duration of the call.
        let bytes = match unsafe { log_pb.as_bytes("logPb") } {
            Ok(bytes) => bytes,
            Err(e) => return reject(export, e.to_string(), PROCESS_ERROR),
        };
        let log = match Log::decode(bytes) {
            Ok(log) => log,
            Err(e) => {
                return reject(
                    export,
                    format!("logPb: not an sls_logs.Log: {e}"),
                    PROCESS_ERROR,
                )
            }
        };
        let mut event = LogEvent::new(log.time, log.time_ns);
        event.contents = log.contents.into_iter().map(|c| (c.key, c.value)).collect();
        let mut group = PipelineEventGroup::with_capacity(1);
        group.events.push(PipelineEvent::Log(event));
        feed_group(export, config_name, group, pack_id, Some(topic), Some(tags))
    })
}

/// Feeds one serialized `sls_logs.LogGroup` to a pipeline. 0, or -1.
#[no_mangle]
pub extern "C" fn ProcessLogGroup(
    config_name: GoString,
    log_group_pb: GoSlice,
    pack_id: GoString,
) -> GoInt {
    ffi_panic_boundary!("ProcessLogGroup", PROCESS_ERROR, {
        let export = "ProcessLogGroup";
        // SAFETY: the caller passes a GoSlice valid for the duration of the call.
        let bytes = match unsafe { log_group_pb.as_bytes("logGroupPb") } {
            Ok(bytes) => bytes,
            Err(e) => return reject(export, e.to_string(), PROCESS_ERROR),
        };
        let group = match LogGroup::decode_event_group(bytes) {
            Ok(group) => group,
            Err(e) => {
                return reject(
                    export,
                    format!("logGroupPb: not an sls_logs.LogGroup: {e}"),
                    PROCESS_ERROR,
                )
            }
        };
        feed_group(export, config_name, group, pack_id, None, None)
    })
}

/// A control command from the host. No command is defined yet; each is logged.
#[no_mangle]
pub extern "C" fn CtlCmd(config_name: GoString, cmd_id: GoInt, cmd_detail: GoString) {
    ffi_panic_boundary!("CtlCmd", {
        // SAFETY: the caller passes GoStrings valid for the duration of the call.
        let (name, detail) = unsafe {
            (
                config_name.as_str("configName"),
                cmd_detail.as_str("cmdDetail"),
            )
        };
        match (name, detail) {
            (Ok(name), Ok(detail)) => {
                tracing::info!(
                    config = name,
                    cmd_id,
                    detail,
                    "CtlCmd: unknown command, ignored"
                )
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = reject("CtlCmd", e.to_string(), 0);
            }
        }
    })
}

/// Tailrace's own export (DESIGN §3 allows additions): tells a host that this base is
/// Tailrace's, which reports through `LogtailCtlCmd` when a batch handed over with a `packId`
/// was delivered, and which implements exactly the plugin types its registry holds. Returns the
/// version of that protocol (1). iLogtail's core ignores the symbol.
#[no_mangle]
pub extern "C" fn TailraceBaseVersion() -> GoInt {
    ffi_panic_boundary!("TailraceBaseVersion", 0, { 1 })
}

/// Container metadata is not collected by this base: always NULL.
#[no_mangle]
pub extern "C" fn GetContainerMeta(container_id: GoString) -> *mut c_void {
    ffi_panic_boundary!("GetContainerMeta", {
        let _ = container_id;
        std::ptr::null_mut()
    })
}

/// LoongCollector 3.x: loads a pipeline at any time (started by `Start`). 0 ok, 1 error.
#[no_mangle]
pub extern "C" fn LoadPipeline(
    project: GoString,
    logstore: GoString,
    config_name: GoString,
    logstore_key: GoInt64,
    json_str: GoString,
) -> GoInt {
    ffi_panic_boundary!("LoadPipeline", LOAD_ERROR, {
        load(
            "LoadPipeline",
            project,
            logstore,
            config_name,
            logstore_key,
            json_str,
            |b, r| b.load_pipeline(r),
        )
    })
}

/// LoongCollector 3.x: forgets a loaded pipeline that was not started. 0, or -1 for a bad
/// name.
#[no_mangle]
pub extern "C" fn UnloadPipeline(config_name: GoString) -> GoInt {
    ffi_panic_boundary!("UnloadPipeline", PROCESS_ERROR, {
        // SAFETY: the caller passes a GoString valid for the duration of the call.
        match unsafe { config_name.as_str("configName") } {
            Ok(name) => {
                if let Ok(base) = global::get() {
                    base.unload(name);
                }
                0
            }
            Err(e) => reject("UnloadPipeline", e.to_string(), PROCESS_ERROR),
        }
    })
}

/// LoongCollector 3.x: starts one loaded pipeline.
#[no_mangle]
pub extern "C" fn Start(config_name: GoString) {
    ffi_panic_boundary!("Start", {
        with_name("Start", config_name, |base, name| {
            if !base.start(name) {
                tracing::warn!(config = name, "Start: no loaded pipeline of that name");
            }
        })
    })
}

/// LoongCollector 3.x: stops one pipeline; `removedFlag` non-zero means it is being deleted.
#[no_mangle]
pub extern "C" fn Stop(config_name: GoString, removed_flag: GoInt) {
    ffi_panic_boundary!("Stop", {
        with_name("Stop", config_name, |base, name| {
            base.stop(name, removed_flag != 0)
        })
    })
}

/// LoongCollector 3.x: stops every pipeline with inputs (`withInputFlag` non-zero) or every
/// pipeline without, persisting what they could not deliver.
#[no_mangle]
pub extern "C" fn StopAllPipelines(with_input_flag: GoInt) {
    ffi_panic_boundary!("StopAllPipelines", {
        if let Ok(base) = global::get() {
            base.stop_all_pipelines(with_input_flag != 0);
        }
    })
}

/// LoongCollector 3.x: stops the built-in modules (sends the last alarms).
#[no_mangle]
pub extern "C" fn StopBuiltInModules() {
    ffi_panic_boundary!("StopBuiltInModules", {
        if let Ok(base) = global::get() {
            base.stop_builtin_modules();
        }
    })
}

/// The statistics of every running pipeline and plugin (`"direct"`, `"cpp_provided"` as
/// LoongCollector asks for them; see `runtime::go_metrics`), in iLogtail's `PluginMetrics`
/// layout: every piece
/// (the struct, its arrays, each key/value and its strings) comes from `malloc`, and the
/// caller frees each. NULL on error.
#[no_mangle]
pub extern "C" fn GetGoMetrics(metric_type: GoString) -> *mut PluginMetrics {
    ffi_panic_boundary!("GetGoMetrics", {
        // SAFETY: the caller passes a GoString valid for the duration of the call.
        let metric_type = match unsafe { metric_type.as_str("metricType") } {
            Ok(t) => t,
            Err(e) => {
                let _ = reject("GetGoMetrics", e.to_string(), 0);
                return std::ptr::null_mut();
            }
        };
        let Ok(base) = global::get() else {
            return std::ptr::null_mut();
        };
        malloc_metrics(&base.metrics(metric_type))
    })
}

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
}

/// Room for `count` values of `T`, uninitialised, from `malloc` (never zero-sized).
fn malloc_array<T>(count: usize) -> *mut T {
    // SAFETY: malloc has no preconditions; callers check for NULL.
    unsafe { malloc(std::mem::size_of::<T>() * count.max(1)) }.cast()
}

/// A copy of `s` with a NUL, in memory from `malloc` (NULL if out of memory).
fn malloc_c_string(s: &str) -> *mut c_char {
    let ptr: *mut u8 = malloc_array(s.len() + 1);
    if ptr.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `ptr` points to s.len() + 1 freshly allocated bytes that nothing else uses; a NUL
    // inside `s` would cut the C string short but not overrun it.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr, s.len());
        *ptr.add(s.len()) = 0;
    }
    ptr.cast()
}

/// Builds the `PluginMetrics` tree with `malloc` (NULL if out of memory at the top; a row or
/// key/value that could not be allocated is left out, with its count adjusted).
fn malloc_metrics(rows: &[Vec<(String, String)>]) -> *mut PluginMetrics {
    let top: *mut PluginMetrics = malloc_array(1);
    let metrics: *mut *mut PluginMetric = malloc_array(rows.len());
    if top.is_null() || metrics.is_null() {
        return std::ptr::null_mut();
    }
    let mut count = 0;
    for row in rows {
        let metric: *mut PluginMetric = malloc_array(1);
        let pairs: *mut *mut KeyValue = malloc_array(row.len());
        if metric.is_null() || pairs.is_null() {
            continue;
        }
        let mut n = 0;
        for (k, v) in row {
            let kv: *mut KeyValue = malloc_array(1);
            if kv.is_null() {
                continue;
            }
            // SAFETY: `kv` is a fresh allocation of one KeyValue; `pairs` has room for
            // row.len() pointers and n < row.len().
            unsafe {
                kv.write(KeyValue {
                    key: malloc_c_string(k),
                    value: malloc_c_string(v),
                });
                pairs.add(n).write(kv);
            }
            n += 1;
        }
        // SAFETY: `metric` is a fresh allocation of one PluginMetric; `metrics` has room for
        // rows.len() pointers and count < rows.len().
        unsafe {
            metric.write(PluginMetric {
                keyValues: pairs,
                count: n as c_int,
            });
            metrics.add(count).write(metric);
        }
        count += 1;
    }
    // SAFETY: `top` is a fresh allocation of one PluginMetrics.
    unsafe {
        top.write(PluginMetrics {
            metrics,
            count: count as c_int,
        })
    };
    top
}

fn init_from_json(export: &str, json: GoString) -> GoInt {
    // SAFETY: the caller passes a GoString valid for the duration of the call.
    let json = match unsafe { json.as_str("jsonStr") } {
        Ok(json) => json,
        Err(e) => return reject(export, e.to_string(), LOAD_ERROR),
    };
    match Settings::from_json(json) {
        Ok(settings) => init_with(settings),
        Err(e) => reject(export, e, LOAD_ERROR),
    }
}

fn init_with(settings: Settings) -> GoInt {
    // Test-only fault: a base that never returns from its initialisation.
    #[cfg(feature = "test-faults")]
    if std::env::var_os("TAILRACE_TEST_INIT_HANG").is_some() {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    tailrace::ffi_boundary::set_panic_hook(|export, message| {
        // Only a base that exists: creating one here would start a runtime on the panic path.
        if let Some(base) = global::existing() {
            base.alarm(
                "PLUGIN_PANIC_ALARM",
                AlarmLevel::Critical,
                "",
                format!("panic in {export}: {message}"),
            );
        }
    });
    match global::init(settings) {
        Ok(_) => 0,
        Err(e) => {
            tracing::error!("{e}");
            LOAD_ERROR
        }
    }
}

/// Logs (and, when the base is up, raises an alarm about) a rejected call; returns `code`.
fn reject(export: &str, message: String, code: GoInt) -> GoInt {
    tracing::warn!("{export}: {message}");
    if let Ok(base) = global::get() {
        base.alarm(
            "INVALID_ARGUMENT_ALARM",
            AlarmLevel::Error,
            "",
            format!("{export}: {message}"),
        );
    }
    code
}

fn with_name(export: &str, config_name: GoString, f: impl FnOnce(&PluginBase, &str)) {
    // SAFETY: the caller passes a GoString valid for the duration of the call.
    match unsafe { config_name.as_str("configName") } {
        Ok(name) => match global::get() {
            Ok(base) => f(base, name),
            Err(e) => tracing::error!("{export}: {e}"),
        },
        Err(e) => {
            let _ = reject(export, e.to_string(), 0);
        }
    }
}

fn load(
    export: &str,
    project: GoString,
    logstore: GoString,
    config_name: GoString,
    logstore_key: GoInt64,
    json_str: GoString,
    f: impl FnOnce(&PluginBase, &LoadRequest<'_>) -> Result<(), String>,
) -> GoInt {
    // SAFETY: the caller passes GoStrings valid for the duration of the call.
    let args = unsafe {
        (|| {
            Ok::<_, ArgError>((
                project.as_str("project")?,
                logstore.as_str("logstore")?,
                config_name.as_str("configName")?,
                json_str.as_str("jsonStr")?,
            ))
        })()
    };
    let (project, logstore, config_name, json) = match args {
        Ok(args) => args,
        Err(e) => return reject(export, e.to_string(), LOAD_ERROR),
    };
    let base = match global::get() {
        Ok(base) => base,
        Err(e) => return reject(export, e, LOAD_ERROR),
    };
    let req = LoadRequest {
        project,
        logstore,
        config_name,
        logstore_key,
        json,
    };
    match f(base, &req) {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!("{export}: {e}");
            LOAD_ERROR
        }
    }
}

fn feed_raw(
    export: &str,
    config_name: GoString,
    raw_log: GoSlice,
    pack_id: GoString,
    topic: GoString,
    tags: Option<GoSlice>,
) -> GoInt {
    // SAFETY: the caller passes a GoSlice valid for the duration of the call.
    let raw = match unsafe { raw_log.as_bytes("rawLog") } {
        Ok(raw) => raw,
        Err(e) => return reject(export, e.to_string(), PROCESS_ERROR),
    };
    let group = crate::runtime::raw_log::group(raw);
    feed_group(export, config_name, group, pack_id, Some(topic), tags)
}

fn feed_group(
    export: &str,
    config_name: GoString,
    mut group: PipelineEventGroup,
    pack_id: GoString,
    topic: Option<GoString>,
    tags: Option<GoSlice>,
) -> GoInt {
    // SAFETY: the caller passes GoStrings and GoSlices valid for the duration of the call.
    let args = unsafe {
        (|| {
            Ok::<_, ArgError>((
                config_name.as_str("configName")?,
                pack_id.as_bytes("packId")?,
                match topic {
                    Some(t) => Some(t.as_bytes("topic")?),
                    None => None,
                },
                match tags {
                    Some(t) => Some(t.as_bytes("tags")?),
                    None => None,
                },
            ))
        })()
    };
    let (name, pack_id, topic, tags) = match args {
        Ok(args) => args,
        Err(e) => return reject(export, e.to_string(), PROCESS_ERROR),
    };
    if !pack_id.is_empty() {
        group.set_metadata(PACK_ID_META, String::from_utf8_lossy(pack_id));
    }
    if let Some(topic) = topic.filter(|t| !t.is_empty()) {
        group.set_metadata(meta::TOPIC, String::from_utf8_lossy(topic));
    }
    if let Some(tags) = tags {
        for (k, v) in crate::runtime::raw_tags::parse(tags) {
            group.set_tag(k, v);
        }
    }
    let base = match global::get() {
        Ok(base) => base,
        Err(e) => return reject(export, e, PROCESS_ERROR),
    };
    match base.feed(name, group) {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!("{export}: {e}");
            PROCESS_ERROR
        }
    }
}
