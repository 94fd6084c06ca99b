//! Parsing one syslog message, as iLogtail's `service_syslog` does with its `ParseProtocol`:
//! `""` keeps the message whole, `rfc3164` (BSD syslog), `rfc5424`, or `auto` (3164, then
//! 5424). A message that does not parse is an error; the input decides (`IgnoreParseFailure`)
//! whether it then keeps the message whole.

use std::collections::BTreeMap;

use tailrace::processor::parse_timestamp_native::parse_time_prefix;

/// `ParseProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `""`: no parsing, the message is the content.
    Raw,
    Rfc3164,
    Rfc5424,
    /// 3164 first, then 5424.
    Auto,
}

impl Protocol {
    pub fn from_option(value: &str) -> Result<Protocol, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(Protocol::Raw),
            "rfc3164" => Ok(Protocol::Rfc3164),
            "rfc5424" => Ok(Protocol::Rfc5424),
            "auto" => Ok(Protocol::Auto),
            _ => Err(format!(
                "{value:?} is not a syslog protocol: expected \"\", rfc3164, rfc5424 or auto"
            )),
        }
    }
}

/// RFC 5424 structured data: SD-ID → parameter → value.
pub type StructuredData = BTreeMap<String, BTreeMap<String, String>>;

/// What a message said (iLogtail's parse result). Numbers are -1 when absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub hostname: Option<String>,
    pub program: String,
    pub priority: i32,
    pub facility: i32,
    pub severity: i32,
    /// Epoch seconds and nanoseconds, when the message had a time.
    pub time: Option<(i64, u32)>,
    pub content: String,
    /// RFC 5424 only.
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    pub structured_data: Option<StructuredData>,
}

impl Message {
    fn whole(data: &[u8]) -> Message {
        Message {
            priority: -1,
            facility: -1,
            severity: -1,
            content: String::from_utf8_lossy(data).into_owned(),
            ..Message::default()
        }
    }
}

/// Parses `data` (one message, without its framing). `hostname` stands in for a 3164 message
/// that has none (`AddHostname`, for messages read from `/dev/log`).
pub fn parse(protocol: Protocol, data: &[u8], hostname: Option<&str>) -> Result<Message, String> {
    match protocol {
        Protocol::Raw => Ok(Message::whole(data)),
        Protocol::Rfc3164 => rfc3164(data, hostname),
        Protocol::Rfc5424 => rfc5424(data),
        Protocol::Auto => rfc3164(data, hostname).or_else(|_| rfc5424(data)),
    }
}

