//! Alarms: problems a user must hear about (a plugin that panicked, a config that failed to
//! load, data the host would not take). Like iLogtail's, alarms of the same type and place are
//! counted rather than repeated, and the runtime sends them to the host periodically as logs of
//! the built-in `logtail_alarm` pipeline.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

/// The config name (and logstore) alarms are sent under, as iLogtail's plugin base does.
pub const ALARM_CONFIG_NAME: &str = "logtail_alarm";

/// How many distinct alarms are held between two reports; more are counted under the oldest.
const MAX_DISTINCT_ALARMS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmLevel {
    Warning,
    Error,
    Critical,
}

impl AlarmLevel {
    fn as_str(self) -> &'static str {
        // iLogtail's numbering: 1 warning, 2 error, 3 critical.
        match self {
            AlarmLevel::Warning => "1",
            AlarmLevel::Error => "2",
            AlarmLevel::Critical => "3",
        }
    }
}

/// Where an alarm comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlarmScope {
    pub project: String,
    pub logstore: String,
    pub config: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AlarmKey {
    alarm_type: String,
    scope: AlarmScope,
}

#[derive(Debug)]
struct AlarmEntry {
    level: AlarmLevel,
    message: String,
    count: u64,
}

/// The alarms raised since the last report.
#[derive(Default)]
pub struct Alarms {
    pending: Mutex<BTreeMap<AlarmKey, AlarmEntry>>,
}

impl Alarms {
    /// Records an alarm (and logs it).
    pub fn record(
        &self,
        alarm_type: &str,
        level: AlarmLevel,
        scope: &AlarmScope,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::warn!(
            alarm_type,
            config = %scope.config,
            "{message}"
        );
        let key = AlarmKey {
            alarm_type: alarm_type.to_owned(),
            scope: scope.clone(),
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pending.get_mut(&key) {
            entry.count += 1;
            entry.message = message;
            entry.level = level;
            return;
        }
        if pending.len() >= MAX_DISTINCT_ALARMS {
            if let Some(mut first) = pending.first_entry() {
                first.get_mut().count += 1;
            }
            return;
        }
        pending.insert(
            key,
            AlarmEntry {
                level,
                message,
                count: 1,
            },
        );
    }

    /// Takes every pending alarm as one group of logs (None when there is none), with
    /// iLogtail's alarm fields.
    pub fn take_group(&self, now: u32) -> Option<PipelineEventGroup> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return None;
        }
        let mut group = PipelineEventGroup::with_capacity(pending.len());
        for (key, entry) in pending {
            let mut log = LogEvent::new(now, None);
            log.set_content("alarm_type", key.alarm_type);
            log.set_content("alarm_level", entry.level.as_str());
            log.set_content("alarm_message", entry.message);
            log.set_content("alarm_count", entry.count.to_string());
            log.set_content("project_name", key.scope.project);
            log.set_content("category", key.scope.logstore);
            log.set_content("config", key.scope.config);
            log.set_content("version", env!("CARGO_PKG_VERSION"));
            group.events.push(PipelineEvent::Log(log));
        }
        Some(group)
    }

    /// Puts a report that could not be delivered back, to go with the next one.
    pub fn restore(&self, group: PipelineEventGroup) {
        for event in group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let text = |k: &[u8]| {
                log.content(k)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let key = AlarmKey {
                alarm_type: text(b"alarm_type"),
                scope: AlarmScope {
                    project: text(b"project_name"),
                    logstore: text(b"category"),
                    config: text(b"config"),
                },
            };
            let count: u64 = text(b"alarm_count").parse().unwrap_or(1);
            let level = match text(b"alarm_level").as_str() {
                "3" => AlarmLevel::Critical,
                "2" => AlarmLevel::Error,
                _ => AlarmLevel::Warning,
            };
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let entry = pending.entry(key).or_insert(AlarmEntry {
                level,
                message: text(b"alarm_message"),
                count: 0,
            });
            entry.count += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_alarm_is_counted_not_repeated() {
        let alarms = Alarms::default();
        let scope = AlarmScope {
            config: "c".into(),
            ..Default::default()
        };
        alarms.record("PLUGIN_ALARM", AlarmLevel::Error, &scope, "first");
        alarms.record("PLUGIN_ALARM", AlarmLevel::Error, &scope, "second");
        alarms.record("OTHER_ALARM", AlarmLevel::Warning, &scope, "other");
        let group = alarms.take_group(10).unwrap();
        assert_eq!(group.len(), 2);
        let PipelineEvent::Log(log) = &group.events[1] else {
            panic!()
        };
        assert_eq!(&log.content(b"alarm_type").unwrap()[..], b"PLUGIN_ALARM");
        assert_eq!(&log.content(b"alarm_count").unwrap()[..], b"2");
        assert_eq!(&log.content(b"alarm_message").unwrap()[..], b"second");
        assert!(alarms.take_group(11).is_none());
        alarms.restore(group);
        let again = alarms.take_group(12).unwrap();
        assert_eq!(again.len(), 2);
    }
}
