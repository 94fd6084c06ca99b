#!/usr/bin/env python3
"""Processor benchmark (`make bench`).

Generates one log file per case (cached between runs), runs `tailrace --once` over it with a
pipeline `input_file -> the processor -> flusher_blackhole` (which still serialises every batch
to a LogGroup), and reports MB/s and events/s per CPU-second (the kernel's accounting of the
child: getrusage(RUSAGE_CHILDREN)) against the case's floor. A case below its floor is flagged
and makes the script exit 1.

Before it is timed, each case runs on a small sample into flusher_file, and every output event
must carry every parsed field: a pipeline that drops its lines (a regex that never matches)
would otherwise look fast.

Cases:
* parse_regex_native  nginx lines, 12 capture groups                 floor 150 MB/s per CPU-s
* parse_json_native   JSON lines                                      floor 150
* parse_delimiter     comma-separated lines, quoted fields            floor 300
* grok                %{COMBINEDAPACHELOG}                            floor  50
                      (skipped while `tailrace validate` rejects processor_grok)
* regex via base      processor_regex, then aggregator_default, which only the plugin base
                      has: every batch crosses to the base (ProcessLogGroup) and comes back
                      (SendPb) to flusher_blackhole. Floor: half of `regex in host`, the same
                      pipeline without the aggregator. A native input's processors always run
                      in the host (DESIGN §5: data crosses only for what the host lacks), so
                      this is the batch path through the base that a file pipeline can take.
* base ProcessLogGroup  libPluginBase.so driven as iLogtail's core drives it
                      (bench/base_batches.py: ctypes, this process as the host):
                      ProcessLogGroup -> processor_regex in the base -> flusher_sls -> SendPb,
                      batches of 4096 lines. Floor: half of `regex in host`.

Usage: bench/processors.py [--size-mib N] [--binary PATH] [--only CASE...]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/ for the sibling modules below
import base_batches  # noqa: E402
from file_collection import generate  # noqa: E402 (same cache of generated logs, same format)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
BINARY = os.path.join(ROOT, "target", "release", "tailrace")
SAMPLE_LINES = 2000

PATHS = ["/", "/api/v1/items", "/api/v1/orders/42", "/static/app.js", "/login", "/health"]
AGENTS = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "Go-http-client/1.1"]
REFERERS = ["-", "https://example.com/", "https://example.com/search?q=tailrace"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]


def combined_line(i, rng):
    """An access log line in Apache's / nginx's combined format."""
    return (
        f'10.{i % 250}.{(i >> 8) % 250}.{rng.randrange(250)} - {rng.choice(("-", "alice", "bob"))} '
        f'[24/Nov/2026:10:{i % 60:02d}:{(i >> 6) % 60:02d} +0000] '
        f'"{rng.choice(METHODS)} {rng.choice(PATHS)}?id={i} HTTP/1.1" {rng.choice((200, 200, 200, 304, 404, 500))} '
        f'{rng.randrange(100, 90000)} "{rng.choice(REFERERS)}" "{rng.choice(AGENTS)}"'
    )


def nginx_line(i, rng):
    """The combined format plus nginx's request and upstream times."""
    return f"{combined_line(i, rng)} {rng.randrange(1, 5000) / 1000:.3f} {rng.randrange(1, 5000) / 1000:.3f}\n"


def json_line(i, rng):
    return json.dumps({
        "time": f"2026-11-24T10:{i % 60:02d}:{(i >> 6) % 60:02d}.{i % 1000:03d}Z",
        "level": rng.choice(("INFO", "INFO", "WARN", "ERROR")),
        "logger": f"com.example.service.Handler{i % 16}",
        "msg": f"request {i} handled for \"user-{rng.randrange(1000)}\"",
        "latency_ms": rng.randrange(1, 900),
        "path": rng.choice(PATHS),
        "status": rng.choice((200, 200, 404, 500)),
        "trace_id": f"{rng.getrandbits(64):016x}",
    }, separators=(",", ":")) + "\n"


def delimiter_line(i, rng):
    return (
        f"2026-11-24 10:{i % 60:02d}:{(i >> 6) % 60:02d},10.0.{i % 250}.{rng.randrange(250)},"
        f"{rng.choice(METHODS)},{rng.choice(PATHS)},{rng.choice((200, 200, 404, 500))},"
        f"{rng.randrange(100, 90000)},{rng.randrange(1, 5000)},"
        f"\"{rng.choice(AGENTS)}, build {i % 7}\",user-{rng.randrange(1000)},{i}\n"
    )


def grok_line(i, rng):
    return combined_line(i, rng) + "\n"


NGINX_REGEX = (
    r'(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) ([^"]+)" (\d+) (\d+) "([^"]*)" "([^"]*)" '
    r'([\d.]+) ([\d.]+)'
)
NGINX_KEYS = ["ip", "user", "time", "method", "url", "protocol", "status", "bytes", "referer",
              "agent", "request_time", "upstream_time"]
