use super::super::test_support::{contents, lines, options, pairs};
use super::*;
use serde_json::json;

fn processor(value: serde_json::Value) -> ProcessorGrok {
    ProcessorGrok::new(serde_json::from_value(value).unwrap()).unwrap()
}

fn error(value: serde_json::Value) -> ProcessorError {
    build(&options(value))
        .err()
        .expect("the options are rejected")
}

const APACHE: &[u8] = br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

#[test]
fn combined_apache_log() {
    let mut p = processor(json!({"Match": ["%{COMBINEDAPACHELOG}"]}));
    let mut group = lines(&[APACHE]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("content", std::str::from_utf8(APACHE).unwrap()),
            ("clientip", "127.0.0.1"),
            ("ident", "-"),
            ("auth", "frank"),
            ("timestamp", "10/Oct/2000:13:55:36 -0700"),
            ("verb", "GET"),
            ("request", "/apache_pb.gif"),
            ("httpversion", "1.0"),
            ("response", "200"),
            ("bytes", "2326"),
            ("referrer", "\"http://www.example.com/start.html\""),
            ("agent", "\"Mozilla/4.08 [en] (Win98; I ;Nav)\""),
        ])
    );
    assert_eq!(p.parse_failures, 0);
}

#[test]
fn nginx_lines_with_ipv6_clients_dashes_and_a_bad_request() {
    let mut p = processor(json!({"Match": ["%{COMBINEDAPACHELOG}"], "KeepSource": false}));
    let mut group = lines(&[
        br#"2001:db8::1 - - [16/Nov/2022:14:39:59 +0800] "POST /api/v1/items?id=7&x=%20 HTTP/2.0" 201 - "-" "curl/7.79.1" "-""#,
        br#"10.1.2.3 - - [16/Nov/2022:14:40:00 +0800] "\x16\x03\x01" 400 157 "-" "-""#,
    ]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("clientip", "2001:db8::1"),
            ("ident", "-"),
            ("auth", "-"),
            ("timestamp", "16/Nov/2022:14:39:59 +0800"),
            ("verb", "POST"),
            ("request", "/api/v1/items?id=7&x=%20"),
            ("httpversion", "2.0"),
            ("response", "201"),
            ("referrer", "\"-\""),
            ("agent", "\"curl/7.79.1\""),
        ])
    );
    // A request line that is no `VERB path` is the raw request, as in logstash.
    let second = contents(&group, 1);
    assert!(second.contains(&("rawrequest".into(), r"\x16\x03\x01".into())));
    assert!(second.contains(&("response".into(), "400".into())));
    assert!(!second.iter().any(|(k, _)| k == "verb" || k == "content"));
}

#[test]
fn syslog_line() {
    let mut p = processor(json!({"Match": ["%{SYSLOGLINE}"], "KeepSource": false}));
    let mut group = lines(&[
        b"Mar  7 00:01:02 web-1 sshd[1234]: Accepted publickey for root from 10.0.0.1 port 22",
        b"2024-03-07T00:01:02.123+08:00 web-1 kernel: Out of memory",
    ]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("timestamp", "Mar  7 00:01:02"),
            ("logsource", "web-1"),
            ("program", "sshd"),
            ("pid", "1234"),
            (
                "message",
                "Accepted publickey for root from 10.0.0.1 port 22"
            ),
        ])
    );
    assert_eq!(
        contents(&group, 1),
        pairs(&[
            ("timestamp8601", "2024-03-07T00:01:02.123+08:00"),
            ("logsource", "web-1"),
            ("program", "kernel"),
            ("message", "Out of memory"),
        ])
    );
}

/// iLogtail's TestMatch: fields come after the kept source, in the expression's order.
#[test]
fn keep_source_puts_fields_after_the_source() {
    let mut p = processor(json!({
        "Match": ["%{WORD:word1} %{NUMBER:request_time} %{WORD:word2}"],
        "KeepSource": true,
    }));
    let mut group = lines(&[b"begin 123.456 end"]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("content", "begin 123.456 end"),
            ("word1", "begin"),
            ("request_time", "123.456"),
            ("word2", "end"),
        ])
    );
}

