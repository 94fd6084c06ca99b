#!/usr/bin/env bash
# `make run`: runs the daemon on examples/ in target/run, appending a line to the sample access
# log every second, until Ctrl-C.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
run="$top/target/run"
rm -rf "$run"
mkdir -p "$run/conf" "$run/data" "$run/logs"
for f in "$top"/examples/pipelines/*; do
    sed "s|@RUN_DIR@|$run|g" "$f" > "$run/conf/$(basename "$f")"
done
cp "$top/examples/logs/access.log" "$run/logs/access.log"
(
    i=0
    while sleep 1; do
        i=$((i + 1))
        echo "127.0.0.1 - - [$(date -u +%d/%b/%Y:%H:%M:%S) +0000] \"GET /item/$i HTTP/1.1\" 200 $((RANDOM % 5000)) \"-\" \"make-run\"" >> "$run/logs/access.log"
    done
) &
appender=$!
"$top/target/release/tailrace" --config-dir "$run/conf" --data-dir "$run/data" "$@" &
daemon=$!
# Ctrl-C, or a TERM to make: stop the daemon (it drains and saves checkpoints) and the writer.
trap 'kill $appender 2>/dev/null; kill -TERM $daemon 2>/dev/null; wait $daemon' INT TERM
trap 'kill $appender 2>/dev/null || true' EXIT
wait $daemon
