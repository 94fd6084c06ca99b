//! The callback table: one set of host callbacks, replaced whole by each registration (the last
//! one wins), read as one copy by each forwarding call so a call never mixes two registrations.

use std::os::raw::{c_char, c_int, c_longlong};
use std::sync::RwLock;

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

#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    pub is_valid_to_send: IsValidToSendFun,
    pub send_pb: SendPbFun,
    pub send_pb_v2: SendPbV2Fun,
    pub ctl_cmd: PluginCtlCmdFun,
}

static TABLE: RwLock<Callbacks> = RwLock::new(Callbacks {
    is_valid_to_send: None,
    send_pb: None,
    send_pb_v2: None,
    ctl_cmd: None,
});

/// Replaces the whole table.
pub(crate) fn register(callbacks: Callbacks) {
    *TABLE.write().unwrap_or_else(|e| e.into_inner()) = callbacks;
}

/// A copy of the table as it is now; the lock is not held while a callback runs, so a callback
/// may itself register.
pub(crate) fn current() -> Callbacks {
    *TABLE.read().unwrap_or_else(|e| e.into_inner())
}

/// A (pointer, length) argument is usable when the length is not negative and the pointer is
/// not null unless the length is zero.
pub(crate) fn valid_buffer<T>(ptr: *const T, len: c_int) -> bool {
    len >= 0 && (len == 0 || !ptr.is_null())
}