/// iLogtail's TestMultMatch: a custom pattern, several expressions, the first that matches
/// wins, and a value none matches loses its source with `IgnoreParseFailure: false`.
#[test]
fn custom_patterns_and_several_expressions() {
    let mut p = processor(json!({
        "CustomPatterns": {
            "HTTP": "%{IP:client} %{WORD:method} %{URIPATHPARAM:request} %{NUMBER:bytes} %{NUMBER:duration}",
        },
        "Match": [
            "%{HTTP}",
            "%{WORD:word1} %{NUMBER:request_time} %{WORD:word2}",
            "%{YEAR:year} %{MONTH:month} %{MONTHDAY:day} %{QUOTEDSTRING:motto}",
        ],
        "KeepSource": false,
        "IgnoreParseFailure": false,
    }));
    let mut group = lines(&[
        b"begin 123.456 end",
        br#"2019 June 24 "I am iron man""#,
        b"WRONG LOG",
        b"10.0.0.0 GET /index.html 15824 0.043",
    ]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("word1", "begin"),
            ("request_time", "123.456"),
            ("word2", "end")
        ])
    );
    assert_eq!(
        contents(&group, 1),
        pairs(&[
            ("year", "2019"),
            ("month", "June"),
            ("day", "24"),
            ("motto", "\"I am iron man\""),
        ])
    );
    assert!(contents(&group, 2).is_empty());
    assert_eq!(
        contents(&group, 3),
        pairs(&[
            ("client", "10.0.0.0"),
            ("method", "GET"),
            ("request", "/index.html"),
            ("bytes", "15824"),
            ("duration", "0.043"),
        ])
    );
    assert_eq!(p.parse_failures, 1);
}

#[test]
fn failures_with_each_keep_option() {
    let line: &[u8] = b"no digits here";
    let run = |config: serde_json::Value| {
        let mut p = processor(config);
        let mut group = lines(&[line, b"42"]);
        p.process(&mut group);
        (contents(&group, 0), contents(&group, 1), p.parse_failures)
    };
    // Defaults: the source stays either way.
    let (failed, parsed, failures) = run(json!({"Match": ["^%{INT:n}$"]}));
    assert_eq!(failed, pairs(&[("content", "no digits here")]));
    assert_eq!(parsed, pairs(&[("content", "42"), ("n", "42")]));
    assert_eq!(failures, 1);
    // IgnoreParseFailure false: a failure loses the source; the log stays.
    let (failed, parsed, _) = run(json!({"Match": ["^%{INT:n}$"], "IgnoreParseFailure": false}));
    assert!(failed.is_empty());
    assert_eq!(parsed, pairs(&[("content", "42"), ("n", "42")]));
    // KeepSource false: a success loses the source, a failure keeps it.
    let (failed, parsed, _) = run(json!({"Match": ["^%{INT:n}$"], "KeepSource": false}));
    assert_eq!(failed, pairs(&[("content", "no digits here")]));
    assert_eq!(parsed, pairs(&[("n", "42")]));
    // A field named like the source replaces it, and survives KeepSource false.
    let (_, parsed, _) = run(json!({"Match": ["%{INT:content}"], "KeepSource": false}));
    assert_eq!(parsed, pairs(&[("content", "42")]));
}

#[test]
fn matches_without_named_fields_count_as_failures() {
    // An expression that matches but names nothing yields no field: the next one is tried.
    let mut p = processor(json!({"Match": ["%{INT}", "%{WORD:word}"], "KeepSource": false}));
    let mut group = lines(&[b"12"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("word", "12")]));
    // An empty capture is no field either.
    let mut p = processor(json!({"Match": ["x(?<empty>a*)"]}));
    let mut group = lines(&[b"xyz"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("content", "xyz")]));
    assert_eq!(p.parse_failures, 1);
}

