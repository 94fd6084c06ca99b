//! Wall-clock time as logs carry it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and nanoseconds since the epoch.
pub fn now() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_nanos())
}
