//! `processor_parse_regex_native`: extracts fields from one content with a regex, as iLogtail's
//! native processor of that name: the regex must match the whole value (boost's
//! `regex_match`), and capture group i becomes `Keys[i]`. Perl syntax as boost's (look-around,
//! backreferences), compiled by PCRE2's JIT ([`super::native_regex`]). Values are views into
//! the source line: parsing copies nothing.

use bytes::Bytes;
use serde::Deserialize;

use super::common_parser_options::CommonParserOptions;
use super::field_names::field_name;
use super::native_regex::NativeRegex;
use super::{parse_options, EncodingParser, Line, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::proto::{KeyField, LineValues};
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<ParseRegexConfig>("processor_parse_regex_native", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParseRegexConfig {
    /// The content to parse. Mandatory in iLogtail; Tailrace defaults to `content`, the key
    /// every line read from a file has.
    #[serde(default = "default_source_key")]
    pub source_key: String,
    /// The regex (full match); its capture groups, in order, fill `Keys`. Required.
    pub regex: String,
    /// The names of the captured fields. Required. One string with commas (`["a,b,c"]`, as
    /// old consoles wrote it) means those keys, as in iLogtail.
    pub keys: Vec<String>,
    /// Keep the source content when the line does not match (default false).
    #[serde(default)]
    pub keeping_source_when_parse_fail: bool,
    /// Keep the source content when the line matches (default false).
    #[serde(default)]
    pub keeping_source_when_parse_succeed: bool,
    /// The name the kept source content gets (default: `SourceKey`).
    #[serde(default)]
    pub renamed_source_key: String,
    /// On a failure with the source kept, also copy it to `__raw_log__` (default false).
    #[serde(default)]
    pub coping_raw_log: bool,
}

fn default_source_key() -> String {
    "content".to_owned()
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: ParseRegexConfig = parse_options(options)?;
    Ok(Box::new(ParseRegex::new(config)?))
}

pub struct ParseRegex {
    source_key: Bytes,
    keys: Vec<Bytes>,
    /// `None` in whole-line mode (`Regex: (.*)`): the value becomes `Keys[0]` as it is.
    regex: Option<NativeRegex>,
    /// A key is the source key: the parsed value replaces the source.
    overwritten: bool,
    /// No key is given twice: a log that holds only its source can take the fields as they
    /// come, without looking for a field of the same name.
    distinct_keys: bool,
    common: CommonParserOptions,
    /// The keys as written in a LogGroup; `None` when one is too long for that writer (see
    /// [`crate::proto::KeyField`]).
    key_fields: Option<Vec<KeyField>>,
    /// Lines that did not match (iLogtail's parse-failure count).
    pub parse_failures: u64,
    /// Reports failures (rate-limited) through the services of the side that runs it.
    failure_alarm: crate::context::FailureAlarm,
    /// Logs dropped because nothing was left of them.
    pub discarded: u64,
}

impl ParseRegex {
    pub fn new(config: ParseRegexConfig) -> Result<Self, ProcessorError> {
        let mut keys = config.keys;
        if let [only] = keys.as_slice() {
            if only.contains(',') {
                keys = only.split(',').map(str::to_owned).collect();
            }
        }
        // iLogtail's whole-line mode: `(.*)` takes the value as it is, newlines included.
        let regex = if config.regex == "(.*)" {
            if keys.is_empty() {
                keys.push("content".to_owned());
            }
            None
        } else {
            Some(super::keyed_regex(&config.regex, keys.len(), true)?)
        };
        let common = CommonParserOptions::new(
            &config.source_key,
            config.keeping_source_when_parse_fail,
            config.keeping_source_when_parse_succeed,
            &config.renamed_source_key,
            config.coping_raw_log,
        );
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        Ok(ParseRegex {
            overwritten: keys.contains(&config.source_key),
            distinct_keys: sorted.len() == keys.len(),
            source_key: field_name(&config.source_key),
            keys: keys.iter().map(|k| field_name(k)).collect(),
            key_fields: keys.iter().map(|k| KeyField::new(k.as_bytes())).collect(),
            regex,
            common,
            parse_failures: 0,
            failure_alarm: crate::context::FailureAlarm::new("REGEX_MATCH_ALARM", "regex match"),
            discarded: 0,
        })
    }
}

impl Processor for ParseRegex {
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        self.failure_alarm.attach(services);
    }

    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut values = LineValues::default();
        self.discarded += super::process_logs(self, &mut values, group);
    }

    fn takes_lines(&self) -> bool {
        // Not in whole-line mode, which has no `process_encoded`.
        self.regex.is_some()
    }

    fn process_encoded(
        &mut self,
        group: &mut PipelineEventGroup,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        // Not in whole-line mode (one view of the line: nothing to gain).
        self.regex.as_ref()?;
        let mut values = LineValues::with_capacity(self.keys.len());
        let (written, dropped) = super::encode_logs(self, &mut values, group, out);
        self.discarded += dropped;
        Some(written)
    }
}