#[test]
fn every_match_in_the_value_is_collected() {
    // iLogtail collects the fields of every match; one key keeps one value, the last.
    let mut p = processor(json!({"Match": ["%{WORD:key}=%{INT:value}"], "KeepSource": false}));
    let mut group = lines(&[b"a=1 b=2 c=x"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("key", "b"), ("value", "2")]));
    // Empty matches move on by one byte instead of looping.
    let mut p = processor(json!({"Match": ["(?<d>[0-9]*)"], "KeepSource": false}));
    let mut group = lines(&[b"a1b22c"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("d", "22")]));
}

#[test]
fn source_key_missing_and_empty() {
    let mut p = processor(json!({"Match": ["%{INT:n}"], "SourceKey": "msg", "NoKeyError": true}));
    let mut group = lines(&[b"7"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("content", "7")]));
    assert_eq!(p.missing_key, 1);

    // An empty SourceKey parses every content the log had.
    let mut p = processor(json!({"Match": ["^%{INT:n}$"], "SourceKey": "", "KeepSource": false}));
    let mut group = lines(&[b"7"]);
    if let PipelineEvent::Log(log) = &mut group.events[0] {
        log.set_content("other", "words");
    }
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[("other", "words"), ("n", "7")])
    );
    assert_eq!(p.parse_failures, 1);
}

#[test]
fn dotted_field_names_and_duplicate_names_across_alternatives() {
    let mut p =
        processor(json!({"Match": ["%{IP:client.ip} %{INT:http-status}"], "KeepSource": false}));
    let mut group = lines(&[b"10.0.0.1 404"]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[("client.ip", "10.0.0.1"), ("http-status", "404")])
    );
    // HTTPD_ERRORLOG names `timestamp` and `loglevel` in both of its alternatives.
    let mut p = processor(json!({"Match": ["%{HTTPD_ERRORLOG}"], "KeepSource": false}));
    let mut group = lines(&[
        b"[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test",
        b"[Mon Dec 02 10:11:12 2019] [core:warn] [pid 1234:tid 5678] AH00098: pid file overwritten",
    ]);
    p.process(&mut group);
    assert_eq!(
        contents(&group, 0),
        pairs(&[
            ("timestamp", "Wed Oct 11 14:32:52 2000"),
            ("loglevel", "error"),
            ("clientip", "127.0.0.1"),
            (
                "errormsg",
                "client denied by server configuration: /export/home/live/ap/htdocs/test"
            ),
        ])
    );
    let second = contents(&group, 1);
    assert_eq!(
        second[0],
        ("timestamp".into(), "Mon Dec 02 10:11:12 2019".into())
    );
    assert_eq!(second[1], ("loglevel".into(), "warn".into()));
    assert!(second.contains(&("module".into(), "core".into())));
    assert!(second.contains(&("message".into(), "pid file overwritten".into())));
}

#[test]
fn values_that_are_not_utf8_are_matched_bytewise() {
    let mut p = processor(json!({"Match": ["%{NOTSPACE:a} %{GREEDYDATA:b}"], "KeepSource": false}));
    let mut group = lines(&[b"\xff\xfe tail \xc3"]);
    p.process(&mut group);
    let PipelineEvent::Log(log) = &group.events[0] else {
        unreachable!()
    };
    assert_eq!(log.content(b"a").unwrap().as_ref(), b"\xff\xfe");
    assert_eq!(log.content(b"b").unwrap().as_ref(), b"tail \xc3");
}

#[test]
fn pattern_dirs_are_read_and_custom_patterns_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine"),
        "\"\"\" my patterns \"\"\"\nREQ_ID req-%{INT}\nLEVEL (?:DEBUG|INFO)\n",
    )
    .unwrap();
    let mut p = processor(json!({
        "CustomPatternDir": [dir.path()],
        "CustomPatterns": {"LEVEL": "(?:WARN|ERROR)"},
        "Match": ["%{LEVEL:level} %{REQ_ID:id}"],
        "KeepSource": false,
    }));
    let mut group = lines(&[b"INFO req-1", b"ERROR req-2"]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("content", "INFO req-1")]));
    assert_eq!(
        contents(&group, 1),
        pairs(&[("level", "ERROR"), ("id", "req-2")])
    );
}

