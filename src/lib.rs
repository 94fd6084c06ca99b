//! Tailrace's shared core.
//!
//! Everything both the host daemon and the plugin base need to agree on lives here, so that
//! one line of a log file has exactly one in-memory shape and one wire shape wherever it goes:
//!
//! * [`event`]: the in-memory model, `PipelineEventGroup` with log, metric, span and raw events
//!   whose fields are views (`bytes::Bytes`) into the group's buffers.
//! * [`proto`]: the `sls_logs.LogGroup` wire format, and the conversion between the two.
//! * [`plugin_config`]: the plugin manager's JSON (the shape iLogtail's core sends its plugin
//!   base), including iLogtail's `GlobalConfig` names and defaults.
//! * [`plugin`]: the processor, input, aggregator and flusher interfaces.
//! * [`processor`]: every processor, and the registry both sides build them from.
//! * [`plugin_options`]: reading a plugin's options, with the unknown ones listed.
//! * [`stdout_format`]: the JSON-lines format of every stdout and file flusher (DESIGN §7).
//! * [`adapter_abi`]: the callback types of the adaptor ABI.
//! * [`rslice`]: the checked string and slice types of the C boundaries.
//! * [`ffi_boundary`]: the panic boundary every `extern "C"` export is wrapped in.

pub mod adapter_abi;
pub mod context;
pub mod event;
pub mod ffi_boundary;
pub mod plugin;
pub mod plugin_config;
pub mod plugin_options;
pub mod processor;
pub mod proto;
pub mod rslice;
pub mod stdout_format;

pub use event::{
    Acks, DeliveryHook, EncodedLogs, Lines, LogEvent, MetricEvent, MetricValue, PipelineEvent,
    PipelineEventGroup, RawEvent, SpanEvent,
};
pub use proto::{Log, LogContent, LogGroup, LogTag};
