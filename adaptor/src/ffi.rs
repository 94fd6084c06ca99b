//! Every `extern "C"` export of `libPluginAdapter.so`, and nothing else.
//!
//! Each body runs inside [`tailrace::ffi_panic_boundary!`]; every forwarding call returns -1
//! when no callback is registered, and rejects a negative length or a null pointer with a
//! non-zero length (-1, or -2 for `LogtailCtlCmd`, whose contract calls that "bad parameters")
//! instead of passing it on to the host.
//!
//! The exports are safe `extern "C"` functions although they take raw pointers: they are
//! called from C, where `unsafe` means nothing, and they never dereference the pointers
//! themselves; they check them and pass them on to the host's callback, whose contract they are.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::os::raw::{c_char, c_int, c_longlong};

use tailrace::ffi_panic_boundary;

use crate::callbacks::{self, valid_buffer, Callbacks};
pub use crate::callbacks::{IsValidToSendFun, PluginCtlCmdFun, SendPbFun, SendPbV2Fun};

/// Registers the host's callbacks (no SendPbV2). Thread-safe; the last registration wins.
#[no_mangle]
pub extern "C" fn RegisterLogtailCallBack(
    check_sender: IsValidToSendFun,
    send_pb: SendPbFun,
    ctl_cmd: PluginCtlCmdFun,
) {
    ffi_panic_boundary!("RegisterLogtailCallBack", {
        callbacks::register(Callbacks {
            is_valid_to_send: check_sender,
            send_pb,
            send_pb_v2: None,
            ctl_cmd,
        })
    })
}

/// Registers the host's callbacks, SendPbV2 included. Thread-safe; the last registration wins.
#[no_mangle]
pub extern "C" fn RegisterLogtailCallBackV2(
    check_sender: IsValidToSendFun,
    send_pb: SendPbFun,
    send_pb_v2: SendPbV2Fun,
    ctl_cmd: PluginCtlCmdFun,
) {
    ffi_panic_boundary!("RegisterLogtailCallBackV2", {
        callbacks::register(Callbacks {
            is_valid_to_send: check_sender,
            send_pb,
            send_pb_v2,
            ctl_cmd,
        })
    })
}

/// 0 when the host accepts data for `logstoreKey`, -1 when its queue is full or no host is
/// registered.
#[no_mangle]
pub extern "C" fn LogtailIsValidToSend(logstore_key: c_longlong) -> c_int {
    ffi_panic_boundary!("LogtailIsValidToSend", {
        match callbacks::current().is_valid_to_send {
            // SAFETY: the host registered this function for exactly this signature.
            Some(f) => unsafe { f(logstore_key) },
            None => -1,
        }
    })
}

/// Forwards a serialized LogGroup to the host's SendPb.
#[no_mangle]
pub extern "C" fn LogtailSendPb(
    config_name: *const c_char,
    config_name_size: c_int,
    logstore: *const c_char,
    logstore_size: c_int,
    pb_buffer: *mut c_char,
    pb_size: c_int,
    lines: c_int,
) -> c_int {
    ffi_panic_boundary!("LogtailSendPb", {
        let Some(f) = callbacks::current().send_pb else {
            return -1;
        };
        if !valid_buffer(config_name, config_name_size)
            || !valid_buffer(logstore, logstore_size)
            || !valid_buffer(pb_buffer, pb_size)
            || lines < 0
        {
            return -1;
        }
        // SAFETY: the host registered this function for exactly this signature; the pointers
        // are the caller's, passed on unchanged, and their lengths were checked above.
        unsafe {
            f(
                config_name,
                config_name_size,
                logstore,
                logstore_size,
                pb_buffer,
                pb_size,
                lines,
            )
        }
    })
}

/// Forwards a serialized LogGroup and its shard hash to the host's SendPbV2.
#[no_mangle]
pub extern "C" fn LogtailSendPbV2(
    config_name: *const c_char,
    config_name_size: c_int,
    logstore: *const c_char,
    logstore_size: c_int,
    pb_buffer: *mut c_char,
    pb_size: c_int,
    lines: c_int,
    shard_hash: *const c_char,
    shard_hash_size: c_int,
) -> c_int {
    ffi_panic_boundary!("LogtailSendPbV2", {
        let Some(f) = callbacks::current().send_pb_v2 else {
            return -1;
        };
        if !valid_buffer(config_name, config_name_size)
            || !valid_buffer(logstore, logstore_size)
            || !valid_buffer(pb_buffer, pb_size)
            || !valid_buffer(shard_hash, shard_hash_size)
            || lines < 0
        {
            return -1;
        }
        // SAFETY: as in LogtailSendPb; the shard hash is passed on unchanged too.
        unsafe {
            f(
                config_name,
                config_name_size,
                logstore,
                logstore_size,
                pb_buffer,
                pb_size,
                lines,
                shard_hash,
                shard_hash_size,
            )
        }
    })
}

/// Forwards a control command to the host. -1 without a registered callback (LoongCollector 3.2+
/// registers none), -2 for bad parameters.
#[no_mangle]
pub extern "C" fn LogtailCtlCmd(
    config_name: *const c_char,
    config_name_size: c_int,
    cmd_id: c_int,
    params: *const c_char,
    params_len: c_int,
) -> c_int {
    ffi_panic_boundary!("LogtailCtlCmd", {
        let Some(f) = callbacks::current().ctl_cmd else {
            return -1;
        };
        if !valid_buffer(config_name, config_name_size) || !valid_buffer(params, params_len) {
            return -2;
        }
        // SAFETY: the host registered this function for exactly this signature; the pointers
        // are the caller's, passed on unchanged, and their lengths were checked above.
        unsafe { f(config_name, config_name_size, cmd_id, params, params_len) }
    })
}

/// 300: the adapter version iLogtail's core checks.
#[no_mangle]
pub extern "C" fn PluginAdapterVersion() -> c_int {
    ffi_panic_boundary!("PluginAdapterVersion", { crate::ADAPTER_VERSION })
}