/// `<PRI>`: the priority, and the facility and severity it holds.
fn priority(data: &[u8], at: &mut usize) -> Result<(i32, i32, i32), String> {
    if data.first() != Some(&b'<') {
        return Err("no priority: the message does not start with '<'".into());
    }
    let digits = data[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || data.get(1 + digits) != Some(&b'>') {
        return Err("the priority is not <0> to <191>".into());
    }
    let pri: i32 = std::str::from_utf8(&data[1..1 + digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|p| *p <= 191)
        .ok_or("the priority is not <0> to <191>")?;
    *at = digits + 2;
    Ok((pri, pri / 8, pri % 8))
}

/// RFC 3164: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: CONTENT`.
fn rfc3164(data: &[u8], hostname: Option<&str>) -> Result<Message, String> {
    let mut at = 0;
    let (priority, facility, severity) = priority(data, &mut at)?;
    let rest = &data[at..];
    let (seconds, nanos, used) = parse_time_prefix("%b %e %H:%M:%S", rest)
        .ok_or("no RFC 3164 timestamp (Mmm dd hh:mm:ss) after the priority")?;
    at += used;
    if data.get(at) == Some(&b' ') {
        at += 1;
    }
    let hostname = match hostname {
        Some(h) => h.to_owned(),
        None => {
            let end = data[at..]
                .iter()
                .position(|b| *b == b' ')
                .map_or(data.len(), |i| at + i);
            let word = &data[at..end];
            if word.last() == Some(&b':') {
                // No hostname: a local syslog() put the tag right after the time.
                String::new()
            } else {
                at = (end + 1).min(data.len());
                String::from_utf8_lossy(word).into_owned()
            }
        }
    };
    // The tag: up to ':' or ' ' (a '[' starts the PID, which stays out of the tag).
    let from = at;
    let mut tag_end = None;
    let mut cursor = at;
    let mut program = String::new();
    while cursor < data.len() {
        match data[cursor] {
            b'[' if tag_end.is_none() => tag_end = Some(cursor),
            b':' | b' ' => {
                program =
                    String::from_utf8_lossy(&data[from..tag_end.unwrap_or(cursor)]).into_owned();
                cursor += 1;
                if data.get(cursor) == Some(&b' ') {
                    cursor += 1;
                }
                break;
            }
            _ => {}
        }
        cursor += 1;
    }
    if cursor >= data.len() && program.is_empty() {
        // No tag: everything after the header is the content.
        cursor = from;
    }
    let content = trim_spaces(&data[cursor.min(data.len())..]);
    Ok(Message {
        hostname: Some(hostname).filter(|h| !h.is_empty()),
        program,
        priority,
        facility,
        severity,
        time: Some((seconds, nanos)),
        content: String::from_utf8_lossy(content).into_owned(),
        ..Message::default()
    })
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, `-` for
/// an absent field.
fn rfc5424(data: &[u8]) -> Result<Message, String> {
    let mut at = 0;
    let (priority, facility, severity) = priority(data, &mut at)?;
    let mut fields = Fields { data, at };
    if fields.word()? != "1" {
        return Err("not RFC 5424: the version after the priority is not 1".into());
    }
    let time = match fields.word()? {
        "-" => None,
        stamp => Some(rfc3339(stamp).ok_or_else(|| format!("{stamp:?} is not an RFC 3339 time"))?),
    };
    let hostname = fields.nil_or_word()?;
    let program = fields.nil_or_word()?.unwrap_or_default();
    let proc_id = fields.nil_or_word()?;
    let msg_id = fields.nil_or_word()?;
    let structured_data = fields.structured_data()?;
    let mut message = &data[fields.at.min(data.len())..];
    if message.first() == Some(&b' ') {
        message = &message[1..];
    }
    // A UTF-8 byte order mark starts a message that says it is UTF-8.
    let message = message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message);
    Ok(Message {
        hostname,
        program,
        priority,
        facility,
        severity,
        time,
        content: String::from_utf8_lossy(message).into_owned(),
        proc_id,
        msg_id,
        structured_data,
    })
}

/// `2003-10-11T22:14:15.003Z`, `2003-08-24T05:14:15.000003-07:00`.
fn rfc3339(stamp: &str) -> Option<(i64, u32)> {
    let with_fraction = stamp.contains('.');
    let format = if with_fraction {
        "%Y-%m-%dT%H:%M:%S.%f%z"
    } else {
        "%Y-%m-%dT%H:%M:%S%z"
    };
    let (seconds, nanos, used) = parse_time_prefix(format, stamp.as_bytes())?;
    (used == stamp.len()).then_some((seconds, nanos))
}

/// The space-separated header fields of an RFC 5424 message.
struct Fields<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn word(&mut self) -> Result<&'a str, String> {
        let rest = self.data.get(self.at..).unwrap_or_default();
        let len = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
        if len == 0 {
            return Err("not RFC 5424: a header field is missing".into());
        }
        let word = std::str::from_utf8(&rest[..len])
            .map_err(|_| "not RFC 5424: a header field is not ASCII".to_owned())?;
        self.at += len + 1;
        Ok(word)
    }

    fn nil_or_word(&mut self) -> Result<Option<String>, String> {
        Ok(Some(self.word()?).filter(|w| *w != "-").map(str::to_owned))
    }

    /// `-`, or `[id name="value" ...]...` (with `\"`, `\\` and `\]` escapes in values).
    fn structured_data(&mut self) -> Result<Option<StructuredData>, String> {
        let data = self.data;
        match data.get(self.at) {
            Some(b'-') => {
                self.at += 1;
                return Ok(None);
            }
            Some(b'[') => {}
            _ => return Err("not RFC 5424: no structured data".into()),
        }
        let bad = || "not RFC 5424: malformed structured data".to_owned();
        let mut elements = BTreeMap::new();
        while data.get(self.at) == Some(&b'[') {
            self.at += 1;
            let id = self.name(b" ]").ok_or_else(bad)?;
            let mut params = BTreeMap::new();
            loop {
                match data.get(self.at) {
                    Some(b']') => {
                        self.at += 1;
                        break;
                    }
                    Some(b' ') => {
                        self.at += 1;
                        let name = self.name(b"=").ok_or_else(bad)?;
                        if data.get(self.at..self.at + 2) != Some(b"=\"") {
                            return Err(bad());
                        }
                        self.at += 2;
                        let mut value = Vec::new();
                        loop {
                            match data.get(self.at) {
                                None => return Err(bad()),
                                Some(b'"') => {
                                    self.at += 1;
                                    break;
                                }
                                Some(b'\\')
                                    if matches!(
                                        data.get(self.at + 1),
                                        Some(b'"' | b'\\' | b']')
                                    ) =>
                                {
                                    value.push(data[self.at + 1]);
                                    self.at += 2;
                                }
                                Some(b) => {
                                    value.push(*b);
                                    self.at += 1;
                                }
                            }
                        }
                        params.insert(name, String::from_utf8_lossy(&value).into_owned());
                    }
                    _ => return Err(bad()),
                }
            }
            elements.insert(id, params);
        }
        Ok(Some(elements))
    }

    /// An SD-ID or PARAM-NAME: up to one of `stops`, printable ASCII without `=`, `"`, `]`.
    fn name(&mut self, stops: &[u8]) -> Option<String> {
        let rest = self.data.get(self.at..)?;
        let len = rest.iter().position(|b| stops.contains(b))?;
        let name = &rest[..len];
        if name.is_empty()
            || name.len() > 32
            || name
                .iter()
                .any(|b| !b.is_ascii_graphic() || matches!(b, b'=' | b'"' | b']'))
        {
            return None;
        }
        self.at += len;
        Some(String::from_utf8_lossy(name).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_messages() {
        let m = parse(
            Protocol::Rfc3164,
            b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8",
            None,
        )
        .unwrap();
        assert_eq!(m.priority, 34);
        assert_eq!((m.facility, m.severity), (4, 2));
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.program, "su");
        assert_eq!(m.content, "'su root' failed for lonvick on /dev/pts/8");
        assert!(m.time.is_some());
        // A single-digit day is padded with a space.
        let m = parse(
            Protocol::Rfc3164,
            b"<13>Feb  5 17:32:18 10.0.0.99 myapp: hello",
            None,
        )
        .unwrap();
        assert_eq!(
            (
                m.hostname.as_deref(),
                m.program.as_str(),
                m.content.as_str()
            ),
            (Some("10.0.0.99"), "myapp", "hello")
        );
        // No hostname (a local syslog()): the tag follows the time.
        let m = parse(
            Protocol::Rfc3164,
            b"<13>Feb  5 17:32:18 cron[9]: job done",
            None,
        )
        .unwrap();
        assert_eq!((m.hostname, m.program.as_str()), (None, "cron"));
        assert_eq!(m.content, "job done");
        // AddHostname: the given hostname stands, the tag is read right after the time.
        let m = parse(
            Protocol::Rfc3164,
            b"<13>Feb  5 17:32:18 cron: x",
            Some("me"),
        )
        .unwrap();
        assert_eq!(
            (m.hostname.as_deref(), m.program.as_str()),
            (Some("me"), "cron")
        );
    }

    #[test]
    fn rfc5424_messages() {
        let m = parse(
            Protocol::Rfc5424,
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Appli\\\"cation\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \xEF\xBB\xBFAn application event log entry...",
            None,
        )
        .unwrap();
        assert_eq!((m.priority, m.facility, m.severity), (165, 20, 5));
        assert_eq!(m.time, Some((1_065_910_455, 3_000_000)));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.program, "evntslog");
        assert_eq!(m.proc_id.as_deref(), Some("1234"));
        assert_eq!(m.msg_id.as_deref(), Some("ID47"));
        let sd = m.structured_data.unwrap();
        assert_eq!(sd["exampleSDID@32473"]["eventSource"], "Appli\"cation");
        assert_eq!(sd["examplePriority@32473"]["class"], "high");
        assert_eq!(m.content, "An application event log entry...");
        // Nil fields, no message, a zone offset.
        let m = parse(
            Protocol::Rfc5424,
            b"<34>1 2003-08-24T05:14:15.000003-07:00 - - - - -",
            None,
        )
        .unwrap();
        assert_eq!(m.time, Some((1_061_727_255, 3_000)));
        assert_eq!(
            (m.hostname, m.proc_id, m.structured_data),
            (None, None, None)
        );
        assert_eq!(m.content, "");
    }

    #[test]
    fn failures_name_what_is_wrong_and_auto_tries_both() {
        let e = parse(Protocol::Rfc3164, b"hello", None).unwrap_err();
        assert!(e.contains("priority"), "{e}");
        let e = parse(Protocol::Rfc5424, b"<34>2 x", None).unwrap_err();
        assert!(e.contains("version"), "{e}");
        assert!(parse(
            Protocol::Rfc5424,
            b"<34>1 2003-08-24T05:14:15Z h a p m [bad",
            None
        )
        .is_err());
        let m = parse(
            Protocol::Auto,
            b"<34>1 2003-08-24T05:14:15Z h a p m - hi",
            None,
        )
        .unwrap();
        assert_eq!((m.program.as_str(), m.content.as_str()), ("a", "hi"));
        let m = parse(Protocol::Raw, b"anything", None).unwrap();
        assert_eq!((m.priority, m.content.as_str()), (-1, "anything"));
        assert!(Protocol::from_option("rfc9999").is_err());
        assert_eq!(
            Protocol::from_option(" RFC5424 ").unwrap(),
            Protocol::Rfc5424
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        const ALPHABET: &[u8] = b"<>1234567890 -[]=\"\\:TZ.abcOct\xff\xef\xbb\xbf";
        let mut seed: u32 = 7;
        for round in 0..3000usize {
            let len = round % 90;
            let mut data = Vec::with_capacity(len + 8);
            if round % 2 == 0 {
                data.extend_from_slice(b"<34>1 ");
            }
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                data.push(ALPHABET[(seed >> 16) as usize % ALPHABET.len()]);
            }
            for protocol in [Protocol::Rfc3164, Protocol::Rfc5424, Protocol::Auto] {
                let _ = parse(protocol, &data, None);
            }
        }
    }
}
