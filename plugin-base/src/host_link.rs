//! The way back to the host: the adaptor's forwarding functions, behind a trait so that the
//! runtime can be tested without a host.

use std::os::raw::{c_char, c_int, c_longlong};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tailrace::adapter_abi::TAILRACE_CTL_DELIVERED;
use tailrace::DeliveryHook;

/// What the plugin base needs from its host.
pub trait HostLink: Send + Sync {
    /// Whether the host's queue for `logstore_key` takes data now (-1: internal, always valid).
    fn is_valid_to_send(&self, logstore_key: i64) -> bool;
    /// Hands a serialized LogGroup of `lines` logs to the host under `config_name`; the host's
    /// return code: 0 ok, -1 could not enqueue, -2 unknown config.
    fn send_pb(
        &self,
        config_name: &str,
        logstore: &str,
        pb: &mut [u8],
        lines: usize,
        shard_hash: Option<&str>,
    ) -> i32;
    /// `LogtailCtlCmd`: 0 done, -2 unknown command or bad parameters, -1 no callback.
    fn ctl_cmd(&self, config_name: &str, cmd_id: i32, params: &str) -> i32;
}

/// Set once the host answered a delivery report with an error: it does not take them
/// (iLogtail's core, or LoongCollector 3.2+ without the ctl callback), so no more are sent.
static REPORTS_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The delivery hook of a batch the host handed over with a pack id: once every flusher of the
/// pipeline delivered it, the host is told (DESIGN §5, delivery across the boundary), so that
/// the host advances its checkpoints only then.
pub struct ReportDelivery {
    pub host: Arc<dyn HostLink>,
    pub config_name: String,
    pub pack_id: String,
}

impl DeliveryHook for ReportDelivery {
    fn delivered(&self) {
        if REPORTS_UNSUPPORTED.load(Ordering::Relaxed) {
            return;
        }
        let code = self
            .host
            .ctl_cmd(&self.config_name, TAILRACE_CTL_DELIVERED, &self.pack_id);
        if code != 0 && !REPORTS_UNSUPPORTED.swap(true, Ordering::Relaxed) {
            tracing::info!(
                code,
                "the host does not take delivery reports; batches count as delivered when accepted"
            );
        }
    }
}

// Linked to libPluginAdapter.so by build.rs (see there why not with `#[link]`).
extern "C" {
    fn LogtailIsValidToSend(logstore_key: c_longlong) -> c_int;
    fn LogtailSendPb(
        config_name: *const c_char,
        config_name_size: c_int,
        logstore: *const c_char,
        logstore_size: c_int,
        pb_buffer: *mut c_char,
        pb_size: c_int,
        lines: c_int,
    ) -> c_int;
    fn LogtailCtlCmd(
        config_name: *const c_char,
        config_name_size: c_int,
        cmd_id: c_int,
        params: *const c_char,
        params_len: c_int,
    ) -> c_int;
    fn LogtailSendPbV2(
        config_name: *const c_char,
        config_name_size: c_int,
        logstore: *const c_char,
        logstore_size: c_int,
        pb_buffer: *mut c_char,
        pb_size: c_int,
        lines: c_int,
        shard_hash: *const c_char,
        shard_hash_size: c_int,
    ) -> c_int;
}

/// The host as reached through `libPluginAdapter.so`.
pub struct Adaptor;

/// Lengths cross the adaptor ABI as `int`.
fn c_len(len: usize) -> Option<c_int> {
    c_int::try_from(len).ok()
}

impl HostLink for Adaptor {
    fn ctl_cmd(&self, config_name: &str, cmd_id: i32, params: &str) -> i32 {
        let (Some(name_len), Some(params_len)) = (c_len(config_name.len()), c_len(params.len()))
        else {
            return -2;
        };
        // SAFETY: both pointers come from live Rust strings with their exact lengths; the host
        // reads them during the call only.
        unsafe {
            LogtailCtlCmd(
                config_name.as_ptr().cast(),
                name_len,
                cmd_id,
                params.as_ptr().cast(),
                params_len,
            )
        }
    }

    fn is_valid_to_send(&self, logstore_key: i64) -> bool {
        // SAFETY: a plain call into the adaptor with a value argument.
        unsafe { LogtailIsValidToSend(logstore_key) == 0 }
    }

    fn send_pb(
        &self,
        config_name: &str,
        logstore: &str,
        pb: &mut [u8],
        lines: usize,
        shard_hash: Option<&str>,
    ) -> i32 {
        let (Some(name_len), Some(store_len), Some(pb_len), Some(lines)) = (
            c_len(config_name.len()),
            c_len(logstore.len()),
            c_len(pb.len()),
            c_len(lines),
        ) else {
            return -1;
        };
        match shard_hash {
            None => {
                // SAFETY: every pointer comes from a live Rust slice with its exact length; the
                // host copies what it keeps before returning (DESIGN §2).
                unsafe {
                    LogtailSendPb(
                        config_name.as_ptr().cast(),
                        name_len,
                        logstore.as_ptr().cast(),
                        store_len,
                        pb.as_mut_ptr().cast(),
                        pb_len,
                        lines,
                    )
                }
            }
            Some(hash) => {
                let Some(hash_len) = c_len(hash.len()) else {
                    return -1;
                };
                // SAFETY: as above, the shard hash too.
                unsafe {
                    LogtailSendPbV2(
                        config_name.as_ptr().cast(),
                        name_len,
                        logstore.as_ptr().cast(),
                        store_len,
                        pb.as_mut_ptr().cast(),
                        pb_len,
                        lines,
                        hash.as_ptr().cast(),
                        hash_len,
                    )
                }
            }
        }
    }
}