#[test]
fn bad_options_name_the_option_and_value() {
    let e = error(json!({}));
    assert_eq!(e.field, "Match");
    let e = error(json!({"Match": ["%{INT:a}", "%{NOSUCH:x}"]}));
    assert_eq!(e.field, "Match[1]");
    assert_eq!(
        e.message,
        "\"%{NOSUCH:x}\": %{NOSUCH} names no known pattern"
    );
    let e = error(json!({"Match": ["%{WORD:a}("]}));
    assert_eq!(e.field, "Match[0]");
    assert!(
        e.message
            .starts_with("\"%{WORD:a}(\" is not a valid regex once expanded: "),
        "{}",
        e.message
    );
    let e = error(json!({"Match": ["%{INT:a:bool}"]}));
    assert_eq!(e.field, "Match[0]");
    assert!(
        e.message.contains("is not a valid reference"),
        "{}",
        e.message
    );
    let e = error(json!({"Match": ["%{A}"], "CustomPatterns": {"A": "%{B}", "B": "x%{A}"}}));
    assert_eq!(e.field, "CustomPatterns.A");
    assert!(e.message.ends_with("A -> B -> A"), "{}", e.message);
    let e = error(json!({"Match": ["%{INT:n}"], "CustomPatternDir": ["/nonexistent/grok"]}));
    assert_eq!(e.field, "CustomPatternDir[0]");
    assert!(
        e.message.starts_with("/nonexistent/grok: "),
        "{}",
        e.message
    );
    let e = error(json!({"Match": ["%{INT:n}"], "TimeoutMilliSeconds": -1}));
    assert_eq!(e.field, "TimeoutMilliSeconds");
    let e = error(json!({"Match": "%{INT:n}"}));
    assert_eq!(e.field, "Match");
}

#[test]
fn runaway_backtracking_counts_as_a_time_out() {
    // Exponential backtracking: PCRE2's match limit stops it, and the value stays unparsed.
    let mut p = processor(json!({"Match": ["^(?<x>(a+)+)$"], "KeepSource": false}));
    let mut group = lines(&[format!("{}!", "a".repeat(40)).as_bytes()]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0).len(), 1);
    assert_eq!(p.timeouts, 1);
    assert_eq!(p.parse_failures, 0);
}

#[test]
fn a_value_slower_than_the_timeout_stays_unparsed() {
    // About 300 000 matches: far more than a millisecond, even in release.
    let value = "ab ".repeat(300_000);
    let config = json!({"Match": ["%{WORD:w}"], "KeepSource": false, "TimeoutMilliSeconds": 1});
    let mut p = processor(config);
    let mut group = lines(&[value.as_bytes()]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("content", value.as_str())]));
    assert_eq!(p.timeouts, 1);
    // Without the limit, the same value parses.
    let mut p = processor(json!({"Match": ["%{WORD:w}"], "KeepSource": false}));
    let mut group = lines(&[value.as_bytes()]);
    p.process(&mut group);
    assert_eq!(contents(&group, 0), pairs(&[("w", "ab")]));
}

