//! Where data coming back from the plugin base goes: each pipeline with native flushers has a
//! route (its flushers' sender queues and its logstore key). `SendPb` decodes the LogGroup (or,
//! when every flusher sends LogGroups, checks it and passes it on as it is) and queues it for
//! every flusher when each has room, or for none and answers -1 (the base retries later): that,
//! and `IsValidToSend`, is the backpressure the base sees.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tailrace::plugin_config::real_config_name;
use tailrace::{EncodedLogs, LogGroup, PipelineEventGroup};

use crate::plugin::delivery::Deliveries;
use crate::queue::SenderQueue;

/// The config names of the base's own built-in pipelines (iLogtail's).
const ALARM_CONFIG: &str = "logtail_alarm";
const STATISTICS_CONFIG: &str = "shennong_log_profile";

pub struct Route {
    pub logstore_key: i64,
    pub flushers: Vec<Arc<SenderQueue>>,
    /// What waits for the base's delivery reports (with Tailrace's base).
    pub deliveries: Option<Arc<Deliveries>>,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<Route>>,
    by_key: HashMap<i64, Arc<Route>>,
}

static TABLE: RwLock<Option<Table>> = RwLock::new(None);

fn with_table<R>(f: impl FnOnce(&Table) -> R) -> Option<R> {
    let guard = TABLE.read().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().map(f)
}

/// Routes pipeline `name`'s data to `route`.
pub fn add(name: &str, route: Route) {
    let route = Arc::new(route);
    let mut guard = TABLE.write().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(Table::default);
    if let Some(old) = table.by_name.insert(name.to_owned(), route.clone()) {
        table.by_key.remove(&old.logstore_key);
    }
    table.by_key.insert(route.logstore_key, route);
}

/// Stops routing to pipeline `name`.
pub fn remove(name: &str) {
    let mut guard = TABLE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(table) = guard.as_mut() {
        if let Some(old) = table.by_name.remove(name) {
            table.by_key.remove(&old.logstore_key);
        }
    }
}

fn has_room(route: &Route) -> bool {
    route.flushers.iter().all(|q| q.has_room())
}

pub fn is_valid_to_send(logstore_key: i64) -> bool {
    if logstore_key == -1 {
        return true;
    }
    with_table(|t| t.by_key.get(&logstore_key).is_none_or(|r| has_room(r))).unwrap_or(true)
}

/// 0 queued, -1 no room or not a LogGroup, -2 unknown pipeline.
pub fn send_pb(config_name: &str, pb: &[u8], lines: i32) -> i32 {
    let name = real_config_name(config_name);
    let not_a_log_group = |e: &dyn std::fmt::Display| {
        tracing::warn!(
            config = config_name,
            "SendPb: not an sls_logs.LogGroup: {e}"
        );
        -1
    };
    if name == ALARM_CONFIG || name == STATISTICS_CONFIG {
        return match LogGroup::decode_bytes(pb) {
            Ok(group) => {
                report_builtin(name, &group);
                0
            }
            Err(e) => not_a_log_group(&e),
        };
    }
    let Some(route) = with_table(|t| t.by_name.get(name).cloned()).flatten() else {
        // Still checked: a base sending garbage is told so first.
        return match LogGroup::count_logs(pb) {
            Ok(_) => -2,
            Err(e) => not_a_log_group(&e),
        };
    };
    let mut group = if route.flushers.iter().all(|q| q.takes_encoded()) {
        // Every flusher sends LogGroups: this one goes on as the base serialized it, checked
        // and counted but not decoded (iLogtail's core queues SendPb's buffer as it is).
        match LogGroup::count_logs(pb) {
            Ok(logs) => PipelineEventGroup {
                encoded: Some(EncodedLogs {
                    log_group: Bytes::copy_from_slice(pb),
                    events: logs,
                }),
                ..Default::default()
            },
            Err(e) => return not_a_log_group(&e),
        }
    } else {
        match LogGroup::decode_event_group(pb) {
            Ok(group) => group,
            Err(e) => return not_a_log_group(&e),
        }
    };
    if lines >= 0 && lines as usize != group.len() {
        tracing::debug!(
            config = config_name,
            lines,
            logs = group.len(),
            "SendPb: lines differs from the logs sent"
        );
    }
    if !has_room(&route) {
        return -1;
    }
    // Every flusher had room: each takes the group (a queue only refuses once its pipeline is
    // stopping, and the route is removed before that).
    let Some((last, others)) = route.flushers.split_last() else {
        return -2;
    };
    if let Some(deliveries) = &route.deliveries {
        group.acks.push(deliveries.returned());
    }
    group.acks.split(route.flushers.len());
    // A copy for each flusher but the last, which takes the group itself: copying a batch
    // costs a reference count per field, taken and later dropped.
    for q in others {
        if q.push(group.clone()).is_err() {
            return -2;
        }
    }
    if last.push(group).is_err() {
        return -2;
    }
    0
}

/// The base reports pack `pack_id` of pipeline `config_name` delivered. Always 0 (the command
/// is known): a pipeline removed meanwhile has nothing waiting any more.
pub fn delivered(config_name: &str, pack_id: &str) -> i32 {
    let name = real_config_name(config_name);
    let deliveries =
        with_table(|t| t.by_name.get(name).and_then(|r| r.deliveries.clone())).flatten();
    if let Some(deliveries) = deliveries {
        if !deliveries.reported(pack_id) {
            tracing::debug!(
                config = config_name,
                pack_id,
                "delivery report for an unknown pack"
            );
        }
    }
    0
}

/// Alarms and statistics from the base go to the host's log.
fn report_builtin(name: &str, group: &LogGroup) {
    for log in &group.logs {
        let fields: Vec<String> = log
            .contents
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&c.key),
                    String::from_utf8_lossy(&c.value)
                )
            })
            .collect();
        if name == ALARM_CONFIG {
            let field = |key: &[u8]| {
                log.contents
                    .iter()
                    .find(|c| c.key == key)
                    .map(|c| String::from_utf8_lossy(&c.value).into_owned())
            };
            let kind = field(b"alarm_type").unwrap_or_else(|| "unknown".to_owned());
            let n = field(b"alarm_count")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            crate::monitor::alarms::count(&kind, n);
            tracing::warn!(target: "plugin_base", "alarm: {}", fields.join(" "));
        } else {
            tracing::debug!(target: "plugin_base", "statistics: {}", fields.join(" "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::proto::{Log, LogContent};

    #[test]
    fn alarms_from_the_base_are_counted_by_kind() {
        let content = |k: &str, v: &str| LogContent {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
        };
        let group = LogGroup {
            logs: vec![Log {
                contents: vec![
                    content("alarm_type", "ROUTER_TEST_ALARM"),
                    content("alarm_count", "4"),
                    content("alarm_message", "x"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(send_pb("logtail_alarm", &group.encode_to_bytes(), 1), 0);
        let counted = crate::monitor::alarms::counts()
            .into_iter()
            .find(|(k, _)| k == "ROUTER_TEST_ALARM");
        assert_eq!(counted, Some(("ROUTER_TEST_ALARM".to_owned(), 4)));
    }
}