impl ParseRegex {
    /// Whether `log` holds only its source, so that its fields can be appended (or written)
    /// without a search per field: a line as read from a file.
    fn only_source(&self, log: &crate::LogEvent) -> bool {
        self.distinct_keys
            && !self.overwritten
            && super::only_source(log, &self.source_key).is_some()
    }

    /// Whether a line that is the content `key` and nothing else can be written without a
    /// search per field (see [`ParseRegex::only_source`]).
    fn appends_to(&self, key: &[u8]) -> bool {
        self.distinct_keys && !self.overwritten && super::same_name(key, &self.source_key)
    }
}

impl EncodingParser for ParseRegex {
    type Scratch = LineValues;

    /// Processes one log; false when it is to be dropped.
    fn process_log(&mut self, log: &mut crate::LogEvent, _: &mut LineValues) -> bool {
        // A line as read from a file holds only its source: the fields then make the new
        // contents, in one growth and without a search per field.
        let only_source = self.only_source(log);
        let raw = if only_source {
            log.contents.pop().map(|(_, value)| value)
        } else {
            log.content(&self.source_key).cloned()
        };
        let Some(raw) = raw else {
            return true;
        };
        let success = match &mut self.regex {
            Some(regex) => {
                let matched = regex.find_at(&raw, 0).is_some();
                if matched {
                    // A group that did not take part in the match is an empty value, as
                    // in iLogtail.
                    log.contents.reserve(self.keys.len());
                    for (i, key) in self.keys.iter().enumerate() {
                        let value = match regex.group(i + 1) {
                            Some((start, end)) => raw.slice(start..end),
                            None => Bytes::new(),
                        };
                        if only_source {
                            log.contents.push((key.clone(), value));
                        } else {
                            log.set_content(key.clone(), value);
                        }
                    }
                } else {
                    self.parse_failures += 1;
                    self.failure_alarm.failed(&raw);
                }
                matched
            }
            None => {
                log.set_content(self.keys[0].clone(), raw.clone());
                true
            }
        };
        self.common
            .finish(log, &self.source_key, raw, success, self.overwritten)
    }