/// CPU time of this thread: the machine is shared, so wall time would measure the neighbours.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// `cargo test --release -p tailrace --lib grok_throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run in release"]
fn grok_throughput() {
    let mut p = processor(json!({"Match": ["%{COMBINEDAPACHELOG}"], "KeepSource": false}));
    let samples: [&[u8]; 3] = [
        APACHE,
        br#"192.168.10.21 - - [16/Nov/2022:14:39:59 +0800] "GET /static/js/app.3f2a9c.js HTTP/1.1" 200 48213 "https://shop.example.com/cart?item=42" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36""#,
        br#"2001:db8:85a3::8a2e:370:7334 - alice [16/Nov/2022:14:40:01 +0800] "POST /api/v2/orders HTTP/2.0" 201 512 "-" "okhttp/4.9.3""#,
    ];
    let batch: Vec<&[u8]> = (0..1000).map(|i| samples[i % samples.len()]).collect();
    let bytes_per_batch: usize = batch.iter().map(|l| l.len()).sum();
    let groups: Vec<PipelineEventGroup> = (0..60).map(|_| lines(&batch)).collect();
    let started = thread_cpu_seconds();
    let mut total = 0usize;
    for mut group in groups {
        p.process(&mut group);
        total += bytes_per_batch;
    }
    let seconds = thread_cpu_seconds() - started;
    assert_eq!(p.parse_failures, 0);
    println!(
        "processor_grok %{{COMBINEDAPACHELOG}}: {:.1} MB per CPU-second ({total} bytes in {seconds:.3} CPU-s)",
        total as f64 / seconds / 1e6,
    );
}

/// A long quoted field made of escapes repeats an atomic group 100 000 times: the larger JIT
/// stack lets it parse instead of failing with a stack limit.
#[test]
fn long_values_with_many_escapes_parse() {
    let agent = format!("\"{}\"", r#"\""#.repeat(100_000));
    let line =
        format!(r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" {agent}"#);
    let mut p = processor(json!({"Match": ["%{COMBINEDAPACHELOG}"], "KeepSource": false}));
    let mut group = lines(&[line.as_bytes()]);
    p.process(&mut group);
    assert_eq!((p.timeouts, p.parse_failures), (0, 0));
    let PipelineEvent::Log(log) = &group.events[0] else {
        unreachable!()
    };
    assert_eq!(log.content(b"agent").unwrap().as_ref(), agent.as_bytes());
}

#[test]
fn process_encoded_writes_the_bytes_of_process_then_encode() {
    use super::super::test_support::{assert_encoded_as_events, sampled_group};
    let samples: [&[u8]; 7] = [
        APACHE,
        br#"10.3.0.212 - bob [24/Nov/2026:10:03:00 +0000] "GET /api?id=3 HTTP/1.1" 200 21703 "-" "curl/8.5.0""#,
        b"not an access line at all",
        b"",
        b"a=1 b=2 a=3",
        b"content=inner x=y",
        b"\xff\xfe 42 \xc3",
    ];
    let configs = [
        json!({"Match": ["%{COMBINEDAPACHELOG}"]}),
        json!({"Match": ["%{COMBINEDAPACHELOG}"], "KeepSource": false}),
        json!({"Match": ["%{COMBINEDAPACHELOG}"], "KeepSource": false,
               "IgnoreParseFailure": false}),
        // Several matches in one value: a key met again keeps its first place.
        json!({"Match": ["%{WORD:k}=%{NUMBER:v}"]}),
        json!({"Match": ["%{WORD:k}=%{NUMBER:v}"], "KeepSource": false}),
        // A field named like the source.
        json!({"Match": ["%{WORD:content}=%{WORD:x}"]}),
        json!({"Match": ["%{WORD:content}=%{WORD:x}"], "KeepSource": false}),
        json!({"Match": ["%{NUMBER:n}", "%{COMBINEDAPACHELOG}"]}),
    ];
    let mut seed: u32 = 17;
    let mut random = |n: usize| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 16) as usize % n
    };
    for config in configs {
        let (mut by_events, mut by_bytes) = (processor(config.clone()), processor(config));
        for _ in 0..100 {
            let group = sampled_group(&mut random, &samples, 8);
            assert_encoded_as_events(&mut by_events, &mut by_bytes, group);
            assert_eq!(by_bytes.timeouts, by_events.timeouts);
        }
    }
    // Every content parsed (an empty source key): events, as they are.
    let every = processor(json!({"Match": ["%{NUMBER:n}"], "SourceKey": ""}));
    assert!(!every.takes_lines());
}
