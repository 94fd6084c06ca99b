//! The callbacks the host registers with the adaptor, and nothing else. Each body runs in the
//! panic boundary and checks every pointer and length before the router sees the data.

use std::os::raw::{c_char, c_int, c_longlong};

use tailrace::adapter_abi::TAILRACE_CTL_DELIVERED;
use tailrace::ffi_panic_boundary;
use tailrace::rslice::bytes_from_raw;

use crate::plugin::router;

/// 0 when the pipeline of `logstoreKey` has room, -1 when it is full.
pub unsafe extern "C" fn is_valid_to_send(logstore_key: c_longlong) -> c_int {
    ffi_panic_boundary!("IsValidToSend", {
        if router::is_valid_to_send(logstore_key) {
            0
        } else {
            -1
        }
    })
}

/// SendPb: a serialized LogGroup for pipeline `configName` (`P` or `P/N`).
///
/// # Safety
/// The pointers must point to the given numbers of readable bytes for the call's duration.
pub unsafe extern "C" fn send_pb(
    config_name: *const c_char,
    config_name_size: c_int,
    logstore: *const c_char,
    logstore_size: c_int,
    pb_buffer: *mut c_char,
    pb_size: c_int,
    lines: c_int,
) -> c_int {
    ffi_panic_boundary!("SendPb", {
        // SAFETY: forwarded from this function's contract; lengths are checked by the helper.
        unsafe {
            receive(
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

/// SendPbV2: as SendPb, with a shard hash (not used by native flushers).
///
/// # Safety
/// As for [`send_pb`]; the shard hash too.
pub unsafe extern "C" fn send_pb_v2(
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
    ffi_panic_boundary!("SendPbV2", {
        // SAFETY: forwarded from this function's contract.
        if unsafe { bytes_from_raw("shardHash", shard_hash.cast(), i64::from(shard_hash_size)) }
            .is_err()
        {
            return -1;
        }
        // SAFETY: forwarded from this function's contract.
        unsafe {
            receive(
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

/// Control commands from the base: Tailrace's delivery report
/// ([`TAILRACE_CTL_DELIVERED`], `params` = the pack id); -2 for any other id or bad parameters,
/// as the contract says.
///
/// # Safety
/// The pointers must be valid for their sizes (checked for null and negative sizes).
pub unsafe extern "C" fn ctl_cmd(
    config_name: *const c_char,
    config_name_size: c_int,
    opt_id: c_int,
    params: *const c_char,
    params_len: c_int,
) -> c_int {
    ffi_panic_boundary!("CtlCmd", -2, {
        if opt_id != TAILRACE_CTL_DELIVERED {
            return -2;
        }
        // SAFETY: forwarded from the caller's contract; each length is checked.
        let args = unsafe {
            (
                bytes_from_raw(
                    "configName",
                    config_name.cast(),
                    i64::from(config_name_size),
                ),
                bytes_from_raw("params", params.cast(), i64::from(params_len)),
            )
        };
        match args {
            (Ok(name), Ok(params)) => {
                match (std::str::from_utf8(name), std::str::from_utf8(params)) {
                    (Ok(name), Ok(pack_id)) => router::delivered(name, pack_id),
                    _ => -2,
                }
            }
            _ => -2,
        }
    })
}

/// # Safety
/// As for [`send_pb`].
unsafe fn receive(
    config_name: *const c_char,
    config_name_size: c_int,
    logstore: *const c_char,
    logstore_size: c_int,
    pb_buffer: *mut c_char,
    pb_size: c_int,
    lines: c_int,
) -> c_int {
    // SAFETY: forwarded from the caller's contract; each length is checked.
    let args = unsafe {
        (
            bytes_from_raw(
                "configName",
                config_name.cast(),
                i64::from(config_name_size),
            ),
            bytes_from_raw("logstore", logstore.cast(), i64::from(logstore_size)),
            bytes_from_raw(
                "pbBuffer",
                pb_buffer.cast_const().cast(),
                i64::from(pb_size),
            ),
        )
    };
    match args {
        (Ok(name), Ok(_logstore), Ok(pb)) => match std::str::from_utf8(name) {
            Ok(name) => router::send_pb(name, pb, lines),
            Err(_) => {
                tracing::warn!("SendPb: configName is not UTF-8");
                -1
            }
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::warn!("SendPb: {e}");
            -1
        }
    }
}
