//! The body formats of `service_http_server` (`Format`): each turns one request body into one
//! group of events, or says why the body is malformed (the request is answered 400 with it).
//!
//! iLogtail's formats: `sls` (a protobuf `LogGroup`), `raw` (the whole body is one log),
//! `influx`/`influxdb` (the line protocol) and `prometheus` (the text exposition format). Metrics
//! become iLogtail's metric logs (`__name__`, `__labels__`, `__time_nano__`, `__value__`), as its
//! decoders make them. Tailrace adds `lines` (one log per line) and `json` (an object, or an
//! array of objects, one log each).

use bytes::Bytes;
use serde_json::Value;
use tailrace::{LogEvent, LogGroup, PipelineEvent, PipelineEventGroup};

use crate::runtime::clock::now;

/// The key of a whole body or line.
const CONTENT_KEY: &str = "content";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Sls,
    Raw,
    Lines,
    Json,
    Influx,
    Prometheus,
}

impl Format {
    /// The format named by `Format` (case and surrounding spaces ignored, as iLogtail does).
    pub fn parse(name: &str) -> Result<Format, String> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "sls" => Format::Sls,
            "raw" => Format::Raw,
            "lines" => Format::Lines,
            "json" => Format::Json,
            "influx" | "influxdb" => Format::Influx,
            "prometheus" => Format::Prometheus,
            _ => {
                return Err(format!(
                    "Format: unsupported format {name:?} (expected one of sls, raw, lines, json, \
                     influx, influxdb, prometheus)"
                ))
            }
        })
    }
}

/// What a decoder may read of the request besides its body.
#[derive(Debug, Default)]
pub struct RequestInfo<'a> {
    /// The raw query string (`db=x&precision=s`).
    pub query: &'a str,
    pub content_type: &'a str,
    pub content_encoding: &'a str,
}

/// Options that change how a format is decoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    /// iLogtail's `FieldsExtend` (influx): keep string fields, add `__type__` and `__field__`
    /// (and `__tag__:db` from the `db` query parameter), keep names as sent.
    pub fields_extend: bool,
}

/// Decodes one body. Every event of the group points into `body` where the format allows it.
pub fn decode(
    format: Format,
    body: Bytes,
    req: &RequestInfo<'_>,
    opts: DecodeOptions,
) -> Result<PipelineEventGroup, String> {
    let mut group = match format {
        Format::Sls => decode_sls(&body)?,
        Format::Raw => decode_raw(&body),
        Format::Lines => decode_lines(&body),
        Format::Json => decode_json(&body)?,
        Format::Influx => decode_influx(&body, req, opts)?,
        Format::Prometheus => decode_prometheus(&body, req)?,
    };
    if matches!(format, Format::Raw | Format::Lines) {
        group.source_buffer = Some(body);
    }
    Ok(group)
}

fn decode_sls(body: &[u8]) -> Result<PipelineEventGroup, String> {
    LogGroup::decode_bytes(body)
        .map(LogGroup::into_event_group)
        .map_err(|e| format!("invalid LogGroup: {e}"))
}

fn log_with(key: &'static str, value: Bytes) -> PipelineEvent {
    let (secs, nanos) = now();
    let mut log = LogEvent::new(secs, Some(nanos));
    log.set_content(key, value);
    PipelineEvent::Log(log)
}

/// The whole body is one log (`content`); an empty body is none.
fn decode_raw(body: &Bytes) -> PipelineEventGroup {
    let mut group = PipelineEventGroup::with_capacity(1);
    if !body.is_empty() {
        group.events.push(log_with(CONTENT_KEY, body.clone()));
    }
    group
}

/// One log per non-empty line (`\n` or `\r\n`), each a view into the body.
fn decode_lines(body: &Bytes) -> PipelineEventGroup {
    let mut group = PipelineEventGroup::default();
    let mut start = 0;
    while start < body.len() {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i);
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        if line_end > start {
            group
                .events
                .push(log_with(CONTENT_KEY, body.slice(start..line_end)));
        }
        start = end + 1;
    }
    group
}