JSON_KEYS = ["time", "level", "logger", "msg", "latency_ms", "path", "status", "trace_id"]
DELIMITER_KEYS = ["time", "ip", "method", "path", "status", "bytes", "latency", "agent", "user", "seq"]
# What %{COMBINEDAPACHELOG} names (iLogtail's grok patterns).
GROK_KEYS = ["clientip", "auth", "timestamp", "verb", "request", "response", "referrer", "agent"]


def yaml_list(items):
    return "[" + ", ".join(json.dumps(k) for k in items) + "]"


def single_quoted(text):
    return "'" + text.replace("'", "''") + "'"


PARSE_REGEX = [
    "  - Type: processor_parse_regex_native",
    "    SourceKey: content",
    f"    Regex: {single_quoted(NGINX_REGEX)}",
    f"    Keys: {yaml_list(NGINX_KEYS)}",
]
GO_REGEX = [
    "  - Type: processor_regex",
    "    SourceKey: content",
    f"    Regex: {single_quoted('^' + NGINX_REGEX + '$')}",
    f"    Keys: {yaml_list(NGINX_KEYS)}",
]

# name: (generator, processors config, aggregators config, keys every output event must
#        have, floor in MB/s per CPU-second, or the name of the case whose half is the floor)
CASES = {
    "parse_regex_native": (nginx_line, PARSE_REGEX, [], NGINX_KEYS, 150),
    "parse_json_native": (json_line, [
        "  - Type: processor_parse_json_native",
        "    SourceKey: content",
    ], [], JSON_KEYS, 150),
    "parse_delimiter_native": (delimiter_line, [
        "  - Type: processor_parse_delimiter_native",
        "    SourceKey: content",
        "    Separator: ','",
        "    Quote: '\"'",
        f"    Keys: {yaml_list(DELIMITER_KEYS)}",
    ], [], DELIMITER_KEYS, 300),
    "grok": (grok_line, [
        "  - Type: processor_grok",
        "    SourceKey: content",
        "    Match: ['%{COMBINEDAPACHELOG}']",
    ], [], GROK_KEYS, 50),
    "regex in host": (nginx_line, GO_REGEX, [], NGINX_KEYS, None),
    "regex via base": (nginx_line, GO_REGEX, [
        "aggregators:",
        "  - Type: aggregator_default",
    ], NGINX_KEYS, "regex in host"),
    # Run by run_base_case (the base alone, through its C ABI); listed for --only and order.
    "base ProcessLogGroup": (nginx_line, GO_REGEX, [], NGINX_KEYS, "regex in host"),
}


