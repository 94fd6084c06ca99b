#!/usr/bin/env python3
"""File-collection benchmark (`make bench`).

Generates access logs (single-line) and Java-style stack traces (multiline), then runs
`tailrace --once` over them into `flusher_blackhole` (which still serialises every batch to a
LogGroup), and the single-line log also into `flusher_file` (the JSON-lines writer, into a
temporary directory deleted afterwards), and reports, per case: MB/s per CPU-second, MB/s wall,
events/s per CPU-second and peak RSS. CPU time and peak RSS are the kernel's accounting of the
child process (getrusage(RUSAGE_CHILDREN)); wall time is measured around it.

Self-monitoring: the single-line case runs three more times with `--metrics-addr`, /metrics
scraped every 200 ms, alternating with runs without it; the median CPU ratio must stay within
5 % (exit 1 otherwise).

Usage: bench/file_collection.py [--size-mib N] [--binary PATH] [--only CASE...]
"""

import argparse
import socket
import threading
import urllib.request
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
BINARY = os.path.join(ROOT, "target", "release", "tailrace")

PATHS = ["/", "/api/v1/items", "/api/v1/orders/42", "/static/app.js", "/login", "/health"]
AGENTS = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "Go-http-client/1.1"]


def access_line(i, rng):
    return (
        f'10.{i % 250}.{(i >> 8) % 250}.{rng.randrange(250)} - - [24/Nov/2026:10:{i % 60:02d}:{(i >> 6) % 60:02d} +0000] '
        f'"GET {rng.choice(PATHS)}?id={i} HTTP/1.1" {rng.choice((200, 200, 200, 304, 404, 500))} '
        f'{rng.randrange(100, 90000)} "-" "{rng.choice(AGENTS)}" seq={i}\n'
    )


def java_event(i, rng):
    head = f"2026-11-24 10:{i % 60:02d}:{(i >> 6) % 60:02d}.{i % 1000:03d} ERROR [worker-{i % 16}] c.e.Service - request {i} failed\n"
    if rng.random() < 0.7:
        return head
    frames = "".join(
        f"\tat com.example.pkg{j}.Handler{j}.handle(Handler{j}.java:{10 + j})\n" for j in range(rng.randrange(4, 16))
    )
    return head + "java.lang.IllegalStateException: boom " + str(i) + "\n" + frames + "Caused by: java.io.IOException: closed\n\tat com.example.io.Stream.read(Stream.java:88)\n"


def generate(path, size, make, seed):
    if os.path.exists(path) and os.path.getsize(path) >= size:
        return count_events(path)
    rng = random.Random(seed)
    events = 0
    with open(path + ".tmp", "w") as out:
        written = 0
        chunk = []
        while written < size:
            s = make(events, rng)
            chunk.append(s)
            written += len(s)
            events += 1
            if len(chunk) >= 10000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))
    os.rename(path + ".tmp", path)
    with open(path + ".events", "w") as f:
        f.write(str(events))
    return events


def count_events(path):
    with open(path + ".events") as f:
        return int(f.read())


