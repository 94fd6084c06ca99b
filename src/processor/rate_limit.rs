//! `processor_rate_limit`: drops logs beyond `Limit` (`100/s`, `6000/m`, `10/h`), counted apart
//! for each combination of the values of `Fields`, as iLogtail's extended processor of that
//! name: a token bucket per combination, full at the start, refilled continuously, whose full
//! buckets are forgotten every 10,000 logs so that memory stays bounded.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<RateLimitConfig>("processor_rate_limit", build);

/// Logs between two sweeps of the full buckets (iLogtail's GC threshold).
const SWEEP_EVERY: u32 = 10_000;

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RateLimitConfig {
    /// The fields whose values make a separate limit (default: one limit for all).
    pub fields: Vec<String>,
    /// `<number>/<s|m|h>`. Required.
    pub limit: String,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(RateLimit::new(parse_options(options)?)?))
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimit {
    fields: Vec<Bytes>,
    /// Bucket size.
    burst: f64,
    per_second: f64,
    buckets: HashMap<Vec<u8>, Bucket>,
    since_sweep: u32,
    /// Logs dropped.
    pub limited: u64,
}

impl RateLimit {
    pub fn new(config: RateLimitConfig) -> Result<Self, ProcessorError> {
        let bad = || {
            ProcessorError::new(
                "Limit",
                format!(
                    "{:?}: expected <number>/<s|m|h>, such as 100/s",
                    config.limit
                ),
            )
        };
        let (value, unit) = config.limit.split_once('/').ok_or_else(bad)?;
        let value: f64 = value.trim().parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if !value.is_finite() || value < 0.0 {
            return Err(bad());
        }
        let mut fields: Vec<Bytes> = config.fields.into_iter().map(Bytes::from).collect();
        fields.sort();
        Ok(RateLimit {
            fields,
            burst: value,
            per_second: value / seconds,
            buckets: HashMap::new(),
            since_sweep: 0,
            limited: 0,
        })
    }

    /// The combination of `log`'s values of the fields (a missing field counts as empty).
    fn key(&self, log: &LogEvent) -> Vec<u8> {
        let mut key = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                key.push(0);
            }
            if let Some(value) = log.content(field) {
                key.extend_from_slice(value);
            }
        }
        key
    }

    fn allowed(&mut self, key: Vec<u8>, now: Instant) -> bool {
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            let (burst, per_second) = (self.burst, self.per_second);
            self.buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
                b.tokens + elapsed * per_second < burst
            });
        }
        self.since_sweep += 1;
        let (burst, per_second) = (self.burst, self.per_second);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    fn process_at(&mut self, group: &mut PipelineEventGroup, now: Instant) {
        let before = group.events.len();
        let mut events = std::mem::take(&mut group.events);
        events.retain(|event| match event {
            PipelineEvent::Log(log) => {
                let key = self.key(log);
                self.allowed(key, now)
            }
            _ => true,
        });
        group.events = events;
        self.limited += (before - group.events.len()) as u64;
    }
}

impl Processor for RateLimit {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        self.process_at(group, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::options;
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn group(ips: &[&'static str]) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        for ip in ips {
            let mut log = LogEvent::new(0, None);
            log.set_content("ip", *ip);
            group.events.push(PipelineEvent::Log(log));
        }
        group
    }

    #[test]
    fn per_value_buckets_refill_with_time() {
        let mut p = RateLimit::new(
            serde_json::from_value(json!({"Fields": ["ip"], "Limit": "2/s"})).unwrap(),
        )
        .unwrap();
        let start = Instant::now();
        let mut g = group(&["a", "a", "a", "b", "b", "b"]);
        p.process_at(&mut g, start);
        assert_eq!(g.len(), 4);
        assert_eq!(p.limited, 2);
        // Half a second later, one token more for each.
        let mut g = group(&["a", "a", "b"]);
        p.process_at(&mut g, start + Duration::from_millis(500));
        assert_eq!(g.len(), 2);
        // Much later: full again, but never more than the limit.
        let mut g = group(&["a", "a", "a"]);
        p.process_at(&mut g, start + Duration::from_secs(60));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn limits_are_checked() {
        for bad in ["", "100", "x/s", "10/d", "-1/s"] {
            let err = build(&options(json!({"Limit": bad}))).err().unwrap();
            assert_eq!(err.field, "Limit", "{bad}");
        }
        assert!(build(&options(json!({"Limit": " 6000 / m "}))).is_ok());
    }
}
