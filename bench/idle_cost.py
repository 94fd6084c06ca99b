#!/usr/bin/env python3
"""Idle-cost benchmark (`make bench`): what many idle pipelines cost the daemon.

Starts the release daemon with 10, 100 and 1,000 pipelines, each one `input_file` over a
directory of its own holding one small file, into `flusher_blackhole`; waits until every file
was read to its end (the daemon's descriptor of the file is at its size, or the file is closed
again and its checkpoint is at its size); then measures, over 10 s of idleness:

* CPU % of one core: utime + stime of /proc/PID/stat over the window, in clock ticks
  (os.sysconf("SC_CLK_TCK"), 100 on Linux/x86 and arm64);
* RSS now (VmRSS) and at its peak (VmHWM), from /proc/PID/status;
* threads (Threads: in /proc/PID/status, the smallest of the samples taken during the window,
  so that a thread living for a moment does not count);
* inotify instances: the daemon's descriptors that link to `anon_inode:inotify`.

Why: bus mode (issue 8) promises that none of these grows with the number of pipelines; before
it, each pipeline had a processor thread, a thread per flusher and an inotify instance of its
own. Stdlib only; no external timing tools.

Usage: bench/idle_cost.py [--counts 10,100,1000] [--window-s 10] [--binary PATH]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench", "idle")
BINARY = os.path.join(ROOT, "target", "release", "tailrace")
LINES_PER_FILE = 20
READ_LIMIT_S = 120


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib(value):
    return int(value.split()[0])


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) + int(rest[12])


def inotify_instances(pid):
    count = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == "anon_inode:inotify":
                count += 1
        except OSError:
            pass  # closed meanwhile
    return count


def checkpointed_offsets(data_dir):
    """path -> offset for every checkpoint the daemon saved (any JSON file under checkpoints/)."""
    offsets = {}
    cp_dir = os.path.join(data_dir, "checkpoints")
    if not os.path.isdir(cp_dir):
        return offsets

    def visit(value):
        if isinstance(value, dict):
            path, offset = value.get("path"), value.get("offset")
            if isinstance(path, str) and isinstance(offset, int):
                offsets[path] = max(offset, offsets.get(path, 0))
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    for name in os.listdir(cp_dir):
        try:
            with open(os.path.join(cp_dir, name)) as f:
                visit(json.load(f))
        except (OSError, ValueError):
            pass  # being replaced right now; read again at the next poll
    return offsets


def setup(case_dir, count):
    shutil.rmtree(case_dir, ignore_errors=True)
    conf = os.path.join(case_dir, "conf")
    os.makedirs(conf)
    os.makedirs(os.path.join(case_dir, "plugins"))  # empty: no plugin library loads
    files = {}
    for p in range(count):
        log_dir = os.path.join(case_dir, "logs", f"p{p:04d}")
        os.makedirs(log_dir)
        path = os.path.join(log_dir, "app.log")
        with open(path, "w") as f:
            f.write("".join(f"p{p:04d} line {i:04d} {'x' * 60}\n" for i in range(LINES_PER_FILE)))
        files[path] = os.path.getsize(path)
        with open(os.path.join(conf, f"p{p:04d}.yaml"), "w") as f:
            f.write(
                "inputs:\n  - Type: input_file\n"
                f"    FilePaths: [{log_dir}/*.log]\n"
                "    TailingAllMatchedFiles: true\n"
                "flushers:\n  - Type: flusher_blackhole\n"
            )
    return files


def all_read(pid, data_dir, files):
    """Whether every file is read to its end: by the open descriptor's position, else by its
    checkpoint (idle files are closed, and their checkpoint says how far they were read)."""
    done = {}
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
            if target in files:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    pos = int(next(l for l in f if l.startswith("pos:")).split()[1])
                done[target] = max(done.get(target, 0), pos)
        except (OSError, StopIteration, ValueError):
            pass
    checkpoints = checkpointed_offsets(data_dir)
    return all(max(done.get(path, 0), checkpoints.get(path, 0)) >= size for path, size in files.items())


def run_case(binary, count, window_s):
    case_dir = os.path.join(WORK, f"p{count}")
    files = setup(case_dir, count)
    data_dir = os.path.join(case_dir, "data")
    stderr_path = os.path.join(case_dir, "stderr.log")
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [binary, "--config-dir", os.path.join(case_dir, "conf"), "--data-dir", data_dir,
             "--plugin-dir", os.path.join(case_dir, "plugins"), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        started = time.monotonic()
        while not all_read(proc.pid, data_dir, files):
            if proc.poll() is not None:
                sys.exit(f"{count} pipelines: tailrace exited {proc.returncode}; see {stderr_path}")
            if time.monotonic() - started > READ_LIMIT_S:
                sys.exit(f"{count} pipelines: files not all read within {READ_LIMIT_S}s; see {stderr_path}")
            time.sleep(0.2)
        read_s = time.monotonic() - started
        # A moment for the last batches to be flushed and checkpoints written.
        time.sleep(1)
        threads = []
        ticks_before = cpu_ticks(proc.pid)
        window_start = time.monotonic()
        while time.monotonic() - window_start < window_s:
            threads.append(int(status_fields(proc.pid)["Threads"]))
            time.sleep(0.25)
        ticks_after = cpu_ticks(proc.pid)
        elapsed = time.monotonic() - window_start
        status = status_fields(proc.pid)
        cpu = (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK") / elapsed * 100
        return {
            "pipelines": count,
            "read_s": read_s,
            "cpu_pct": cpu,
            "rss_mib": kib(status["VmRSS"]) / 1024,
            "hwm_mib": kib(status["VmHWM"]) / 1024,
            "threads": min(threads),
            "threads_max": max(threads),
            "inotify": inotify_instances(proc.pid),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--binary", default=BINARY, help="the daemon (default: the release build)")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `make build` first")
    counts = [int(c) for c in args.counts.split(",")]
    results = []
    for count in counts:
        print(f"{count} idle pipelines: starting, reading, then measuring for {args.window_s:.0f}s...", flush=True)
        results.append(run_case(args.binary, count, args.window_s))
    print()
    print(f"{'pipelines':>9} {'read s':>7} {'CPU % core':>10} {'VmRSS MiB':>10} {'VmHWM MiB':>10} {'threads':>8} {'inotify':>8}")
    for r in results:
        threads = f"{r['threads']}" if r["threads"] == r["threads_max"] else f"{r['threads']}-{r['threads_max']}"
        print(f"{r['pipelines']:>9} {r['read_s']:>7.1f} {r['cpu_pct']:>10.1f} {r['rss_mib']:>10.1f} "
              f"{r['hwm_mib']:>10.1f} {threads:>8} {r['inotify']:>8}")


if __name__ == "__main__":
    main()