def run_case(name, log_file, events, multiline, binary, flusher="flusher_blackhole", metrics=False):
    case_dir = os.path.join(WORK, name.replace(" ", "-"))
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(os.path.join(case_dir, "conf"))
    config = [
        "inputs:",
        "  - Type: input_file",
        f"    FilePaths: [{log_file}]",
        "    TailingAllMatchedFiles: true",
    ]
    if multiline:
        config += [
            "    Multiline:",
            "      Mode: custom",
            "      StartPattern: '\\d{4}-\\d{2}-\\d{2} .*'",
        ]
    out_dir = None
    config += ["flushers:", f"  - Type: {flusher}"]
    if flusher == "flusher_file":
        # Next to the input (same disk), never in the source tree; removed when done.
        out_dir = tempfile.mkdtemp(prefix="tailrace-bench-out-", dir=WORK)
        config += [f"    FilePath: {os.path.join(out_dir, 'out.jsonl')}"]
    config += [""]
    with open(os.path.join(case_dir, "conf", "bench.yaml"), "w") as f:
        f.write("\n".join(config))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    scraper = Scraper() if metrics else None
    try:
        proc = run_tailrace(binary, case_dir, scraper.args() if scraper else [])
    finally:
        if scraper is not None:
            scraper.stop()
        if out_dir is not None:
            out_size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
            shutil.rmtree(out_dir, ignore_errors=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{name}: tailrace exited {proc.returncode}:\n{proc.stderr}")
    if scraper is not None and scraper.scrapes == 0:
        sys.exit(f"{name}: /metrics was never scraped")
    if out_dir is not None and out_size == 0:
        sys.exit(f"{name}: flusher_file wrote nothing:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mb = os.path.getsize(log_file) / 1e6
    return {
        "case": name,
        "MB": mb,
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        "MB/s per CPU-s": mb / cpu,
        "MB/s wall": mb / wall,
        "events/s per CPU-s": events / cpu,
        "peak RSS MiB": after.ru_maxrss / 1024,
    }


class Scraper:
    """Scrapes the daemon's /metrics every 200 ms while it runs (five times more often than a
    Prometheus at its tightest usual interval), so that the cost of self-monitoring includes
    serving it."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.addr = f"127.0.0.1:{s.getsockname()[1]}"
        self.scrapes = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def args(self):
        return ["--metrics-addr", self.addr]

    def run(self):
        while not self.done.wait(0.2):
            try:
                with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=1) as r:
                    if r.status == 200 and r.read():
                        self.scrapes += 1
            except OSError:
                pass  # not listening yet, or already gone

    def stop(self):
        self.done.set()
        self.thread.join()


def run_tailrace(binary, case_dir, extra=()):
    return subprocess.run(
        [binary, "--once", "--config-dir", os.path.join(case_dir, "conf"), "--data-dir",
         os.path.join(case_dir, "data"), "--plugin-dir", case_dir, "--log-level", "warn", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--binary", default=BINARY, help="the tailrace to measure")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only these cases (e.g. 'single-line' 'single-line into flusher_file')")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `make build` first")
    os.makedirs(WORK, exist_ok=True)
    size = args.size_mib * 1024 * 1024
    single = os.path.join(WORK, f"access-{args.size_mib}m.log")
    multi = os.path.join(WORK, f"java-{args.size_mib}m.log")
    print(f"generating {args.size_mib} MiB of each kind of log in {WORK} (cached between runs)...", flush=True)
    wanted = lambda case: args.only is None or case in args.only
    single_events = generate(single, size, access_line, 1)
    multi_events = generate(multi, size, java_event, 2) if wanted("multiline") else 0
    cases = [
        ("single-line", lambda: run_case("single-line", single, single_events, False, args.binary)),
        ("single-line into flusher_file", lambda: run_case(
            "single-line into flusher_file", single, single_events, False, args.binary, "flusher_file")),
        ("multiline", lambda: run_case("multiline", multi, multi_events, True, args.binary)),
    ]
    results = [run() for name, run in cases if wanted(name)]
    overhead = None
    if wanted("self-monitoring"):
        # The same single-line case without and with --metrics-addr (scraped), in alternation,
        # three pairs; the median of the CPU ratios.
        ratios = []
        for _ in range(3):
            plain = run_case("single-line", single, single_events, False, args.binary)
            watched = run_case("single-line, /metrics scraped", single, single_events, False,
                               args.binary, metrics=True)
            ratios.append(watched["cpu_s"] / plain["cpu_s"])
            results += [plain, watched]
        overhead = sorted(ratios)[1]
    print()
    print(f"{'case':<30} {'MB':>8} {'CPU s':>7} {'wall s':>7} {'MB/s/CPU-s':>11} {'MB/s wall':>10} {'events/s/CPU-s':>15} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r['case']:<30} {r['MB']:>8.0f} {r['cpu_s']:>7.2f} {r['wall_s']:>7.2f} {r['MB/s per CPU-s']:>11.0f} "
              f"{r['MB/s wall']:>10.0f} {r['events/s per CPU-s']:>15.0f} {r['peak RSS MiB']:>13.1f}")
    if overhead is not None:
        verdict = "ok" if overhead <= 1.05 else "ABOVE LIMIT"
        print(f"\nself-monitoring: CPU with --metrics-addr (scraped every 200 ms) / without = "
              f"{overhead:.3f} (median of 3 pairs; limit 1.05) {verdict}")
        if overhead > 1.05:
            sys.exit(1)


if __name__ == "__main__":
    main()
