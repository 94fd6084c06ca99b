//! `libPluginBase.so`: the plugin runtime, driven through `LoadConfig` / `HoldOn` / `Resume`
//! (DESIGN §3) by Tailrace's host or by iLogtail's own C++ core.
//!
//! * `ffi`: every `extern "C"` export, and nothing else; arguments arrive as Go-compatible
//!   `GoString`/`GoSlice` (`tailrace::rslice`), are checked, and are handed to safe Rust.
//! * `runtime`: the tokio runtime, the pipeline instances and the hold-on cycle.
//! * `context`: alarms and statistics, reported back to the host.
//! * `plugins`: inputs, processors, aggregators and flushers, one per file.
//! * `host_link`: the way back to the host, through `libPluginAdapter.so`.
#![allow(non_snake_case)]

pub mod context;
pub mod ffi;
mod global;
pub mod host_link;
pub mod plugins;
pub mod runtime;
