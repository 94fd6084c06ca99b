//! Processors on the real binary: iLogtail-style configs (`input_file` → processors →
//! `flusher_file`) over sample files, run with `--once` and no plugin libraries at all (every
//! processor runs in the host), checking every field each event ends with.

mod common;

use std::fs;

use serde_json::{Map, Value};

use common::{event, Sandbox};

/// Runs `tailrace --once` on the sandbox with an empty plugin dir; returns the events written
/// to `out.jsonl`, each without the tags and time the file flusher adds.
fn run_once(sandbox: &Sandbox, processors: &str) -> Vec<Map<String, Value>> {
    common::run_once(sandbox, &common::file_pipeline(sandbox, processors))
        .into_iter()
        .map(|mut event| {
            event.retain(|k, _| !k.starts_with("__tag__:") && k != "__time__");
            event
        })
        .collect()
}

#[test]
fn nginx_lines_through_regex_and_filter_in_the_host() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.path("logs/access.log"),
        concat!(
            "127.0.0.1 - - [07/Jul/2022:10:43:30 +0800] \"POST /PutData?Category=YunOsAccountOpLog\" 0.024 18204 200 37 \"-\" \"aliyun-sdk-java\"\n",
            "127.0.0.1 - - [07/Jul/2022:10:44:30 +0800] \"Get /PutData?Category=YunOsAccountOpLog\" 0.024 18204 200 37 \"-\" \"aliyun-sdk-java\"\n",
            "a line that is not an access log\n",
        ),
    )
    .unwrap();
    let events = run_once(
        &sandbox,
        "  - Type: processor_parse_regex_native\n    SourceKey: content\n    Regex: '([\\d\\.]+) \\S+ \\S+ \\[(\\S+) \\S+\\] \"(\\w+) ([^\"]*)\" ([\\d\\.]+) (\\d+) (\\d+) (\\d+|-) \"([^\"]*)\" \"([^\"]*)\"'\n    Keys: [ip, time, method, url, request_time, request_length, status, length, ref_url, browser]\n  - Type: processor_filter_regex_native\n    FilterKey: [method, status]\n    FilterRegex: ['^(POST|PUT)$', '^200$']\n",
    );
    assert_eq!(
        events,
        vec![event(&[
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
        ])]
    );
}

#[test]
fn json_then_csv_then_extended_processors_in_the_host() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.path("logs/app.log"),
        concat!(
            "{\"level\":\"INFO\",\"msg\":\"started\",\"ctx\":{\"port\": 8080},\"secret\":\"x\"}\n",
            "2022-06-09,192.0.2.0,\"GET /a,b HTTP/1.1\",404\n",
        ),
    )
    .unwrap();
    let events = run_once(
        &sandbox,
        "  - Type: processor_parse_json_native\n    SourceKey: content\n    KeepingSourceWhenParseFail: true\n  - Type: processor_parse_delimiter_native\n    SourceKey: content\n    Separator: ','\n    Quote: '\"'\n    Keys: [time, ip, request, status]\n  - Type: processor_drop\n    DropKeys: [secret]\n  - Type: processor_rename\n    SourceKeys: [msg]\n    DestKeys: [message]\n  - Type: processor_add_fields\n    Fields: {env: prod}\n",
    );
    assert_eq!(
        events,
        vec![
            event(&[
                ("level", "INFO"),
                ("ctx", "{\"port\":8080}"),
                ("message", "started"),
                ("env", "prod"),
            ]),
            event(&[
                ("time", "2022-06-09"),
                ("ip", "192.0.2.0"),
                ("request", "GET /a,b HTTP/1.1"),
                ("status", "404"),
                ("env", "prod"),
            ]),
        ]
    );
}

/// iLogtail's native processors take boost's Perl syntax: look-ahead, look-behind and
/// backreferences in the parse, the filter and the masking regexes of a real config.
#[test]
fn perl_syntax_in_native_regexes() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.path("logs/app.log"),
        concat!(
            "INFO user='alice' took 35ms token=abc123 end\n",
            "DEBUG user='bob' took 2ms token=zzz end\n",
            "WARN user=\"carol' took 7ms token=q1 end\n",
            "ERROR user=\"dave\" took 120ms token=t0k3n end\n",
        ),
    )
    .unwrap();
    let events = run_once(
        &sandbox,
        concat!(
            "  - Type: processor_parse_regex_native\n",
            "    SourceKey: content\n",
            // A backreference closes the quote that opened the name; a look-behind and a
            // look-ahead take the number without its unit.
            "    Regex: '(\\w+) user=([''\"])(\\w+)\\2 took (?<=took )(\\d+)(?=ms)ms (.*)'\n",
            "    Keys: [level, quote, user, ms, rest]\n",
            "  - Type: processor_filter_regex_native\n",
            "    FilterKey: [level]\n",
            "    FilterRegex: ['(?!DEBUG$)[A-Z]+']\n",
            "  - Type: processor_desensitize_native\n",
            "    SourceKey: rest\n",
            "    Method: const\n",
            "    ReplacingString: '***'\n",
            "    ContentPatternBeforeReplacedString: 'token='\n",
            "    ReplacedContentPattern: '\\w+(?= end)'\n",
        ),
    );
    assert_eq!(
        events,
        vec![
            event(&[
                ("level", "INFO"),
                ("quote", "'"),
                ("user", "alice"),
                ("ms", "35"),
                ("rest", "token=*** end"),
            ]),
            event(&[
                ("level", "ERROR"),
                ("quote", "\""),
                ("user", "dave"),
                ("ms", "120"),
                ("rest", "token=*** end"),
            ]),
        ],
        "carol's quotes do not match (backreference), bob's DEBUG line is filtered out"
    );
}

/// The same native processors with an input that runs in the plugin base (`metric_mock`): the
/// whole pipeline runs there, with the same processor code, and gives the same fields.
#[test]
fn the_same_processors_run_in_the_plugin_base_when_the_input_is_there() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "mock.yaml",
        "global: {InputIntervalMs: 50, AggregatIntervalMs: 100, FlushIntervalMs: 100}\n\
         inputs:\n  - Type: metric_mock\n    Fields: {content: '10.0.0.7 \"POST /PutData\" 200'}\n\
         processors:\n\
         \x20 - Type: processor_parse_regex_native\n    Regex: '(\\S+) \"(\\w+) ([^\"]*)\" (\\d+)'\n    Keys: [ip, method, url, status]\n\
         \x20 - Type: processor_filter_regex_native\n    FilterKey: [method, status]\n    FilterRegex: ['^(POST|PUT)$', '^200$']\n\
         flushers:\n  - Type: flusher_stdout\n    OnlyStdout: true\n",
    );
    let mut daemon = common::Daemon::start(&sandbox, Some(&libs), &[]);
    let line = daemon.wait_line("a parsed metric_mock event", |l| l.get("ip").is_some());
    assert_eq!(line.get("ip"), Some("10.0.0.7"), "{}", line.text);
    assert_eq!(line.get("method"), Some("POST"));
    assert_eq!(line.get("url"), Some("/PutData"));
    assert_eq!(line.get("status"), Some("200"));
    assert_eq!(
        line.get("content"),
        None,
        "the source is not kept once parsed"
    );
    assert!(line.get("Index").is_some(), "metric_mock's own field stays");
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}
