//! The alarm a parser raises when values do not parse (iLogtail's `REGEX_MATCH_ALARM`,
//! `PARSE_LOG_FAIL_ALARM`, `PARSE_TIME_FAIL_ALARM`). A bad format fails on every line, so the
//! first failure is reported at once and then at most one alarm per [`REPORT_EVERY`], carrying
//! how many failed meanwhile and the last value that failed, as LoongCollector rate-limits its
//! low-level alarms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Services;

/// The shortest time between two alarms of one processor.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// How much of a failed value an alarm quotes.
const SAMPLE_BYTES: usize = 256;

pub struct FailureAlarm {
    kind: &'static str,
    what: &'static str,
    services: Option<Arc<dyn Services>>,
    last_report: Option<Instant>,
    /// Failures not reported yet.
    unreported: u64,
}

impl FailureAlarm {
    /// An alarm of `kind`; `what` says what failed ("regex match", "JSON parse").
    pub fn new(kind: &'static str, what: &'static str) -> FailureAlarm {
        FailureAlarm {
            kind,
            what,
            services: None,
            last_report: None,
            unreported: 0,
        }
    }

    /// Where alarms go from now on (until then, failures are only counted).
    pub fn attach(&mut self, services: Arc<dyn Services>) {
        self.services = Some(services);
    }

    /// One value failed.
    pub fn failed(&mut self, value: &[u8]) {
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|last| now.duration_since(last) < REPORT_EVERY)
        {
            return;
        }
        let Some(services) = &self.services else {
            return;
        };
        let sample = &value[..value.len().min(SAMPLE_BYTES)];
        let message = format!(
            "{} {}: {} failed ({} since the last report), the last on {:?}{}",
            services.pipeline(),
            services.plugin_id(),
            self.what,
            self.unreported,
            String::from_utf8_lossy(sample),
            if value.len() > SAMPLE_BYTES {
                "…"
            } else {
                ""
            }
        );
        services.alarm(self.kind, &message);
        self.last_report = Some(now);
        self.unreported = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::Recorded;

    #[test]
    fn the_first_failure_is_reported_at_once_then_they_are_counted() {
        let services = Recorded::new();
        let mut alarm = FailureAlarm::new("REGEX_MATCH_ALARM", "regex match");
        alarm.failed(b"before attach");
        alarm.attach(services.clone());
        alarm.failed(b"first");
        for _ in 0..99 {
            alarm.failed(b"again");
        }
        let alarms = services.alarms();
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].0, "REGEX_MATCH_ALARM");
        assert!(
            alarms[0]
                .1
                .contains("regex match failed (2 since the last report)")
                && alarms[0].1.contains("\"first\""),
            "{}",
            alarms[0].1
        );
        // Past the interval, the next failure reports the 99 in between.
        alarm.last_report = Some(Instant::now() - REPORT_EVERY);
        alarm.failed(&[b'x'; 1000]);
        let alarms = services.alarms();
        assert_eq!(alarms.len(), 2);
        assert!(
            alarms[1].1.contains("(100 since the last report)"),
            "{}",
            alarms[1].1
        );
        assert!(
            alarms[1].1.contains(&format!("{:?}…", "x".repeat(256))),
            "{}",
            alarms[1].1
        );
    }
}
