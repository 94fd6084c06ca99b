#!/usr/bin/env python3
"""Syslog → Kafka benchmark (`make bench`).

Starts Tansu (the Kafka-compatible broker `.ci/run` installs to target/tools/tansu/bin/tansu,
or $TANSU) on a free port with a 3-partition topic, and a `tailrace` whose one pipeline is
`service_syslog` (TCP) → `flusher_kafka_v2` (hash by host, lz4, RequiredAcks -1). It then
sends N RFC 5424 messages, octet-counted, over several TCP connections as fast as they are
taken, and waits until the flusher has delivered every one of them (the base's own count,
`tailrace_base_plugin_out_events_total` of flusher_kafka_v2 on the daemon's /metrics, which
moves only on the broker's acknowledgement). Reports messages/s wall and per CPU-second of the
daemon (its utime + stime from /proc), and the daemon's peak RSS.

Usage: bench/syslog_kafka.py [--messages N] [--connections C] [--binary PATH]
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "tailrace")
TANSU = os.environ.get("TANSU", os.path.join(ROOT, "target", "tools", "tansu", "bin", "tansu"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, deadline=20):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within {deadline} s")


def delivered(metrics_addr):
    try:
        with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith("tailrace_base_plugin_out_events_total") and 'plugin_type="flusher_kafka_v2"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+)", f.read())
    return int(m.group(1)) if m else 0


def sender(port, first, count, errors):
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            batch = []
            for i in range(first, first + count):
                msg = (f"<165>1 2026-11-29T10:00:00.000Z host{i % 8} app {i % 1000} ID47 - "
                       f"message number {i} from the syslog to kafka bench").encode()
                batch.append(b"%d %s" % (len(msg), msg))
                if len(batch) == 512:
                    s.sendall(b"".join(batch))
                    batch.clear()
            if batch:
                s.sendall(b"".join(batch))
    except OSError as e:
        errors.append(str(e))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--binary", default=BINARY)
    args = parser.parse_args()
    if not os.access(TANSU, os.X_OK):
        sys.exit(f"{TANSU}: no Tansu broker (run .ci/run, or set TANSU)")
    work = tempfile.mkdtemp(prefix="tailrace-bench-syslog-")
    procs = []
    try:
        kport, sport, mport = free_port(), free_port(), free_port()
        url = f"tcp://127.0.0.1:{kport}"
        procs.append(subprocess.Popen(
            [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "tansu.err"), "w")))
        wait_port(kport, "tansu")
        subprocess.run([TANSU, "topic", "create", "--broker", url, "--partitions", "3", "bench"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = os.path.join(work, "conf")
        os.makedirs(conf)
        with open(os.path.join(conf, "syslog.yaml"), "w") as f:
            f.write(f"""inputs:
  - Type: service_syslog
    Address: tcp://127.0.0.1:{sport}
    ParseProtocol: rfc5424
flushers:
  - Type: flusher_kafka_v2
    Brokers: ['127.0.0.1:{kport}']
    Topic: bench
    PartitionerType: hash
    HashKeys: [content._hostname_]
    Compression: lz4
    RequiredAcks: -1
""")
        daemon = subprocess.Popen(
            [args.binary, "--config-dir", conf, "--data-dir", os.path.join(work, "data"),
             "--metrics-addr", f"127.0.0.1:{mport}", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "tailrace.err"), "w"))
        procs.append(daemon)
        wait_port(sport, "service_syslog")
        cpu0 = cpu_seconds(daemon.pid)
        start = time.monotonic()
        per = args.messages // args.connections
        errors = []
        threads = [threading.Thread(target=sender, args=(sport, c * per, per, errors))
                   for c in range(args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            sys.exit(f"sending failed: {errors[0]}")
        total = per * args.connections
        sent_at = time.monotonic() - start
        deadline = time.monotonic() + 300
        got = 0
        while got < total and time.monotonic() < deadline:
            time.sleep(0.2)
            got = delivered(f"127.0.0.1:{mport}")
        wall = time.monotonic() - start
        cpu = cpu_seconds(daemon.pid) - cpu0
        if got < total:
            with open(os.path.join(work, "tailrace.err")) as f:
                tail = f.read()[-2000:]
            sys.exit(f"only {got} of {total} messages delivered to Kafka within 300 s\n{tail}")
        print(f"\nsyslog → Kafka: {total} messages over {args.connections} TCP connections "
              f"(sent in {sent_at:.1f} s)")
        print(f"{'messages/s wall':>22} {'messages/s per CPU-s':>22} {'daemon CPU s':>13} {'peak RSS MiB':>13}")
        print(f"{total / wall:>22.0f} {total / cpu:>22.0f} {cpu:>13.2f} {rss_kib(daemon.pid) / 1024:>13.1f}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
