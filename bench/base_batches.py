"""Drives libPluginBase.so the way iLogtail's C++ core does, for `bench/processors.py`:
`ProcessLogGroup` → `processor_regex` (in the base) → `flusher_sls` → `SendPb` back to this
process. Loaded with ctypes, with this process as the host (its callbacks count what comes
back), so the CPU measured is the base's own (the LogGroups are encoded before the clock starts).
"""

import ctypes
import json
import resource
import time

BATCH_LINES = 4096


class GoString(ctypes.Structure):
    _fields_ = [("p", ctypes.c_char_p), ("n", ctypes.c_ssize_t)]


class GoSlice(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_longlong), ("cap", ctypes.c_longlong)]


def go_string(text):
    raw = text.encode()
    return GoString(raw, len(raw))


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag, payload):
    return bytes([tag]) + varint(len(payload)) + payload


def log_group(lines, time_s):
    """An `sls_logs.LogGroup` of one log per line, each with the line as `content`."""
    head = b"\x08" + varint(time_s)
    return b"".join(
        field(0x0A, head + field(0x12, field(0x0A, b"content") + field(0x12, line)))
        for line in lines
    )


IS_VALID = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_longlong)
SEND_PB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                           ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
CTL_CMD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_int)


def run(plugin_dir, log_file, processor, timeout_s=600):
    """Feeds every line of `log_file` through the base with `processor` (an iLogtail plugin
    JSON item); returns (lines sent back, lines sent, CPU seconds of this process while the
    base worked, the first LogGroup sent back with its number of logs)."""
    with open(log_file, "rb") as f:
        lines = f.read().splitlines()
    now = int(time.time())
    batches = [log_group(lines[i:i + BATCH_LINES], now) for i in range(0, len(lines), BATCH_LINES)]
    adaptor = ctypes.CDLL(f"{plugin_dir}/libPluginAdapter.so", mode=ctypes.RTLD_GLOBAL)
    base = ctypes.CDLL(f"{plugin_dir}/libPluginBase.so")
    returned = {"lines": 0, "first": None}

    def send_pb(config, config_len, logstore, logstore_len, pb, pb_len, lines_in):
        if returned["first"] is None:
            returned["first"] = (ctypes.string_at(pb, pb_len), lines_in)
        returned["lines"] += lines_in
        return 0

    callbacks = (IS_VALID(lambda key: 0), SEND_PB(send_pb), CTL_CMD(lambda *a: -2))
    adaptor.RegisterLogtailCallBack(*callbacks)
    base.LoadConfig.argtypes = [GoString, GoString, GoString, ctypes.c_longlong, GoString]
    base.ProcessLogGroup.argtypes = [GoString, GoSlice, GoString]
    base.HoldOn.argtypes = [ctypes.c_longlong]
    if base.InitPluginBase() != 0:
        raise RuntimeError("InitPluginBase failed")
    name = "bench/2"
    config = {"global": {"FlushIntervalMs": 200, "AggregatIntervalMs": 200},
              "processors": [processor], "aggregators": [], "flushers": [{"type": "flusher_sls", "detail": {}}]}
    if base.LoadConfig(go_string("p"), go_string("l"), go_string(name), 1, go_string(json.dumps(config))) != 0:
        raise RuntimeError("LoadConfig failed")
    base.Resume()
    before = resource.getrusage(resource.RUSAGE_SELF)
    config_name, pack = go_string(name), go_string("")
    for batch in batches:
        buf = ctypes.create_string_buffer(batch, len(batch))
        pb = GoSlice(ctypes.cast(buf, ctypes.c_void_p), len(batch), len(batch))
        while base.ProcessLogGroup(config_name, pb, pack) != 0:
            time.sleep(0.01)  # the pipeline's queue is full
    deadline = time.monotonic() + timeout_s
    while returned["lines"] < len(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_SELF)
    base.HoldOn(1)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return returned["lines"], len(lines), cpu, returned["first"]