    /// Writes the fields of a line matched, with the source not kept, straight into `out` as a
    /// LogGroup's log; false, with nothing written, for any other line (which then takes
    /// [`ParseRegex::process_log`]; a line that did not match is matched again there, and
    /// counted).
    fn encode_line(&mut self, line: &Line<'_>, values: &mut LineValues, out: &mut Vec<u8>) -> bool {
        if self.common.keep_on_success || !self.appends_to(line.key) {
            return false;
        }
        let Some(regex) = &mut self.regex else {
            return false;
        };
        let raw = line.text();
        if regex.find_at(raw, 0).is_none() {
            return false;
        }
        values.clear();
        for i in 1..=self.keys.len() {
            // A group that did not take part in the match is an empty value.
            let (start, end) = regex.group(i).unwrap_or((0, 0));
            values.push_range(start, end);
        }
        match &self.key_fields {
            Some(keys) => {
                crate::proto::encode_keyed_log(out, line.time, line.time_ns, raw, keys, values)
            }
            None => crate::proto::encode_log(
                out,
                line.time,
                line.time_ns,
                self.keys.iter().map(|k| &k[..]).zip(values.texts(raw)),
            ),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_encoded_as_events;
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_that_does_not_match_raises_a_regex_match_alarm_through_its_services() {
        let services = crate::context::test_support::Recorded::new();
        let mut p = processor(json!({"SourceKey": "content", "Regex": "(\\d+)", "Keys": ["n"]}));
        p.init(services.clone());
        let mut group = lines(&[b"42", b"no digits here", b"still none"]);
        p.process(&mut group);
        assert_eq!(p.parse_failures(), 2);
        let alarms = services.alarms();
        assert_eq!(alarms.len(), 1, "rate-limited: {alarms:?}");
        assert_eq!(alarms[0].0, "REGEX_MATCH_ALARM");
        assert!(
            alarms[0].1.contains("\"no digits here\""),
            "{}",
            alarms[0].1
        );
    }

    fn processor(value: serde_json::Value) -> Box<dyn Processor> {
        build(&options(value)).unwrap()
    }

    const NGINX: &str = r#"([\d\.]+) \S+ \S+ \[(\S+) \S+\] "(\w+) ([^"]*)" ([\d\.]+) (\d+) (\d+) (\d+|-) "([^"]*)" "([^"]*)""#;
    const NGINX_KEYS: [&str; 10] = [
        "ip",
        "time",
        "method",
        "url",
        "request_time",
        "request_length",
        "status",
        "length",
        "ref_url",
        "browser",
    ];

    #[test]
    fn process_encoded_writes_the_bytes_of_process_then_encode() {
        let nginx = br#"127.0.0.1 - - [07/Jul/2022:10:43:30 +0800] "POST /PutData?Category=YunOsAccountOpLog" 0.024 18204 200 37 "-" "aliyun-sdk-java""#;
        let configs = [
            json!({"Regex": NGINX, "Keys": NGINX_KEYS}),
            json!({"Regex": NGINX, "Keys": NGINX_KEYS, "KeepingSourceWhenParseFail": true,
                   "CopingRawLog": true}),
            json!({"Regex": NGINX, "Keys": NGINX_KEYS, "KeepingSourceWhenParseSucceed": true}),
            // Groups that take no part in a match are empty values.
            json!({"Regex": r"(\d+)(x)?(y)?-?(.*)", "Keys": ["n", "x", "y", "rest"]}),
            json!({"Regex": r"(\w+) (\w+)", "Keys": ["a", "a"]}),
            json!({"Regex": r"(\w+) (.*)", "Keys": ["a", "content"]}),
            json!({"Regex": r"(\w+) (.*)", "Keys": ["k".repeat(40), "b"]}),
        ];
        let mut seed: u32 = 3;
        let mut random = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        for config in configs {
            let (mut by_events, mut by_bytes) = (processor(config.clone()), processor(config));
            for _ in 0..200 {
                let mut group = PipelineEventGroup::default();
                for _ in 0..1 + random(10) {
                    let line: Vec<u8> = match random(4) {
                        0 => nginx.to_vec(),
                        1 => format!("{} {}x-tail", random(1000), random(9)).into_bytes(),
                        2 => (0..random(300)).map(|_| b"ab 1-x\""[random(7)]).collect(),
                        _ => b"no match here %%".to_vec(),
                    };
                    let mut log = crate::LogEvent::new(1_700_000_000, None);
                    if random(4) == 0 {
                        log.time_ns = Some(random(1_000_000_000) as u32);
                    }
                    log.set_content("content", Bytes::from(line));
                    if random(8) == 0 {
                        log.set_content("host", "h1");
                    }
                    group.events.push(crate::PipelineEvent::Log(log));
                }
                assert_encoded_as_events(&mut *by_events, &mut *by_bytes, group);
            }
        }
        // Whole-line mode keeps to the events.
        let mut whole = processor(json!({"Regex": "(.*)", "Keys": ["line"]}));
        let mut group = lines(&[b"x"]);
        assert_eq!(whole.process_encoded(&mut group, &mut Vec::new()), None);
        assert_eq!(group.events.len(), 1);
    }

    #[test]
    fn nginx_line_from_ilogtail_docs() {
        let mut p = processor(json!({"SourceKey": "content", "Regex": NGINX, "Keys": NGINX_KEYS}));
        let mut group = lines(&[
            br#"127.0.0.1 - - [07/Jul/2022:10:43:30 +0800] "POST /PutData?Category=YunOsAccountOpLog" 0.024 18204 200 37 "-" "aliyun-sdk-java""#,
        ]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("ip", "127.0.0.1"),
                ("time", "07/Jul/2022:10:43:30"),
                ("method", "POST"),
                ("url", "/PutData?Category=YunOsAccountOpLog"),
                ("request_time", "0.024"),
                ("request_length", "18204"),
                ("status", "200"),
                ("length", "37"),
                ("ref_url", "-"),
                ("browser", "aliyun-sdk-java"),
            ])
        );
    }

