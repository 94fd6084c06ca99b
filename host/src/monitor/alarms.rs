//! Alarms counted by kind, for `/metrics`: those the plugin base sends through `SendPb` under
//! iLogtail's `logtail_alarm` config (each log carries `alarm_type` and `alarm_count`). Kinds
//! come from whichever base is loaded, so their number is capped: past [`MAX_KINDS`] they are
//! counted under `other`, and memory stays bounded.

use std::collections::BTreeMap;
use std::sync::Mutex;

const MAX_KINDS: usize = 256;

/// The daemon's counts.
static ALARMS: AlarmCounts = AlarmCounts::new();

/// Counts `n` alarms of `kind`.
pub fn count(kind: &str, n: u64) {
    ALARMS.count(kind, n);
}

/// Every kind seen and its count.
pub fn counts() -> Vec<(String, u64)> {
    ALARMS.counts()
}

struct AlarmCounts {
    by_kind: Mutex<BTreeMap<String, u64>>,
}

impl AlarmCounts {
    const fn new() -> AlarmCounts {
        AlarmCounts {
            by_kind: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, kind: &str, n: u64) {
        let mut counts = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        let kind = if counts.contains_key(kind) || counts.len() < MAX_KINDS {
            kind
        } else {
            "other"
        };
        *counts.entry(kind.to_owned()).or_insert(0) += n;
    }

    fn counts(&self) -> Vec<(String, u64)> {
        let counts = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_counted_and_capped() {
        let alarms = AlarmCounts::new();
        alarms.count("A", 2);
        alarms.count("A", 1);
        assert_eq!(alarms.counts(), [("A".to_owned(), 3)]);
        for i in 0..MAX_KINDS + 10 {
            alarms.count(&format!("FLOOD_{i}"), 1);
        }
        let all = alarms.counts();
        assert!(all.len() <= MAX_KINDS + 1, "{}", all.len());
        assert!(all.iter().any(|(k, n)| k == "other" && *n >= 10));
    }
}
