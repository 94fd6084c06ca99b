//! The adaptor ABI's callback types (DESIGN §2), shared by the adaptor that stores them and
//! the host that registers them, so that both sides are compiled against one declaration.
//! (cbindgen reads this file for `include/LogtailPluginAdapter.h`.)

use std::os::raw::{c_char, c_int, c_longlong};

/// `int (*)(long long logstoreKey)`: 0 when the host's queue for the key accepts data, -1 when
/// full; key -1 means an internal pipeline, always valid.
pub type IsValidToSendFun = Option<unsafe extern "C" fn(logstore_key: c_longlong) -> c_int>;

/// Hands a serialized `sls_logs.LogGroup` of `lines` logs to the host: 0 ok, -1 could not
/// enqueue, -2 unknown config.
pub type SendPbFun = Option<
    unsafe extern "C" fn(
        config_name: *const c_char,
        config_name_size: c_int,
        logstore: *const c_char,
        logstore_size: c_int,
        pb_buffer: *mut c_char,
        pb_size: c_int,
        lines: c_int,
    ) -> c_int,
>;

/// [`SendPbFun`] with the shard hash the data should be routed by.
pub type SendPbV2Fun = Option<
    unsafe extern "C" fn(
        config_name: *const c_char,
        config_name_size: c_int,
        logstore: *const c_char,
        logstore_size: c_int,
        pb_buffer: *mut c_char,
        pb_size: c_int,
        lines: c_int,
        shard_hash: *const c_char,
        shard_hash_size: c_int,
    ) -> c_int,
>;

/// A control command from the plugin base to the host: -2 for an unknown command or bad
/// parameters.
pub type PluginCtlCmdFun = Option<
    unsafe extern "C" fn(
        config_name: *const c_char,
        config_name_size: c_int,
        opt_id: c_int,
        params: *const c_char,
        params_len: c_int,
    ) -> c_int,
>;

/// Tailrace's own `LogtailCtlCmd` command id (DESIGN §3 allows adding ids): the plugin base
/// reports that the batch it was handed with pack id `params` (the `packId` argument of
/// `ProcessLogGroup`) has been delivered by every flusher of its pipeline. A host that does not
/// know it answers -2, and the base then stops reporting.
pub const TAILRACE_CTL_DELIVERED: c_int = 0x7472;
