//! From a received message to events in a group: [`Decoder`] turns one message into a log with
//! iLogtail's fields, and [`Batch`] gathers logs into a `PipelineEventGroup` that is sent when
//! it is full or has waited [`LINGER`], so that a busy connection sends few large groups and a
//! quiet one still sends its message at once.

use std::time::Duration;

use bytes::Bytes;
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};
use tokio::time::Instant;

use super::message::{self, Message, Protocol};
use crate::runtime::clock::now;

/// How long the first log of a batch waits for others.
pub const LINGER: Duration = Duration::from_millis(100);
/// A batch is sent once it holds this many logs...
const MAX_EVENTS: usize = 1024;
/// ... or this many bytes of messages.
const MAX_BYTES: usize = 1 << 20;

/// What every log of the input shares, and how messages are parsed.
pub struct Decoder {
    pub protocol: Protocol,
    pub ignore_parse_failure: bool,
    /// `AddHostname`: this host's name, for 3164 messages that have none (`/dev/log`).
    pub add_hostname: Option<String>,
    /// `_hostname_` of a message that does not name its host.
    pub local_hostname: Bytes,
    /// `_ip_`: this host's address.
    pub local_ip: Bytes,
}

const PROGRAM: Bytes = Bytes::from_static(b"_program_");
const PRIORITY: Bytes = Bytes::from_static(b"_priority_");
const FACILITY: Bytes = Bytes::from_static(b"_facility_");
const SEVERITY: Bytes = Bytes::from_static(b"_severity_");
const UNIXTIMESTAMP: Bytes = Bytes::from_static(b"_unixtimestamp_");
const HOSTNAME: Bytes = Bytes::from_static(b"_hostname_");
const CLIENT_IP: Bytes = Bytes::from_static(b"_client_ip_");
const IP: Bytes = Bytes::from_static(b"_ip_");
const CONTENT: Bytes = Bytes::from_static(b"_content_");
const STRUCTURED_DATA: Bytes = Bytes::from_static(b"_structured_data_");
const MESSAGE_ID: Bytes = Bytes::from_static(b"_message_id_");
const PROCESS_ID: Bytes = Bytes::from_static(b"_process_id_");

impl Decoder {
    /// The log of one message, as iLogtail's `service_syslog` makes it; `Err` when it does not
    /// parse and `IgnoreParseFailure` is off (the message is dropped, as in iLogtail). A message
    /// that does not parse otherwise becomes a log whose `_content_` is the whole message.
    pub fn decode(&self, data: &[u8], client_ip: &Bytes) -> Result<LogEvent, String> {
        let parsed = message::parse(self.protocol, data, self.add_hostname.as_deref());
        let message = match parsed {
            Ok(message) => message,
            Err(e) if !self.ignore_parse_failure => return Err(e),
            Err(_) => message::parse(Protocol::Raw, data, None)?,
        };
        Ok(self.log(message, client_ip))
    }

    fn log(&self, message: Message, client_ip: &Bytes) -> LogEvent {
        // A message without a time (or one out of range) gets the time it arrived.
        let (seconds, nanos) = message
            .time
            .and_then(|(s, n)| u32::try_from(s).ok().map(|s| (s, n)))
            .unwrap_or_else(now);
        let mut log = LogEvent::new(seconds, Some(nanos));
        let unix_nanos = i64::from(seconds) * 1_000_000_000 + i64::from(nanos);
        let hostname = match message.hostname {
            Some(h) => Bytes::from(h),
            None => self.local_hostname.clone(),
        };
        let contents = &mut log.contents;
        contents.push((PROGRAM, Bytes::from(message.program)));
        contents.push((PRIORITY, message.priority.to_string().into()));
        contents.push((FACILITY, message.facility.to_string().into()));
        contents.push((SEVERITY, message.severity.to_string().into()));
        contents.push((UNIXTIMESTAMP, unix_nanos.to_string().into()));
        contents.push((HOSTNAME, hostname));
        contents.push((CLIENT_IP, client_ip.clone()));
        contents.push((IP, self.local_ip.clone()));
        contents.push((CONTENT, Bytes::from(message.content)));
        if let Some(sd) = &message.structured_data {
            let json = serde_json::to_string(sd).unwrap_or_default();
            contents.push((STRUCTURED_DATA, json.into()));
        }
        if let Some(id) = message.msg_id {
            contents.push((MESSAGE_ID, id.into()));
        }
        if let Some(id) = message.proc_id {
            contents.push((PROCESS_ID, id.into()));
        }
        log
    }
}