    #[test]
    fn values_are_views_into_the_line() {
        let mut p = processor(json!({"Regex": r"(\S+) (\d+)", "Keys": ["ip", "code"]}));
        let mut group = lines(&[b"10.0.0.1 200"]);
        let crate::PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        let line = log.content(b"content").unwrap().clone();
        p.process(&mut group);
        let crate::PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        assert_eq!(log.content(b"ip").unwrap().as_ptr(), line.as_ptr());
    }

    #[test]
    fn failures_are_dropped_by_default_and_counted() {
        let mut p = ParseRegex::new(
            serde_json::from_value(json!({"Regex": r"(\S+) (\d+)", "Keys": ["ip", "code"]}))
                .unwrap(),
        )
        .unwrap();
        let mut group = lines(&[b"10.0.0.1 200", b"garbage", b"10.0.0.2 404 trailing"]);
        p.process(&mut group);
        assert_eq!(group.len(), 1);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("ip", "10.0.0.1"), ("code", "200")])
        );
        assert_eq!((p.parse_failures, p.discarded), (2, 2));
    }

    #[test]
    fn keep_options_rename_and_copy_the_source() {
        let mut p = processor(json!({
            "Regex": r"(\w+)=(\d+)", "Keys": ["k", "v"],
            "KeepingSourceWhenParseFail": true, "KeepingSourceWhenParseSucceed": true,
            "RenamedSourceKey": "raw", "CopingRawLog": true,
        }));
        let mut group = lines(&[b"a=1", b"not a pair"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("k", "a"), ("v", "1"), ("raw", "a=1")])
        );
        assert_eq!(
            contents(&group, 1),
            pairs(&[("raw", "not a pair"), ("__raw_log__", "not a pair")])
        );
    }

    #[test]
    fn multiline_java_event_and_whole_line_mode() {
        let event: &[u8] = b"2024-01-02 03:04:05.678 ERROR [main] c.e.App - boom\njava.lang.IllegalStateException: x\n\tat c.e.App.main(App.java:3)";
        let mut p = processor(json!({
            "Regex": r"(\S+ \S+) (\w+) \[([^\]]+)\] (\S+) - (.*)",
            "Keys": ["time", "level", "thread", "logger", "message"],
        }));
        let mut group = lines(&[event]);
        p.process(&mut group);
        let got = contents(&group, 0);
        assert_eq!(got[1], ("level".into(), "ERROR".into()));
        assert!(got[4].1.ends_with("(App.java:3)"), "{got:?}");

        let mut whole = processor(json!({"Regex": "(.*)", "Keys": ["line"]}));
        let mut group = lines(&[event]);
        whole.process(&mut group);
        assert_eq!(contents(&group, 0)[0].1.as_bytes(), event);
    }

    #[test]
    fn non_utf8_lines_match_bytewise_and_never_panic() {
        let mut p = processor(json!({"Regex": r"(\S+) (.*)", "Keys": ["a", "b"]}));
        let mut group = lines(&[b"\xff\xfe x\x80y", b"", b"\xc3"]);
        p.process(&mut group);
        let PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        assert_eq!(&log.content(b"a").unwrap()[..], b"\xff\xfe");
        assert_eq!(&log.content(b"b").unwrap()[..], b"x\x80y");
        assert_eq!(group.len(), 1);
    }

    #[test]
    fn comma_separated_keys_and_unicode_classes() {
        let mut p = processor(json!({"Regex": r"(\p{Han}+):(\d+)", "Keys": ["word,n"]}));
        let mut group = lines(&["日志:7".as_bytes()]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("word", "日志"), ("n", "7")]));
    }

    #[test]
    fn perl_syntax_as_boost_look_around_and_backreferences() {
        // Look-behind and look-ahead: the duration without its unit, the level unless DEBUG.
        let mut p = processor(json!({
            "Regex": r"(?!DEBUG)(\w+) .*?(?<=took )(\d+)(?=ms)ms",
            "Keys": ["level", "ms"],
        }));
        let mut group = lines(&[
            b"INFO request took 35ms",
            b"DEBUG cache took 1ms",
            b"WARN took 7s",
        ]);
        p.process(&mut group);
        assert_eq!(group.len(), 1);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("level", "INFO"), ("ms", "35")])
        );
        // A backreference: a value quoted with either quote, closed by the same one.
        let mut p = processor(json!({
            "Regex": r#"(\w+)=(['"])(.*?)\2"#,
            "Keys": ["key", "quote", "value"],
        }));
        let mut group = lines(&[br#"msg="it's""#, br#"msg='a"b'"#, br#"msg="mixed'"#]);
        p.process(&mut group);
        assert_eq!(group.len(), 2);
        assert_eq!(contents(&group, 0)[2], ("value".into(), "it's".into()));
        assert_eq!(contents(&group, 1)[2], ("value".into(), "a\"b".into()));
    }

    #[test]
    fn fields_replace_same_named_contents_and_repeated_keys_keep_the_last_value() {
        // A log with more than its source: a parsed field replaces a content of its name in
        // place.
        let mut p = processor(json!({"Regex": r"(\w+) (\w+)", "Keys": ["host", "msg"]}));
        let mut group = lines(&[b"web1 hello"]);
        let PipelineEvent::Log(log) = &mut group.events[0] else {
            panic!()
        };
        log.set_content("host", "old");
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("host", "web1"), ("msg", "hello")])
        );
        // A key given twice: one field, the last group's value.
        let mut p = processor(json!({"Regex": r"(\w+) (\w+)", "Keys": ["x", "x"]}));
        let mut group = lines(&[b"a b"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("x", "b")]));
        // The source key among the keys keeps its place.
        let mut p = processor(json!({"Regex": r"(\w+) (\w+)", "Keys": ["a", "content"]}));
        let mut group = lines(&[b"1 2"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("content", "2"), ("a", "1")]));
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"Regex": "(a)", "Keys": ["x", "y"]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Keys");
        let err = build(&options(json!({"Regex": "(", "Keys": []})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Regex");
        assert!(err.message.contains("not a valid regex"), "{err}");
        // Perl syntax that is still invalid: an unbounded look-behind, a missing group.
        for bad in [r"(?<=a+)(b)", r"(a)\2"] {
            let err = build(&options(json!({"Regex": bad, "Keys": ["x"]})))
                .err()
                .unwrap();
            assert_eq!(err.field, "Regex");
            assert!(
                err.message
                    .starts_with(&format!("{bad:?} is not a valid regex: ")),
                "{err}"
            );
        }
        let err = build(&options(json!({"Regex": "(a)", "Keys": "x"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Keys");
        // More groups than keys is accepted, as in iLogtail.
        assert!(build(&options(json!({"Regex": "(a)(b)", "Keys": ["x"]}))).is_ok());
    }

    /// Throughput on nginx lines (run with `--release -- --ignored --nocapture`), in MB per
    /// CPU-second of this thread spent in `process` alone (the groups are made outside the
    /// timing), so that a loaded machine does not skew it. `make bench` measures the whole
    /// daemon (`bench/processors.py`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn nginx_throughput() {
        fn thread_cpu() -> f64 {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec to fill.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        }
        let line: &[u8] = br#"127.0.0.1 - - [07/Jul/2022:10:43:30 +0800] "POST /PutData?Category=YunOsAccountOpLog" 0.024 18204 200 37 "-" "aliyun-sdk-java""#;
        let mut p = processor(json!({"SourceKey": "content", "Regex": NGINX, "Keys": NGINX_KEYS}));
        let batch: Vec<&[u8]> = vec![line; 4096];
        let (mut cpu, mut bytes) = (0.0, 0usize);
        while cpu < 1.0 {
            let mut group = lines(&batch);
            let started = thread_cpu();
            p.process(&mut group);
            cpu += thread_cpu() - started;
            assert_eq!(group.len(), batch.len());
            bytes += line.len() * batch.len();
        }
        let mbps = bytes as f64 / cpu / 1e6;
        eprintln!("processor_parse_regex_native, nginx: {mbps:.0} MB per CPU-second");
    }

    use crate::PipelineEvent;
}
