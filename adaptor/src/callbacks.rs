//! The callback table: one set of host callbacks, replaced whole by each registration (the last
//! one wins), read as one copy by each forwarding call so a call never mixes two registrations.

use std::os::raw::c_int;
use std::sync::RwLock;

pub use tailrace::adapter_abi::{IsValidToSendFun, PluginCtlCmdFun, SendPbFun, SendPbV2Fun};

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