/// A JSON object is one log, an array of objects one log each, fields in the order sent.
/// String values are kept as they are, other values as their JSON text.
fn decode_json(body: &[u8]) -> Result<PipelineEventGroup, String> {
    let value: JsonBody = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let objects = match value {
        JsonBody::Object(fields) => vec![fields],
        JsonBody::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                JsonBody::Object(fields) => Ok(fields),
                JsonBody::Array(_) => Err(format!(
                    "invalid JSON: element {i} of the array is not an object but an array"
                )),
                JsonBody::Other(other) => Err(format!(
                    "invalid JSON: element {i} of the array is not an object but {}",
                    kind(&other)
                )),
            })
            .collect::<Result<_, _>>()?,
        JsonBody::Other(other) => {
            return Err(format!(
                "invalid JSON: expected an object or an array of objects, got {}",
                kind(&other)
            ))
        }
    };
    let (secs, nanos) = now();
    let mut group = PipelineEventGroup::with_capacity(objects.len());
    for fields in objects {
        let mut log = LogEvent::new(secs, Some(nanos));
        for (k, v) in fields {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            log.contents.push((Bytes::from(k), Bytes::from(v)));
        }
        group.events.push(PipelineEvent::Log(log));
    }
    Ok(group)
}

/// A JSON body, objects keeping their keys in the order sent (serde_json's map sorts them).
enum JsonBody {
    Object(Vec<(String, Value)>),
    Array(Vec<JsonBody>),
    Other(Value),
}

