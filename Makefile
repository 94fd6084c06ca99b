# Tailrace: `make` builds everything, `make test` runs every test, `make run` runs the daemon
# on examples/. See README.md.

CARGO       ?= cargo
RELEASE     := target/release
FAULTS_DIR  := target/faults

.PHONY: all build faults fault-binaries test lint check-headers run bench clean install

all: build

## Build both libraries and the daemon (release): target/release/libPluginAdapter.so,
## target/release/libPluginBase.so, target/release/tailrace. Also regenerates include/*.h.
build:
	$(CARGO) build --release --workspace

## A plugin base and a daemon with the test-only faults (a panicking plugin, a hanging HoldOn,
## a panicking flusher), kept apart in target/faults/release so that they can never be mistaken
## for the real ones. Built in target/release itself, so that the dependencies compiled there
## are reused (a target dir of its own recompiled all of them: 5 minutes of a fresh CI run),
## then copied out, and the real build put back. Without the `kafka` feature: no test of the
## faults needs flusher_kafka_v2, and librdkafka is the longest part of a build.
faults:
	$(MAKE) fault-binaries
	$(MAKE) build

# The fault binaries alone: target/release holds them until the next `build`.
fault-binaries:
	$(CARGO) build --release -p tailrace-adaptor -p tailrace-plugin-base -p tailrace-host \
		--no-default-features \
		--features tailrace-plugin-base/test-faults,tailrace-host/test-faults
	mkdir -p $(FAULTS_DIR)/release
	cp -f $(RELEASE)/libPluginAdapter.so $(RELEASE)/libPluginBase.so $(RELEASE)/tailrace \
		$(FAULTS_DIR)/release/

## Every test: formatting, lints, unit and integration tests (C and C++ programs included),
## and the check that the committed headers are what the sources generate. The fault binaries
## are built first, then the real ones over them (in this order even under `make -j`).
test:
	$(MAKE) fault-binaries
	$(MAKE) build
	$(MAKE) lint
	$(CARGO) test --release --workspace
	$(MAKE) check-headers

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## The build regenerates include/*.h; if that changed them, the committed ones were stale.
check-headers:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git diff --exit-code -- include/ || { \
			echo "include/ headers are stale: commit the regenerated ones"; exit 1; }; \
	fi

## Runs the daemon on examples/ (in target/run), appending to a sample log; Ctrl-C stops it.
run: build
	examples/run.sh

## File collection: 1 GiB of single-line and of multiline logs through `tailrace --once` into
## flusher_blackhole; prints MB/s per CPU-second, MB/s wall, events/s per CPU-second, peak RSS.
## Then the processors (regex, JSON, delimiter, grok, a batch through the plugin base), each
## against its floor in MB/s per CPU-second (exit 1 when one is below), and the idle cost.
## Last, syslog → Kafka messages/s (Tansu from target/tools, as .ci/run installs it).
bench: build
	python3 bench/file_collection.py && python3 bench/processors.py && python3 bench/idle_cost.py \
		&& python3 bench/syslog_kafka.py

install: build
	install -d $(DESTDIR)/usr/local/lib $(DESTDIR)/usr/local/include $(DESTDIR)/usr/local/bin
	install -m 0755 $(RELEASE)/libPluginAdapter.so $(RELEASE)/libPluginBase.so $(DESTDIR)/usr/local/lib/
	ln -sf libPluginAdapter.so $(DESTDIR)/usr/local/lib/libGoPluginAdapter.so
	ln -sf libPluginBase.so $(DESTDIR)/usr/local/lib/libGoPluginBase.so
	install -m 0644 include/LogtailPluginAdapter.h include/LogtailPluginBase.h $(DESTDIR)/usr/local/include/
	install -m 0755 $(RELEASE)/tailrace $(DESTDIR)/usr/local/bin/

clean:
	$(CARGO) clean
