//! `libPluginAdapter.so`: a tiny callback registry.
//!
//! The host registers its callbacks (SendPb, IsValidToSend, CtlCmd); the plugin base calls the
//! `Logtail*` forwarding functions, which reach them. The base links this library dynamically,
//! so both sides see the one table in the one loaded copy. Names, types and return codes are
//! iLogtail's `LogtailPluginAdapter.h` (adapter version 300): see DESIGN §2.
#![allow(non_snake_case)]

mod callbacks;
pub mod ffi;

/// The adapter version iLogtail's core checks before registering its callbacks.
pub const ADAPTER_VERSION: i32 = 300;