impl<'de> serde::Deserialize<'de> for JsonBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonBody;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<JsonBody, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(JsonBody::Object(fields))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<JsonBody, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = s.next_element::<JsonBody>()? {
                    items.push(item);
                }
                Ok(JsonBody::Array(items))
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(Value::String(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<JsonBody, E> {
                Ok(JsonBody::Other(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One value of a query string, percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A metric log as iLogtail's decoders make it.
fn metric_log(name: String, labels: String, time_nanos: i64, value: String) -> LogEvent {
    let secs = time_nanos.div_euclid(1_000_000_000);
    let nanos = time_nanos.rem_euclid(1_000_000_000) as u32;
    let mut log = LogEvent::new(secs.clamp(0, u32::MAX as i64) as u32, Some(nanos));
    log.contents.push(("__name__".into(), name.into()));
    log.contents.push(("__labels__".into(), labels.into()));
    log.contents
        .push(("__time_nano__".into(), time_nanos.to_string().into()));
    log.contents.push(("__value__".into(), value.into()));
    log
}

/// `k#$#v|k#$#v`, as iLogtail joins labels; `pairs` sorted by key.
fn join_labels(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        out.push_str(k);
        out.push_str("#$#");
        out.push_str(v);
    }
    out
}

fn now_nanos() -> i64 {
    let (secs, nanos) = now();
    i64::from(secs) * 1_000_000_000 + i64::from(nanos)
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what iLogtail outputs):
/// the shortest digits, with an exponent of at least two digits when it is below -4 or at
/// least the larger of 6 and the number of digits ... as Go decides it.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}"); // "-1.2345e8", shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits = mantissa.trim_start_matches('-').replace('.', "").len() as i32;
    let mut eprec = 6;
    if eprec > digits && digits > exp {
        eprec = digits;
    }
    if exp < -4 || exp >= eprec {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

// ---- influx line protocol ----

/// iLogtail's name cleaning without `FieldsExtend`: every character but `[A-Za-z0-9_:]`
/// becomes `_`.
fn replace_invalid_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The position of the first `sep` not escaped by `\` (nor inside double quotes, when
/// `quotes`).
fn find_unescaped(s: &[u8], sep: u8, quotes: bool) -> Option<usize> {
    let mut i = 0;
    let mut quoted = false;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'"' if quotes => quoted = !quoted,
            c if c == sep && !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn split_unescaped(s: &[u8], sep: u8, quotes: bool) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_unescaped(rest, sep, quotes) {
        parts.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    parts.push(rest);
    parts
}

/// Removes the backslash before an escaped `,`, `=`, space, `"` or `\`.
fn unescape(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() && b",= \"\\".contains(&s[i + 1]) {
            i += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, PartialEq)]
enum FieldValue {
    Float(f64),
    Int(i128),
    Bool(bool),
    Str(String),
}

fn parse_field_value(v: &[u8]) -> Option<FieldValue> {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        return Some(FieldValue::Str(unescape(&v[1..v.len() - 1])));
    }
    let text = std::str::from_utf8(v).ok()?;
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(int) = text.strip_suffix('i') {
        return int.parse::<i64>().ok().map(|n| FieldValue::Int(n.into()));
    }
    if let Some(uint) = text.strip_suffix('u') {
        return uint.parse::<u64>().ok().map(|n| FieldValue::Int(n.into()));
    }
    let first = *text.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None; // "inf", "nan" and friends are not line-protocol floats
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(FieldValue::Float)
}

/// Nanoseconds per unit of the `precision` query parameter.
fn precision_nanos(precision: &str) -> Result<i64, String> {
    Ok(match precision {
        "" | "n" | "ns" => 1,
        "u" | "us" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => return Err(format!("invalid precision {other:?}")),
    })
}

fn decode_influx(
    body: &[u8],
    req: &RequestInfo<'_>,
    opts: DecodeOptions,
) -> Result<PipelineEventGroup, String> {
    let unit = precision_nanos(&query_param(req.query, "precision").unwrap_or_default())?;
    let db = query_param(req.query, "db").unwrap_or_default();
    let text = std::str::from_utf8(body).map_err(|e| format!("invalid line protocol: {e}"))?;
    let default_time = now_nanos();
    let mut group = PipelineEventGroup::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parse_influx_line(line.as_bytes(), unit, default_time, &db, opts, &mut group)
            .map_err(|e| format!("invalid line protocol at line {}: {e}", n + 1))?;
    }
    Ok(group)
}

fn parse_influx_line(
    line: &[u8],
    unit: i64,
    default_time: i64,
    db: &str,
    opts: DecodeOptions,
    group: &mut PipelineEventGroup,
) -> Result<(), String> {
    let key_end = find_unescaped(line, b' ', false).ok_or("no fields")?;
    let (key, rest) = (&line[..key_end], &line[key_end..]);
    let mut key_parts = split_unescaped(key, b',', false).into_iter();
    let measurement = unescape(key_parts.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    for tag in key_parts {
        let eq = find_unescaped(tag, b'=', false)
            .ok_or_else(|| format!("tag {:?} has no '='", String::from_utf8_lossy(tag)))?;
        let (k, v) = (unescape(&tag[..eq]), unescape(&tag[eq + 1..]));
        if k.is_empty() || v.is_empty() {
            return Err(format!("empty tag key or value in {:?}", unescape(tag)));
        }
        let k = if opts.fields_extend {
            k
        } else {
            replace_invalid_chars(&k)
        };
        tags.push((k, v));
    }
    tags.sort();
    let labels = join_labels(&tags);

    let rest = trim_spaces(rest);
    let fields_end = find_unescaped(rest, b' ', true).unwrap_or(rest.len());
    let (fields, ts) = (&rest[..fields_end], trim_spaces(&rest[fields_end..]));
    let time = if ts.is_empty() {
        default_time
    } else {
        let ts = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| format!("invalid timestamp {:?}", String::from_utf8_lossy(ts)))?;
        ts.checked_mul(unit).ok_or("timestamp out of range")?
    };
    if fields.is_empty() {
        return Err("no fields".into());
    }
    for field in split_unescaped(fields, b',', true) {
        let eq = find_unescaped(field, b'=', true)
            .ok_or_else(|| format!("field {:?} has no '='", String::from_utf8_lossy(field)))?;
        let field_key = unescape(&field[..eq]);
        if field_key.is_empty() {
            return Err("empty field key".into());
        }
        let raw = &field[eq + 1..];
        let value = parse_field_value(raw).ok_or_else(|| {
            format!(
                "field {field_key:?} has an invalid value {:?}",
                String::from_utf8_lossy(raw)
            )
        })?;
        let (value, value_type) = match value {
            FieldValue::Float(f) => (go_float(f), "float"),
            FieldValue::Int(i) => (i.to_string(), "int"),
            FieldValue::Bool(b) => (if b { "1" } else { "0" }.to_owned(), "bool"),
            FieldValue::Str(s) if opts.fields_extend => (s, "string"),
            FieldValue::Str(_) => continue,
        };
        let name = if field_key == "value" {
            measurement.clone()
        } else {
            format!("{measurement}:{field_key}")
        };
        let name = if opts.fields_extend {
            name
        } else {
            replace_invalid_chars(&name)
        };
        let mut log = metric_log(name, labels.clone(), time, value);
        if opts.fields_extend {
            log.contents.push(("__type__".into(), value_type.into()));
            log.contents
                .push(("__field__".into(), Bytes::from(field_key.clone())));
            if !db.is_empty() {
                log.contents
                    .push(("__tag__:db".into(), Bytes::from(db.to_owned())));
            }
        }
        group.events.push(PipelineEvent::Log(log));
    }
    Ok(())
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

// ---- prometheus text exposition format ----

fn decode_prometheus(body: &[u8], req: &RequestInfo<'_>) -> Result<PipelineEventGroup, String> {
    if req.content_encoding.eq_ignore_ascii_case("snappy")
        || req.content_type.starts_with("application/x-protobuf")
    {
        return Err(
            "prometheus remote write (snappy protobuf) is not supported; send the \
                    text exposition format"
                .into(),
        );
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("invalid exposition text: {e}"))?;
    // The text format's default timestamp has millisecond precision, as expfmt gives it.
    let default_time = now_nanos() / 1_000_000 * 1_000_000;
    let mut group = PipelineEventGroup::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let log = parse_prometheus_line(line, default_time)
            .map_err(|e| format!("invalid exposition text at line {}: {e}", n + 1))?;
        group.events.push(PipelineEvent::Log(log));
    }
    Ok(group)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_prometheus_line(line: &str, default_time: i64) -> Result<LogEvent, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err(format!("no metric name in {line:?}"));
    }
    let name = &line[..name_end];
    let mut rest = line[name_end..].trim_start();
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let lname_end = rest
                .char_indices()
                .find(|&(i, c)| !(is_name_char(c, i == 0) && c != ':'))
                .map_or(rest.len(), |(i, _)| i);
            if lname_end == 0 {
                return Err(format!("invalid label name at {rest:?}"));
            }
            let lname = &rest[..lname_end];
            rest = rest[lname_end..].trim_start();
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("label {lname:?} has no '='"))?
                .trim_start();
            rest = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("label {lname:?} has no quoted value"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("label {lname:?}: unterminated value")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, c)) => {
                            return Err(format!("label {lname:?}: invalid escape \\{c}"))
                        }
                        None => return Err(format!("label {lname:?}: unterminated value")),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            rest = rest[end + 1..].trim_start();
            if labels.iter().any(|(k, _)| k == lname) {
                return Err(format!("label {lname:?} appears twice"));
            }
            labels.push((lname.to_owned(), value));
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' after label {lname:?}"));
            }
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parts.next().ok_or("no value")?;
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("invalid value {v:?}"))?,
    };
    let time = match parts.next() {
        None => default_time,
        Some(ts) => ts
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(|| format!("invalid timestamp {ts:?}"))?,
    };
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    // `__name__` given as a label names the metric, as expfmt reads it.
    let mut name = name.to_owned();
    if let Some(pos) = labels.iter().position(|(k, _)| k == "__name__") {
        name = labels.remove(pos).1;
    }
    labels.sort();
    Ok(metric_log(
        name,
        join_labels(&labels),
        time,
        go_float(value),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(event: &PipelineEvent) -> Vec<(String, String)> {
        let PipelineEvent::Log(log) = event else {
            panic!("not a log: {event:?}")
        };
        log.contents
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(format: &str, body: &str, query: &str) -> Result<PipelineEventGroup, String> {
        let req = RequestInfo {
            query,
            ..Default::default()
        };
        decode(
            Format::parse(format).unwrap(),
            Bytes::copy_from_slice(body.as_bytes()),
            &req,
            DecodeOptions::default(),
        )
    }

    #[test]
    fn format_names_are_ilogtails_and_an_unknown_one_is_named() {
        assert_eq!(Format::parse(" InfluxDB ").unwrap(), Format::Influx);
        assert_eq!(Format::parse("influx").unwrap(), Format::Influx);
        assert_eq!(Format::parse("SLS").unwrap(), Format::Sls);
        let err = Format::parse("otlp_logv1").unwrap_err();
        assert!(
            err.starts_with("Format: unsupported format \"otlp_logv1\""),
            "{err}"
        );
    }

    #[test]
    fn raw_is_one_log_and_lines_one_per_line() {
        let g = run("raw", "a b\nc\n", "").unwrap();
        assert_eq!(g.events.len(), 1);
        assert_eq!(fields(&g.events[0]), pairs(&[("content", "a b\nc\n")]));
        assert!(run("raw", "", "").unwrap().events.is_empty());

        let g = run("lines", "first\r\n\nsecond\nthird", "").unwrap();
        let got: Vec<_> = g.events.iter().map(fields).collect();
        assert_eq!(
            got,
            [
                pairs(&[("content", "first")]),
                pairs(&[("content", "second")]),
                pairs(&[("content", "third")])
            ]
        );
    }

    #[test]
    fn json_object_and_array() {
        let g = run(
            "json",
            r#"{"msg":"hi","n":3,"ok":true,"o":{"b":2,"a":1},"z":null}"#,
            "",
        )
        .unwrap();
        assert_eq!(
            fields(&g.events[0]),
            pairs(&[
                ("msg", "hi"),
                ("n", "3"),
                ("ok", "true"),
                ("o", "{\"a\":1,\"b\":2}"),
                ("z", "null")
            ])
        );
        let g = run("json", r#"[{"a":"1"},{"a":"2"}]"#, "").unwrap();
        assert_eq!(g.events.len(), 2);
        assert_eq!(fields(&g.events[1]), pairs(&[("a", "2")]));
    }

    #[test]
    fn malformed_json_says_why() {
        let err = run("json", r#"{"a":"#, "").unwrap_err();
        assert!(err.starts_with("invalid JSON: EOF"), "{err}");
        let err = run("json", r#"[{"a":"1"}, 2]"#, "").unwrap_err();
        assert_eq!(
            err,
            "invalid JSON: element 1 of the array is not an object but a number"
        );
        let err = run("json", "\"text\"", "").unwrap_err();
        assert!(err.contains("expected an object"), "{err}");
    }

    #[test]
    fn influx_points_become_ilogtail_metric_logs() {
        let body = "# comment\n\
                    cpu,host=h\\ 1,dc=eu usage=0.5,value=2i,up=t,note=\"x y\" 1700000000000000001\n\
                    mem.used value=1e6 1700000000\n";
        let g = run("influx", body, "precision=s").unwrap_err();
        // With precision=s the first line's nanosecond timestamp is out of range.
        assert!(g.contains("line 2: timestamp out of range"), "{g}");

        let body =
            "cpu,host=h\\ 1,dc=eu usage=0.5,value=2i,up=t,note=\"x y\" 1700000000000000001\n";
        let g = run("influx", body, "").unwrap();
        let got: Vec<_> = g.events.iter().map(fields).collect();
        let labels = "dc#$#eu|host#$#h 1";
        let t = "1700000000000000001";
        assert_eq!(
            got,
            [
                pairs(&[
                    ("__name__", "cpu:usage"),
                    ("__labels__", labels),
                    ("__time_nano__", t),
                    ("__value__", "0.5")
                ]),
                pairs(&[
                    ("__name__", "cpu"),
                    ("__labels__", labels),
                    ("__time_nano__", t),
                    ("__value__", "2")
                ]),
                pairs(&[
                    ("__name__", "cpu:up"),
                    ("__labels__", labels),
                    ("__time_nano__", t),
                    ("__value__", "1")
                ]),
            ],
            "the string field is left out without FieldsExtend"
        );
        let PipelineEvent::Log(log) = &g.events[0] else {
            panic!()
        };
        assert_eq!((log.time, log.time_ns), (1_700_000_000, Some(1)));

        let g = run("influx", "mem.used value=1e6 1700000000", "precision=s").unwrap();
        assert_eq!(
            fields(&g.events[0]),
            pairs(&[
                ("__name__", "mem_used"),
                ("__labels__", ""),
                ("__time_nano__", "1700000000000000000"),
                ("__value__", "1e+06")
            ])
        );
    }

    #[test]
    fn influx_fields_extend_keeps_strings_types_and_db() {
        let req = RequestInfo {
            query: "db=metrics%20db",
            ..Default::default()
        };
        let g = decode(
            Format::Influx,
            Bytes::from_static(b"m.x,t=1 note=\"a \\\"q\\\"\" 5"),
            &req,
            DecodeOptions {
                fields_extend: true,
            },
        )
        .unwrap();
        assert_eq!(
            fields(&g.events[0]),
            pairs(&[
                ("__name__", "m.x:note"),
                ("__labels__", "t#$#1"),
                ("__time_nano__", "5"),
                ("__value__", "a \"q\""),
                ("__type__", "string"),
                ("__field__", "note"),
                ("__tag__:db", "metrics db"),
            ])
        );
    }

    #[test]
    fn malformed_line_protocol_says_where_and_why() {
        for (body, want) in [
            ("cpu", "line 1: no fields"),
            (
                "cpu value=abc",
                "line 1: field \"value\" has an invalid value \"abc\"",
            ),
            (
                "ok value=1\ncpu,host value=1",
                "line 2: tag \"host\" has no '='",
            ),
            ("cpu value=1 12x", "line 1: invalid timestamp \"12x\""),
            (",t=1 value=1", "line 1: missing measurement"),
            ("cpu value", "line 1: field \"value\" has no '='"),
        ] {
            let err = run("influx", body, "").unwrap_err();
            assert!(err.ends_with(want), "{body:?}: {err}");
        }
        let err = run("influx", "cpu value=1", "precision=weeks").unwrap_err();
        assert_eq!(err, "invalid precision \"weeks\"");
    }

    #[test]
    fn prometheus_text_becomes_ilogtail_metric_logs() {
        let body = "# HELP http_requests_total Requests.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\",path=\"a\\\"b\\\\c\\nd\"} 1027 1395066363000\n\
                    temp 1.5e-7\n\
                    up{} +Inf 1395066363000\n";
        let g = run("prometheus", body, "").unwrap();
        let got: Vec<_> = g.events.iter().map(fields).collect();
        assert_eq!(
            got[0],
            pairs(&[
                ("__name__", "http_requests_total"),
                ("__labels__", "code#$#200|method#$#post|path#$#a\"b\\c\nd"),
                ("__time_nano__", "1395066363000000000"),
                ("__value__", "1027")
            ])
        );
        assert_eq!(got[1][0], ("__name__".into(), "temp".into()));
        assert_eq!(got[1][3], ("__value__".into(), "1.5e-07".into()));
        assert_eq!(got[2][3], ("__value__".into(), "+Inf".into()));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn malformed_prometheus_text_says_where_and_why() {
        for (body, want) in [
            ("up", "line 1: no value"),
            ("up x", "line 1: invalid value \"x\""),
            (
                "up{a=\"1\" 1",
                "line 1: expected ',' or '}' after label \"a\"",
            ),
            ("up{a=1} 1", "line 1: label \"a\" has no quoted value"),
            (
                "ok 1\nup{a=\"1\",a=\"2\"} 1",
                "line 2: label \"a\" appears twice",
            ),
            ("up 1 2 3", "line 1: unexpected \"3\" after the timestamp"),
            (
                "{a=\"1\"} 1",
                "line 1: no metric name in \"{a=\\\"1\\\"} 1\"",
            ),
        ] {
            let err = run("prometheus", body, "").unwrap_err();
            assert!(err.ends_with(want), "{body:?}: {err}");
        }
        let req = RequestInfo {
            content_encoding: "snappy",
            content_type: "application/x-protobuf",
            ..Default::default()
        };
        let err = decode(
            Format::Prometheus,
            Bytes::new(),
            &req,
            DecodeOptions::default(),
        )
        .unwrap_err();
        assert!(err.contains("remote write"), "{err}");
    }

    #[test]
    fn sls_log_groups_decode_and_garbage_is_refused() {
        use prost::Message;
        use tailrace::proto::{Log, LogContent};
        let group = LogGroup {
            logs: vec![Log {
                time: 7,
                time_ns: None,
                contents: vec![LogContent {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }],
            topic: Some("t".into()),
            ..Default::default()
        };
        let g = decode(
            Format::Sls,
            Bytes::from(group.encode_to_vec()),
            &RequestInfo::default(),
            DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(fields(&g.events[0]), pairs(&[("k", "v")]));
        let err = run("sls", "\u{7f}garbage", "").unwrap_err();
        assert!(err.starts_with("invalid LogGroup"), "{err}");
    }

    #[test]
    fn go_float_formats_as_go_does() {
        for (v, want) in [
            (0.5, "0.5"),
            (2.0, "2"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("a=1&db=x%2Fy+z", "db").as_deref(),
            Some("x/y z")
        );
        assert_eq!(query_param("a=1", "db"), None);
        assert_eq!(query_param("p=%zz%4", "p").as_deref(), Some("%zz%4"));
    }
}