/// Logs waiting to be sent together.
#[derive(Default)]
pub struct Batch {
    group: PipelineEventGroup,
    bytes: usize,
    started: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, log: LogEvent, size: usize) {
        if self.group.events.is_empty() {
            self.started = Some(Instant::now());
        }
        self.group.events.push(PipelineEvent::Log(log));
        self.bytes += size;
    }

    pub fn is_full(&self) -> bool {
        self.group.events.len() >= MAX_EVENTS || self.bytes >= MAX_BYTES
    }

    /// When the batch must be sent, if it holds anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|at| at + LINGER)
    }

    /// The group to send, if the batch holds anything; the batch is empty afterwards.
    pub fn take(&mut self) -> Option<PipelineEventGroup> {
        self.started = None;
        self.bytes = 0;
        if self.group.events.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(protocol: Protocol, ignore: bool) -> Decoder {
        Decoder {
            protocol,
            ignore_parse_failure: ignore,
            add_hostname: None,
            local_hostname: Bytes::from_static(b"here"),
            local_ip: Bytes::from_static(b"10.1.2.3"),
        }
    }

    fn get<'a>(log: &'a LogEvent, key: &str) -> &'a str {
        std::str::from_utf8(
            log.content(key.as_bytes())
                .unwrap_or_else(|| panic!("{key}")),
        )
        .unwrap()
    }

    #[test]
    fn a_5424_message_gives_every_field() {
        let log = decoder(Protocol::Rfc5424, true)
            .decode(
                b"<165>1 2003-10-11T22:14:15.003Z host1 app 42 ID7 [a@1 k=\"v\"] hello",
                &Bytes::from_static(b"192.0.2.9"),
            )
            .unwrap();
        assert_eq!((log.time, log.time_ns), (1_065_910_455, Some(3_000_000)));
        for (key, value) in [
            ("_program_", "app"),
            ("_priority_", "165"),
            ("_facility_", "20"),
            ("_severity_", "5"),
            ("_unixtimestamp_", "1065910455003000000"),
            ("_hostname_", "host1"),
            ("_client_ip_", "192.0.2.9"),
            ("_ip_", "10.1.2.3"),
            ("_content_", "hello"),
            ("_structured_data_", "{\"a@1\":{\"k\":\"v\"}}"),
            ("_message_id_", "ID7"),
            ("_process_id_", "42"),
        ] {
            assert_eq!(get(&log, key), value, "{key}");
        }
    }

    #[test]
    fn a_message_that_does_not_parse_is_kept_whole_or_dropped() {
        let ip = Bytes::from_static(b"192.0.2.9");
        let before = now().0;
        let log = decoder(Protocol::Rfc3164, true)
            .decode(b"no priority here", &ip)
            .unwrap();
        assert_eq!(get(&log, "_content_"), "no priority here");
        assert_eq!(get(&log, "_priority_"), "-1");
        assert_eq!(get(&log, "_hostname_"), "here", "this host stands in");
        assert!(log.time >= before, "the time it arrived");
        assert!(log.content(b"_structured_data_").is_none());
        let e = decoder(Protocol::Rfc3164, false)
            .decode(b"no priority here", &ip)
            .unwrap_err();
        assert!(e.contains("priority"), "{e}");
    }

    #[test]
    fn a_batch_is_full_by_count_or_bytes_and_empty_after_take() {
        let mut batch = Batch::default();
        assert!(batch.take().is_none() && batch.deadline().is_none());
        batch.push(LogEvent::new(1, None), 10);
        assert!(batch.deadline().is_some() && !batch.is_full());
        for _ in 1..MAX_EVENTS {
            batch.push(LogEvent::new(1, None), 10);
        }
        assert!(batch.is_full());
        assert_eq!(batch.take().unwrap().events.len(), MAX_EVENTS);
        assert!(batch.deadline().is_none());
        batch.push(LogEvent::new(1, None), MAX_BYTES);
        assert!(batch.is_full());
    }
}