def write_config(case_dir, log_file, processors, aggregators, flusher):
    conf = os.path.join(case_dir, "conf")
    os.makedirs(conf, exist_ok=True)
    lines = [
        "inputs:",
        "  - Type: input_file",
        f"    FilePaths: [{log_file}]",
        "    TailingAllMatchedFiles: true",
        "processors:",
        *processors,
        *aggregators,
        "flushers:",
        *flusher,
        "",
    ]
    path = os.path.join(conf, "bench.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def tailrace(binary, case_dir, plugin_dir):
    return subprocess.run(
        [binary, "--once", "--config-dir", os.path.join(case_dir, "conf"), "--data-dir",
         os.path.join(case_dir, "data"), "--plugin-dir", plugin_dir, "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def validate(binary, config):
    """None when `tailrace validate` accepts the config, else its output."""
    proc = subprocess.run([binary, "validate", config], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


def check_sample(name, binary, plugin_dir, source, processors, aggregators, keys):
    """Runs the case on the first lines of `source` into flusher_file; every line must come
    out with every key. Returns an error message, or None."""
    case_dir = tempfile.mkdtemp(prefix="sample-", dir=WORK)
    try:
        sample = os.path.join(case_dir, "sample.log")
        with open(source) as src, open(sample, "w") as out:
            for _, line in zip(range(SAMPLE_LINES), src):
                out.write(line)
        out_file = os.path.join(case_dir, "out.jsonl")
        write_config(case_dir, sample, processors, aggregators,
                     ["  - Type: flusher_file", f"    FilePath: {out_file}"])
        proc = tailrace(binary, case_dir, plugin_dir)
        if proc.returncode != 0:
            return f"tailrace exited {proc.returncode}: {proc.stderr.strip()}"
        events = []
        for path in sorted(os.listdir(case_dir)):
            if path.startswith("out.jsonl"):
                with open(os.path.join(case_dir, path)) as f:
                    events += [json.loads(line) for line in f if line.strip()]
        if len(events) != SAMPLE_LINES:
            return f"{len(events)} events out of {SAMPLE_LINES} sample lines (parse failures dropped?)"
        for event in events:
            missing = [k for k in keys if k not in event]
            if missing:
                return f"an event lacks {missing}: {event}"
        return None
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def run_base_case(name, args, results):
    """The `base ProcessLogGroup` case: the base alone, through its C ABI."""
    size = args.size_mib * 1024 * 1024
    log_file = os.path.join(WORK, f"nginx_line-{args.size_mib}m.log")
    generate(log_file, size, nginx_line, seed=len("parse_regex_native"))
    plugin_dir = os.path.dirname(os.path.abspath(args.binary))
    processor = {"type": "processor_regex",
                 "detail": {"SourceKey": "content", "Regex": "^" + NGINX_REGEX + "$", "Keys": NGINX_KEYS}}
    back, sent, cpu, first = base_batches.run(plugin_dir, log_file, processor)
    if back != sent:
        sys.exit(f"{name}: {back} of {sent} lines came back through SendPb")
    pb, logs = first
    if pb.count(b"upstream_time") != logs:
        sys.exit(f"{name}: the first batch that came back is not parsed")
    mb = os.path.getsize(log_file) / 1e6
    reference = results.get("regex in host")
    return {
        "case": name,
        "MB": mb,
        "cpu_s": cpu,
        "wall_s": float("nan"),
        "MB/s per CPU-s": mb / cpu,
        "events/s per CPU-s": sent / cpu,
        "floor": reference["MB/s per CPU-s"] / 2 if reference else None,
    }


def run_case(name, args, results):
    if name == "base ProcessLogGroup":
        return run_base_case(name, args, results)
    make, processors, aggregators, keys, floor = CASES[name]
    size = args.size_mib * 1024 * 1024
    log_file = os.path.join(WORK, f"{make.__name__}-{args.size_mib}m.log")
    events = generate(log_file, size, make, seed=len(name))
    case_dir = os.path.join(WORK, "processors-" + name.replace(" ", "-"))
    shutil.rmtree(case_dir, ignore_errors=True)
    config = write_config(case_dir, log_file, processors, aggregators, ["  - Type: flusher_blackhole"])
    problem = validate(args.binary, config)
    if problem is not None:
        kind = processors[0].split("Type:")[1].strip()
        # Skipped only while the processor does not exist: an option it rejects is an error.
        if kind == "processor_grok" and "not implement" in problem:
            return {"case": name, "skipped": f"{kind} not available"}
        sys.exit(f"{name}: the config is invalid:\n{problem}")
    # Without the plugin libraries, unless the case goes through the base.
    plugin_dir = os.path.dirname(os.path.abspath(args.binary)) if aggregators else case_dir
    problem = check_sample(name, args.binary, plugin_dir, log_file, processors, aggregators, keys)
    if problem is not None:
        sys.exit(f"{name}: the sample check failed: {problem}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = tailrace(args.binary, case_dir, plugin_dir)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{name}: tailrace exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mb = os.path.getsize(log_file) / 1e6
    if isinstance(floor, str):
        reference = results.get(floor)
        floor = reference["MB/s per CPU-s"] / 2 if reference and "skipped" not in reference else None
    return {
        "case": name,
        "MB": mb,
        "cpu_s": cpu,
        "wall_s": wall,
        "MB/s per CPU-s": mb / cpu,
        "events/s per CPU-s": events / cpu,
        "floor": floor,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--binary", default=BINARY, help="the tailrace to measure")
    parser.add_argument("--only", nargs="*", default=None, choices=list(CASES),
                        help="run only these cases")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `make build` first")
    os.makedirs(WORK, exist_ok=True)
    wanted = args.only or list(CASES)
    # A case whose floor is another case's figure needs that case too.
    for name in list(wanted):
        floor = CASES[name][4]
        if isinstance(floor, str) and floor not in wanted:
            wanted.insert(wanted.index(name), floor)
    print(f"generating {args.size_mib} MiB per kind of log in {WORK} (cached between runs)...", flush=True)
    results = {}
    for name in wanted:
        results[name] = run_case(name, args, results)
    print()
    print(f"{'case':<24} {'MB':>6} {'CPU s':>7} {'wall s':>7} {'MB/s/CPU-s':>11} {'events/s/CPU-s':>15} {'floor':>6}")
    below = []
    for r in results.values():
        if "skipped" in r:
            print(f"{r['case']:<24} skipped: {r['skipped']}")
            continue
        floor = r["floor"]
        flag = ""
        if floor is not None and r["MB/s per CPU-s"] < floor:
            flag = "  BELOW FLOOR"
            below.append(r["case"])
        floor_text = f"{floor:>6.0f}" if floor is not None else f"{'-':>6}"
        wall = f"{r['wall_s']:>7.2f}" if r["wall_s"] == r["wall_s"] else f"{'-':>7}"
        print(f"{r['case']:<24} {r['MB']:>6.0f} {r['cpu_s']:>7.2f} {wall} "
              f"{r['MB/s per CPU-s']:>11.0f} {r['events/s per CPU-s']:>15.0f} {floor_text}{flag}")
    if below:
        sys.exit(f"below their floor: {', '.join(below)}")


if __name__ == "__main__":
    main()
