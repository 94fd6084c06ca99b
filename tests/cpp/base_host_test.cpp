// base_host_test.cpp — drives libPluginAdapter.so and libPluginBase.so the way
// iLogtail's C++ core does: dlopen + dlsym, callbacks registered with the
// adaptor, the base's hold-on cycle, data fed in with Process* and received
// back through SendPb (DESIGN.md §2 and §3).
//
// Usage: base_host_test <dir with libPluginAdapter.so and libPluginBase.so> <scenario>
//        [<dir shared with the next run>]
// Scenarios: mock, feed, bad, panic, holdon-exit-backpressure, restart-1 then restart-2 (a
// restart: the second run gets the first one's dir).
//
// Prints "PASS <step>" / "FAIL <file:line>: <expression>" lines; exits 0 when
// every check passed, 1 otherwise, 2 on bad usage.
//
// Build: c++ -std=c++17 -Wall -Werror -I include tests/cpp/base_host_test.cpp -ldl -lpthread

#include "LogtailPluginAdapter.h"
#include "LogtailPluginBase.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <set>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Checks and output
// ---------------------------------------------------------------------------

int g_failures = 0;
std::string g_tmpdir;        // the base's conf/log/data dirs
bool g_keep_tmpdir = false;  // given on the command line: shared by the next run

void remove_tmpdir() {
    std::error_code ignored;
    if (!g_tmpdir.empty() && !g_keep_tmpdir) std::filesystem::remove_all(g_tmpdir, ignored);
}

// Ends an aborted scenario without running static destructors or atexit
// handlers: the base's threads may still be running and calling our callbacks.
[[noreturn]] void finish(int code) {
    remove_tmpdir();
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(code);
}

void report_failure(const char* file, int line, const std::string& what) {
    std::printf("FAIL %s:%d: %s\n", file, line, what.c_str());
    std::fflush(stdout);
    g_failures++;
}

#define CHECK(expr)                                                      \
    do {                                                                 \
        if (!(expr)) report_failure(__FILE__, __LINE__, "CHECK(" #expr ")"); \
    } while (0)

// CHECK(actual == expected) for integers, printing both values.
#define CHECK_EQ(actual, expected)                                                        \
    do {                                                                                  \
        long long check_a_ = static_cast<long long>(actual);                              \
        long long check_e_ = static_cast<long long>(expected);                            \
        if (check_a_ != check_e_)                                                         \
            report_failure(__FILE__, __LINE__,                                            \
                           "CHECK_EQ(" #actual ", " #expected "): got " +                 \
                               std::to_string(check_a_) + ", want " + std::to_string(check_e_)); \
    } while (0)

// A failed REQUIRE ends the scenario: what follows depends on it.
#define REQUIRE(expr)                                                          \
    do {                                                                       \
        if (!(expr)) {                                                         \
            report_failure(__FILE__, __LINE__, "REQUIRE(" #expr ")");          \
            std::printf("FAIL scenario aborted\n");                            \
            finish(1);                                                         \
        }                                                                      \
    } while (0)

// Prints "PASS <name>" if no check failed since the matching step() call.
class Step {
  public:
    explicit Step(std::string name) : name_(std::move(name)), failures_at_start_(g_failures) {
        std::printf("-- %s\n", name_.c_str());
        std::fflush(stdout);
    }
    ~Step() {
        std::printf("%s %s\n", g_failures == failures_at_start_ ? "PASS" : "FAIL", name_.c_str());
        std::fflush(stdout);
    }

  private:
    std::string name_;
    int failures_at_start_;
};

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---------------------------------------------------------------------------
// sls_logs protobuf: a minimal encoder and decoder
// ---------------------------------------------------------------------------

struct Content {
    std::string key;
    std::string value;
};

struct Log {
    uint32_t time = 0;
    std::vector<Content> contents;
    bool has_time_ns = false;
    uint32_t time_ns = 0;

    const std::string* get(const std::string& key) const {
        for (const auto& c : contents)
            if (c.key == key) return &c.value;
        return nullptr;
    }
    bool has(const std::string& key, const std::string& value) const {
        const std::string* v = get(key);
        return v != nullptr && *v == value;
    }
};

struct LogTag {
    std::string key;
    std::string value;
};

struct LogGroup {
    std::vector<Log> logs;
    std::string category, topic, source, machine_uuid;
    std::vector<LogTag> tags;

    const std::string* tag(const std::string& key) const {
        for (const auto& t : tags)
            if (t.key == key) return &t.value;
        return nullptr;
    }
};

namespace pb {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, WireType type) {
    put_varint(out, (static_cast<uint64_t>(field) << 3) | type);
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
    put_key(out, field, kLengthDelimited);
    put_varint(out, bytes.size());
    out += bytes;
}

void put_fixed32(std::string& out, uint32_t field, uint32_t v) {
    put_key(out, field, kFixed32);
    for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string encode_key_value(const std::string& key, const std::string& value) {
    std::string out;
    put_bytes(out, 1, key);
    put_bytes(out, 2, value);
    return out;
}

std::string encode_log(const Log& log) {
    std::string out;
    put_key(out, 1, kVarint);
    put_varint(out, log.time);
    for (const auto& c : log.contents) put_bytes(out, 2, encode_key_value(c.key, c.value));
    if (log.has_time_ns) put_fixed32(out, 4, log.time_ns);
    return out;
}

std::string encode_log_group(const LogGroup& group) {
    std::string out;
    for (const auto& log : group.logs) put_bytes(out, 1, encode_log(log));
    if (!group.category.empty()) put_bytes(out, 2, group.category);
    if (!group.topic.empty()) put_bytes(out, 3, group.topic);
    if (!group.source.empty()) put_bytes(out, 4, group.source);
    if (!group.machine_uuid.empty()) put_bytes(out, 5, group.machine_uuid);
    for (const auto& t : group.tags) put_bytes(out, 6, encode_key_value(t.key, t.value));
    return out;
}

class Reader {
  public:
    Reader(const char* data, size_t size)
        : p_(reinterpret_cast<const uint8_t*>(data)), end_(p_ + size) {}
    explicit Reader(const std::string& s) : Reader(s.data(), s.size()) {}

    bool done() const { return p_ == end_; }

    bool varint(uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p_ == end_) return false;
            uint8_t b = *p_++;
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return true;
        }
        return false;
    }
    bool key(uint32_t& field, uint32_t& type) {
        uint64_t k;
        if (!varint(k)) return false;
        field = static_cast<uint32_t>(k >> 3);
        type = static_cast<uint32_t>(k & 7);
        return field != 0;
    }
    bool bytes(std::string& s) {
        uint64_t n;
        if (!varint(n) || n > static_cast<uint64_t>(end_ - p_)) return false;
        s.assign(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return true;
    }
    bool fixed32(uint32_t& v) {
        if (end_ - p_ < 4) return false;
        v = static_cast<uint32_t>(p_[0]) | static_cast<uint32_t>(p_[1]) << 8 |
            static_cast<uint32_t>(p_[2]) << 16 | static_cast<uint32_t>(p_[3]) << 24;
        p_ += 4;
        return true;
    }
    bool skip(uint32_t type) {
        uint64_t v;
        std::string s;
        switch (type) {
            case kVarint: return varint(v);
            case kFixed64: return advance(8);
            case kLengthDelimited: return bytes(s);
            case kFixed32: return advance(4);
            default: return false;
        }
    }

  private:
    bool advance(size_t n) {
        if (static_cast<size_t>(end_ - p_) < n) return false;
        p_ += n;
        return true;
    }
    const uint8_t* p_;
    const uint8_t* end_;
};

// Content and LogTag: both fields are `required`, so both must be present.
bool decode_key_value(const std::string& buf, std::string& key, std::string& value,
                      std::string& error) {
    Reader r(buf);
    bool has_key = false, has_value = false;
    while (!r.done()) {
        uint32_t field, type;
        if (!r.key(field, type)) return error = "bad key in Content/LogTag", false;
        if (field == 1 && type == kLengthDelimited) {
            if (!r.bytes(key)) return error = "bad Key", false;
            has_key = true;
        } else if (field == 2 && type == kLengthDelimited) {
            if (!r.bytes(value)) return error = "bad Value", false;
            has_value = true;
        } else if (!r.skip(type)) {
            return error = "bad field in Content/LogTag", false;
        }
    }
    if (!has_key || !has_value) return error = "required Key or Value missing", false;
    return true;
}

bool decode_log(const std::string& buf, Log& log, std::string& error) {
    Reader r(buf);
    bool has_time = false;
    while (!r.done()) {
        uint32_t field, type;
        if (!r.key(field, type)) return error = "bad key in Log", false;
        if (field == 1 && type == kVarint) {
            uint64_t t;
            if (!r.varint(t)) return error = "bad Time", false;
            log.time = static_cast<uint32_t>(t);
            has_time = true;
        } else if (field == 2 && type == kLengthDelimited) {
            std::string sub;
            Content c;
            if (!r.bytes(sub) || !decode_key_value(sub, c.key, c.value, error))
                return error = "bad Content: " + error, false;
            log.contents.push_back(std::move(c));
        } else if (field == 4 && type == kFixed32) {
            if (!r.fixed32(log.time_ns)) return error = "bad Time_ns", false;
            log.has_time_ns = true;
        } else if (!r.skip(type)) {
            return error = "bad field in Log", false;
        }
    }
    if (!has_time) return error = "required Time missing in Log", false;
    return true;
}

bool decode_log_group(const std::string& buf, LogGroup& group, std::string& error) {
    Reader r(buf);
    while (!r.done()) {
        uint32_t field, type;
        if (!r.key(field, type)) return error = "bad key in LogGroup", false;
        std::string sub;
        if (type == kLengthDelimited && field >= 1 && field <= 6) {
            if (!r.bytes(sub)) return error = "truncated LogGroup field", false;
            switch (field) {
                case 1: {
                    Log log;
                    if (!decode_log(sub, log, error)) return false;
                    group.logs.push_back(std::move(log));
                    break;
                }
                case 2: group.category = sub; break;
                case 3: group.topic = sub; break;
                case 4: group.source = sub; break;
                case 5: group.machine_uuid = sub; break;
                case 6: {
                    LogTag t;
                    if (!decode_key_value(sub, t.key, t.value, error))
                        return error = "bad LogTag: " + error, false;
                    group.tags.push_back(std::move(t));
                    break;
                }
            }
        } else if (!r.skip(type)) {
            return error = "bad field in LogGroup", false;
        }
    }
    return true;
}

}  // namespace pb

// ---------------------------------------------------------------------------
// The host side: callbacks registered with the adaptor
// ---------------------------------------------------------------------------

struct Received {
    std::string config;
    std::string logstore;
    std::string shard_hash;
    bool v2 = false;
    LogGroup group;
    Clock::time_point at;
};

struct HostState {
    std::mutex mu;
    std::vector<Received> received;         // in arrival order
    std::vector<std::string> errors;        // malformed callback calls
    std::map<long long, int> is_valid_keys; // logstoreKey -> calls
    std::atomic<bool> full{false};          // backpressure: refuse everything
    std::atomic<int> refused{0};            // SendPb calls refused while full
    std::atomic<int> refused_checks{0};     // IsValidToSend calls answered -1
};

// Deliberately leaked: the base's threads may call back until the process ends.
HostState& host() {
    static HostState* state = new HostState;
    return *state;
}

bool valid_span(const char* p, int n) { return n >= 0 && (p != nullptr || n == 0); }

std::string span(const char* p, int n) { return n > 0 ? std::string(p, n) : std::string(); }

int store_send(bool v2, const char* config, int config_size, const char* logstore,
               int logstore_size, const char* pb_buffer, int pb_size, int lines,
               const char* shard_hash, int shard_hash_size) {
    HostState& h = host();
    if (h.full.load()) {
        h.refused++;
        return -1;
    }
    Received r;
    r.v2 = v2;
    r.at = Clock::now();
    std::string error;
    if (!valid_span(config, config_size) || !valid_span(logstore, logstore_size) ||
        !valid_span(pb_buffer, pb_size) || !valid_span(shard_hash, shard_hash_size)) {
        error = "SendPb with a null pointer or negative size";
    } else {
        r.config = span(config, config_size);
        r.logstore = span(logstore, logstore_size);
        r.shard_hash = span(shard_hash, shard_hash_size);
        std::string buffer = span(pb_buffer, pb_size);  // the base may reuse it
        if (!pb::decode_log_group(buffer, r.group, error)) {
            error = "undecodable LogGroup (" + error + ")";
        } else if (static_cast<size_t>(lines) != r.group.logs.size()) {
            error = "lines=" + std::to_string(lines) + " but the LogGroup has " +
                    std::to_string(r.group.logs.size()) + " logs";
        }
    }
    std::lock_guard<std::mutex> lock(h.mu);
    if (!error.empty()) {
        h.errors.push_back("config '" + r.config + "': " + error);
        return -1;
    }
    h.received.push_back(std::move(r));
    return 0;
}

int host_is_valid_to_send(long long logstore_key) {
    HostState& h = host();
    {
        std::lock_guard<std::mutex> lock(h.mu);
        h.is_valid_keys[logstore_key]++;
    }
    if (!h.full.load()) return 0;
    h.refused_checks++;
    return -1;
}

int host_send_pb(const char* config, int config_size, const char* logstore, int logstore_size,
                 char* pb_buffer, int pb_size, int lines) {
    return store_send(false, config, config_size, logstore, logstore_size, pb_buffer, pb_size,
                      lines, nullptr, 0);
}

int host_send_pb_v2(const char* config, int config_size, const char* logstore,
                    int logstore_size, char* pb_buffer, int pb_size, int lines,
                    const char* shard_hash, int shard_hash_size) {
    return store_send(true, config, config_size, logstore, logstore_size, pb_buffer, pb_size,
                      lines, shard_hash, shard_hash_size);
}

int host_ctl_cmd(const char*, int, int, const char*, int) { return 0; }

std::vector<Received> snapshot() {
    std::lock_guard<std::mutex> lock(host().mu);
    return host().received;
}

// Polls `pred(received)` under the lock every 20 ms until true or timeout.
bool wait_for(const std::function<bool(const std::vector<Received>&)>& pred, double seconds) {
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(seconds));
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(host().mu);
            if (pred(host().received)) return true;
        }
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Every callback call so far was well-formed (sizes, protobuf, lines).
void check_no_callback_errors() {
    std::lock_guard<std::mutex> lock(host().mu);
    for (const auto& e : host().errors) report_failure(__FILE__, __LINE__, "callback: " + e);
    host().errors.clear();
}

// One received log with the group it came in.
struct LogRef {
    const Received* from;
    const Log* log;
};

std::vector<LogRef> logs_of(const std::vector<Received>& received, const std::string& config) {
    std::vector<LogRef> out;
    for (const auto& r : received)
        if (r.config == config)
            for (const auto& log : r.group.logs) out.push_back({&r, &log});
    return out;
}

// A tag arrives as a LogTag, or (iLogtail 1.x style) as a `__tag__:KEY` content.
bool has_tag(const LogRef& ref, const std::string& key, const std::string& value) {
    const std::string* t = ref.from->group.tag(key);
    if (t != nullptr && *t == value) return true;
    return ref.log->has("__tag__:" + key, value);
}

bool has_topic(const LogRef& ref, const std::string& topic) {
    if (ref.from->group.topic == topic) return true;
    const std::string* t = ref.from->group.tag("__topic__");
    if (t != nullptr && *t == topic) return true;
    return ref.log->has("__topic__", topic);
}

bool parse_index(const Log& log, long long& index) {
    const std::string* v = log.get("Index");
    if (v == nullptr || v->empty()) return false;
    char* end = nullptr;
    index = std::strtoll(v->c_str(), &end, 10);
    return end != nullptr && *end == '\0';
}

// Walks a GetGoMetrics result (iLogtail's PluginMetrics layout), copies it into `out` if
// given, and frees every piece, as iLogtail's core does. Returns the number of metrics, or -1
// for NULL.
static int free_metrics(PluginMetrics* m,
                        std::vector<std::map<std::string, std::string>>* out = nullptr) {
    if (m == nullptr) return -1;
    int n = m->count;
    for (int i = 0; i < m->count; ++i) {
        PluginMetric* pm = m->metrics[i];
        if (pm == nullptr) continue;
        std::map<std::string, std::string> row;
        for (int j = 0; j < pm->count; ++j) {
            KeyValue* kv = pm->keyValues[j];
            if (kv == nullptr) continue;
            if (kv->key && kv->value) row[kv->key] = kv->value;
            free(kv->key);
            free(kv->value);
            free(kv);
        }
        if (out) out->push_back(row);
        free(pm->keyValues);
        free(pm);
    }
    free(m->metrics);
    free(m);
    return n;
}

// ---------------------------------------------------------------------------
// Loading the two libraries like iLogtail's core
// ---------------------------------------------------------------------------

// Every generation-1 and generation-2 export, typed by the header's declaration.
struct BaseApi {
#define BASE_EXPORTS(X)                                                              \
    X(InitPluginBase) X(InitPluginBaseV2) X(LoadGlobalConfig) X(LoadConfig)          \
    X(UnloadConfig) X(HoldOn) X(Resume) X(ProcessRawLog) X(ProcessRawLogV2)          \
    X(ProcessLog) X(ProcessLogGroup) X(CtlCmd) X(GetContainerMeta) X(LoadPipeline)   \
    X(UnloadPipeline) X(Start) X(Stop) X(StopAllPipelines) X(StopBuiltInModules)     \
    X(GetGoMetrics)
#define DECLARE_MEMBER(name) decltype(&::name) name = nullptr;
    BASE_EXPORTS(DECLARE_MEMBER)
#undef DECLARE_MEMBER
};

BaseApi g_base;

template <typename Fn>
bool load_symbol(void* handle, const char* lib, const char* name, Fn& out) {
    dlerror();
    void* sym = dlsym(handle, name);
    if (sym == nullptr) {
        const char* err = dlerror();
        std::printf("FAIL %s does not export %s (%s)\n", lib, name, err ? err : "null symbol");
        return false;
    }
    out = reinterpret_cast<Fn>(sym);
    return true;
}

GoString gs(const char* s) { return GoString{s, static_cast<ptrdiff_t>(std::strlen(s))}; }
GoString gs(const std::string& s) { return GoString{s.data(), static_cast<ptrdiff_t>(s.size())}; }
GoString raw_gs(const char* p, ptrdiff_t n) { return GoString{p, n}; }

GoSlice slice(const std::string& s) {
    return GoSlice{const_cast<char*>(s.data()), static_cast<long long>(s.size()),
                   static_cast<long long>(s.size())};
}
GoSlice raw_slice(void* data, long long len, long long cap) { return GoSlice{data, len, cap}; }
GoSlice empty_slice() { return GoSlice{nullptr, 0, 0}; }

std::string make_tmpdir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                       "/tailrace-base-host-XXXXXX";
    char* dir = mkdtemp(&tmpl[0]);
    REQUIRE(dir != nullptr);
    for (const char* sub : {"/conf", "/log", "/data"})
        REQUIRE(std::filesystem::create_directories(std::string(dir) + sub));
    return dir;
}

// A directory given on the command line (a restart: the previous run's data dir).
std::string use_dir(const std::string& dir) {
    std::error_code ec;
    for (const char* sub : {"/conf", "/log", "/data"})
        std::filesystem::create_directories(dir + sub, ec);
    g_keep_tmpdir = true;
    return dir;
}

void setup(const std::string& lib_dir, const std::string& shared_dir) {
    Step step("setup: load the adaptor and the base, register callbacks, InitPluginBaseV2");
    std::string adaptor_path = lib_dir + "/libPluginAdapter.so";
    std::string base_path = lib_dir + "/libPluginBase.so";

    void* adaptor = dlopen(adaptor_path.c_str(), RTLD_LAZY | RTLD_GLOBAL);
    if (adaptor == nullptr) std::printf("FAIL dlopen %s: %s\n", adaptor_path.c_str(), dlerror());
    REQUIRE(adaptor != nullptr);

    decltype(&::PluginAdapterVersion) version = nullptr;
    decltype(&::RegisterLogtailCallBackV2) register_v2 = nullptr;
    REQUIRE(load_symbol(adaptor, "libPluginAdapter.so", "PluginAdapterVersion", version));
    REQUIRE(load_symbol(adaptor, "libPluginAdapter.so", "RegisterLogtailCallBackV2", register_v2));
    CHECK_EQ(version(), 300);
    register_v2(host_is_valid_to_send, host_send_pb, host_send_pb_v2, host_ctl_cmd);

    void* base = dlopen(base_path.c_str(), RTLD_LAZY);
    if (base == nullptr) std::printf("FAIL dlopen %s: %s\n", base_path.c_str(), dlerror());
    REQUIRE(base != nullptr);

    bool all = true;
#define LOAD_MEMBER(name) all = load_symbol(base, "libPluginBase.so", #name, g_base.name) && all;
    BASE_EXPORTS(LOAD_MEMBER)
#undef LOAD_MEMBER
    REQUIRE(all);

    g_tmpdir = shared_dir.empty() ? make_tmpdir() : use_dir(shared_dir);
    std::string global = "{\"LoongcollectorConfDir\":\"" + g_tmpdir + "/conf\"," +
                         "\"LoongcollectorLogDir\":\"" + g_tmpdir + "/log\"," +
                         "\"LoongcollectorDataDir\":\"" + g_tmpdir + "/data\"," +
                         "\"HostIP\":\"127.0.0.1\",\"Hostname\":\"test\"," +
                         "\"AlarmIntervalMs\":200,\"StatisticsIntervalMs\":200}";
    CHECK_EQ(g_base.InitPluginBaseV2(gs(global)), 0);
}

// Runs fn on a thread of its own; false if it did not return within limit_s.
// On timeout the thread is abandoned (the scenario ends right after).
bool returns_within(const char* what, double limit_s, std::function<void()> fn) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    Clock::time_point start = Clock::now();
    std::thread([fn, done] {
        fn();
        done->set_value();
    }).detach();
    bool ok = finished.wait_for(std::chrono::duration<double>(limit_s)) == std::future_status::ready;
    if (ok)
        std::printf("   %s returned after %.3f s\n", what, seconds_since(start));
    else
        std::printf("FAIL %s did not return within %.1f s\n", what, limit_s);
    std::fflush(stdout);
    return ok;
}

void hold_on(long long exit_flag, double limit_s) {
    std::string what = "HoldOn(" + std::to_string(exit_flag) + ")";
    if (!returns_within(what.c_str(), limit_s, [exit_flag] { g_base.HoldOn(exit_flag); })) {
        g_failures++;
        std::printf("FAIL scenario aborted\n");
        finish(1);
    }
}

// Exit like iLogtail's core: HoldOn(1) within 5 s.
void hold_on_exit() {
    Step step("HoldOn(1) returns within 5 s");
    hold_on(1, 5.0);
    check_no_callback_errors();
}

GoInt load_config(const std::string& config_name, long long key, const std::string& json) {
    return g_base.LoadConfig(gs("proj"), gs("store"), gs(config_name), key, gs(json));
}

// ---------------------------------------------------------------------------
// Pipeline configs
// ---------------------------------------------------------------------------

std::string mock_config(const std::string& f1) {
    return R"({"global":{"InputIntervalMs":100,"AggregatIntervalMs":100,"FlushIntervalMs":100},)"
           R"("inputs":[{"type":"metric_mock","detail":{"Tags":{"tag1":"v1"},"Fields":{"f1":")" +
           f1 +
           R"("}}}],"processors":[{"type":"processor_add_fields/2","detail":{"Fields":{"added":"yes"}}}],)"
           R"("flushers":[{"type":"flusher_sls#100","detail":{}}]})";
}

std::string feed_config(const std::string& processors_json) {
    return R"({"global":{"AggregatIntervalMs":100,"FlushIntervalMs":100},"processors":)" +
           processors_json + R"(,"flushers":[{"type":"flusher_sls","detail":{}}]})";
}

const std::string kAddEnvProcessor =
    R"([{"type":"processor_add_fields","detail":{"Fields":{"env":"prod"},"IgnoreIfExist":true}}])";

Log make_log(uint32_t time, std::vector<Content> contents) {
    Log log;
    log.time = time;
    log.contents = std::move(contents);
    return log;
}

// Waits for a log under `config` whose `key` content is `value`.
bool wait_for_content(const std::string& config, const std::string& key, const std::string& value,
                      double seconds) {
    return wait_for(
        [&](const std::vector<Received>& rs) {
            for (const auto& ref : logs_of(rs, config))
                if (ref.log->has(key, value)) return true;
            return false;
        },
        seconds);
}

std::vector<LogRef> with_content(const std::vector<LogRef>& logs, const std::string& key,
                                 const std::string& value) {
    std::vector<LogRef> out;
    for (const auto& ref : logs)
        if (ref.log->has(key, value)) out.push_back(ref);
    return out;
}

// ---------------------------------------------------------------------------
// Scenario: mock — metric_mock input, processor, flusher_sls, reload
// ---------------------------------------------------------------------------

// Checks the metric_mock logs of one phase (all with f1=<f1>).
void check_mock_logs(const std::vector<LogRef>& logs, const std::string& f1) {
    CHECK(!logs.empty());
    long long previous = -1;
    int bad_index = 0, not_increasing = 0, bad_added = 0, bad_tag = 0, bad_logstore = 0;
    for (const auto& ref : logs) {
        long long index;
        if (!parse_index(*ref.log, index)) {
            bad_index++;
            continue;
        }
        if (index <= previous) not_increasing++;
        previous = index;
        if (!ref.log->has("added", "yes")) bad_added++;
        if (!has_tag(ref, "tag1", "v1")) bad_tag++;
        if (ref.from->logstore != "store") bad_logstore++;
    }
    std::printf("   %zu logs with f1=%s, last Index %lld\n", logs.size(), f1.c_str(), previous);
    CHECK_EQ(bad_index, 0);       // Index present, an integer as a string
    CHECK_EQ(not_increasing, 0);  // Index increasing in arrival order
    CHECK_EQ(bad_added, 0);       // processor_add_fields ran
    CHECK_EQ(bad_tag, 0);         // tag1=v1 as a LogTag or __tag__:tag1
    CHECK_EQ(bad_logstore, 0);    // the logstore given to LoadConfig
}

// Data logs (those with Index) only come back under the real config name.
void check_only_real_config_name(const std::vector<Received>& rs, const std::string& real) {
    for (const auto& r : rs) {
        bool has_index = false;
        for (const auto& log : r.group.logs) has_index = has_index || log.get("Index") != nullptr;
        if (has_index && r.config != real)
            report_failure(__FILE__, __LINE__,
                           "metric_mock data under config name '" + r.config + "', want '" +
                               real + "'");
    }
}

int scenario_mock() {
    {
        Step step("mock: LoadConfig mockcfg/1 (f1=a) in a hold-on window");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("mockcfg/1", 42, mock_config("a")), 0);
        g_base.Resume();
    }
    {
        Step step("mock: metric_mock data arrives through SendPb under 'mockcfg'");
        REQUIRE(wait_for_content("mockcfg", "f1", "a", 10.0));
        // Let a few batches accumulate to check ordering (bounded wait, not an assertion).
        wait_for([](const std::vector<Received>& rs) {
            return with_content(logs_of(rs, "mockcfg"), "f1", "a").size() >= 5;
        }, 5.0);
        auto rs = snapshot();
        check_only_real_config_name(rs, "mockcfg");
        check_mock_logs(with_content(logs_of(rs, "mockcfg"), "f1", "a"), "a");
        check_no_callback_errors();
        std::lock_guard<std::mutex> lock(host().mu);
        if (host().is_valid_keys.count(42) == 0)
            std::printf("   note: IsValidToSend was never called with logstoreKey 42\n");
    }
    {
        Step step("mock: reload with f1=b (HoldOn(0), LoadConfig, Resume)");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("mockcfg/1", 42, mock_config("b")), 0);
        g_base.Resume();
    }
    {
        Step step("mock: after the reload, f1=b arrives and f1=a no longer does");
        REQUIRE(wait_for_content("mockcfg", "f1", "b", 10.0));
        Clock::time_point first_b;
        {
            auto rs = snapshot();
            for (const auto& ref : logs_of(rs, "mockcfg"))
                if (ref.log->has("f1", "b")) {
                    first_b = ref.from->at;
                    break;
                }
        }
        // Keep watching for at least 1 s of new data.
        CHECK(wait_for([&](const std::vector<Received>& rs) {
            for (const auto& ref : logs_of(rs, "mockcfg"))
                if (ref.log->has("f1", "b") && ref.from->at > first_b + std::chrono::seconds(1))
                    return true;
            return false;
        }, 10.0));
        auto rs = snapshot();
        auto logs = logs_of(rs, "mockcfg");
        bool seen_b = false;
        int a_after_b = 0;
        for (const auto& ref : logs) {
            if (ref.log->has("f1", "b")) seen_b = true;
            if (seen_b && ref.log->has("f1", "a")) a_after_b++;
        }
        CHECK_EQ(a_after_b, 0);
        check_only_real_config_name(rs, "mockcfg");
        check_mock_logs(with_content(logs, "f1", "b"), "b");
        check_no_callback_errors();
    }
    hold_on_exit();
    return 0;
}

// ---------------------------------------------------------------------------
// Scenario: feed — a pipeline without inputs, fed by the host
// ---------------------------------------------------------------------------

LogGroup feed_group() {
    LogGroup group;
    group.logs.push_back(make_log(1700000000, {{"msg", "hello1"}}));
    group.logs.push_back(make_log(1700000001, {{"msg", "hello2"}, {"env", "dev"}}));
    group.logs.back().has_time_ns = true;
    group.logs.back().time_ns = 123456789;
    group.logs.push_back(make_log(1700000002, {{"msg", "hello3"}, {"level", "info"}}));
    group.topic = "t1";
    group.source = "10.1.2.3";
    group.tags.push_back({"host_tag", "h1"});
    return group;
}

// Finds the single log with msg=<msg>; fails if it is missing or duplicated.
const Log* single_log(const std::vector<LogRef>& logs, const std::string& msg) {
    auto matches = with_content(logs, "msg", msg);
    if (matches.size() != 1) {
        report_failure(__FILE__, __LINE__,
                       "want exactly one log with msg=" + msg + ", got " +
                           std::to_string(matches.size()));
        return nullptr;
    }
    return matches[0].log;
}

// Round-trips one log through ProcessLogGroup on `config_name` ("NAME/2").
void check_round_trip(const std::string& config_name, const std::string& real_name,
                      const std::string& msg) {
    LogGroup group;
    group.logs.push_back(make_log(1700000500, {{"msg", msg}}));
    std::string buffer = pb::encode_log_group(group);
    CHECK_EQ(g_base.ProcessLogGroup(gs(config_name), slice(buffer), gs("pack-rt")), 0);
    CHECK(wait_for_content(real_name, "msg", msg, 10.0));
    auto rs = snapshot();
    auto logs = with_content(logs_of(rs, real_name), "msg", msg);
    CHECK_EQ(logs.size(), 1);
    for (const auto& ref : logs) {
        CHECK_EQ(ref.log->time, 1700000500);
        CHECK(ref.log->has("env", "prod"));
    }
}

int scenario_feed() {
    {
        Step step("feed: LoadConfig fedcfg/2 (no inputs) and Resume");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("fedcfg/2", 7, feed_config(kAddEnvProcessor)), 0);
        g_base.Resume();
    }
    {
        Step step("feed: ProcessLogGroup of 3 logs comes back with env added");
        std::string buffer = pb::encode_log_group(feed_group());
        CHECK_EQ(g_base.ProcessLogGroup(gs("fedcfg/2"), slice(buffer), gs("pack-1")), 0);
        REQUIRE(wait_for([](const std::vector<Received>& rs) {
            auto logs = logs_of(rs, "fedcfg");
            return !with_content(logs, "msg", "hello1").empty() &&
                   !with_content(logs, "msg", "hello2").empty() &&
                   !with_content(logs, "msg", "hello3").empty();
        }, 10.0));
        auto rs = snapshot();
        auto logs = logs_of(rs, "fedcfg");
        const Log* l1 = single_log(logs, "hello1");
        const Log* l2 = single_log(logs, "hello2");
        const Log* l3 = single_log(logs, "hello3");
        if (l1 != nullptr) {
            CHECK_EQ(l1->time, 1700000000);
            CHECK(l1->has("env", "prod"));
        }
        if (l2 != nullptr) {
            CHECK_EQ(l2->time, 1700000001);
            CHECK(l2->has("env", "dev"));  // IgnoreIfExist keeps the existing value
            CHECK(!l2->has("env", "prod"));
            CHECK(l2->has_time_ns);
            CHECK_EQ(l2->time_ns, 123456789);
        }
        if (l3 != nullptr) {
            CHECK_EQ(l3->time, 1700000002);
            CHECK(l3->has("env", "prod"));
            CHECK(l3->has("level", "info"));
        }
        for (const auto& ref : with_content(logs, "msg", "hello1")) {
            CHECK(ref.from->logstore == "store");
            CHECK(has_topic(ref, "t1"));
            CHECK(has_tag(ref, "host_tag", "h1"));
        }
        check_no_callback_errors();
    }
    {
        Step step("feed: ProcessLog of a single Log comes back");
        Log log = make_log(1700000100, {{"msg", "single"}});
        std::string buffer = pb::encode_log(log);
        CHECK_EQ(g_base.ProcessLog(gs("fedcfg/2"), slice(buffer), gs("pack-2"), gs("t2"),
                                   empty_slice()),
                 0);
        CHECK(wait_for_content("fedcfg", "msg", "single", 10.0));
        auto rs = snapshot();
        for (const auto& ref : with_content(logs_of(rs, "fedcfg"), "msg", "single")) {
            CHECK_EQ(ref.log->time, 1700000100);
            CHECK(ref.log->has("env", "prod"));
        }
        check_no_callback_errors();
    }
    {
        Step step("feed: ProcessRawLogV2 and ProcessRawLog come back as 'content'");
        std::string raw = "raw line";
        std::string tags;  // empty, but not a null pointer
        GoSlice tag_slice = raw_slice(const_cast<char*>(tags.data()), 0, 0);
        CHECK_EQ(g_base.ProcessRawLogV2(gs("fedcfg/2"), slice(raw), gs("pack-3"), gs("t3"),
                                        tag_slice),
                 0);
        std::string raw_v1 = "raw line v1";
        CHECK_EQ(g_base.ProcessRawLog(gs("fedcfg/2"), slice(raw_v1), gs("pack-4"), gs("t4")), 0);
        CHECK(wait_for_content("fedcfg", "content", "raw line", 10.0));
        CHECK(wait_for_content("fedcfg", "content", "raw line v1", 10.0));
        auto rs = snapshot();
        auto logs = logs_of(rs, "fedcfg");
        for (const auto& ref : with_content(logs, "content", "raw line"))
            CHECK(ref.log->has("env", "prod"));
        CHECK_EQ(with_content(logs, "content", "raw line").size(), 1);
        check_no_callback_errors();
    }
    hold_on_exit();
    return 0;
}

// ---------------------------------------------------------------------------
// Scenario: bad — invalid arguments are errors, never crashes
// ---------------------------------------------------------------------------

struct BadString {
    const char* what;
    GoString value;
};

// "\xff\xfe" is not UTF-8.
const char kInvalidUtf8[] = "bad\xff\xfe/2";

std::vector<BadString> bad_strings() {
    return {
        {"p=NULL, n=5", raw_gs(nullptr, 5)},
        {"n=-1", raw_gs("abc/2", -1)},
        {"n=PTRDIFF_MIN", raw_gs("abc/2", PTRDIFF_MIN)},
        {"invalid UTF-8", raw_gs(kInvalidUtf8, static_cast<ptrdiff_t>(sizeof(kInvalidUtf8) - 1))},
    };
}

struct BadSlice {
    const char* what;
    GoSlice value;
};

char g_slice_bytes[16] = {0x0a, 0x00};

std::vector<BadSlice> bad_slices() {
    return {
        {"data=NULL, len=8", raw_slice(nullptr, 8, 8)},
        {"len=-1", raw_slice(g_slice_bytes, -1, 16)},
        {"len=LLONG_MIN", raw_slice(g_slice_bytes, INT64_MIN, 16)},
    };
}

void print_case(const char* call, const char* what) { std::printf("   %s with %s\n", call, what); }

int scenario_bad() {
    const std::string valid_json = feed_config(kAddEnvProcessor);
    {
        Step step("bad: LoadConfig with bad strings returns 1 (held on)");
        for (const auto& bad : bad_strings()) {
            print_case("LoadConfig configName", bad.what);
            CHECK_EQ(g_base.LoadConfig(gs("proj"), gs("store"), bad.value, 1, gs(valid_json)), 1);
            print_case("LoadConfig jsonStr", bad.what);
            CHECK_EQ(g_base.LoadConfig(gs("proj"), gs("store"), gs("badjson/2"), 1, bad.value), 1);
            print_case("LoadConfig project/logstore", bad.what);
            CHECK_EQ(g_base.LoadConfig(bad.value, bad.value, gs("badproj/2"), 1, gs(valid_json)), 1);
        }
    }
    {
        Step step("bad: LoadConfig with invalid JSON or an unknown flusher returns 1");
        CHECK_EQ(load_config("invalid/2", 1, "{\"global\":"), 1);
        CHECK_EQ(load_config("invalid2/2", 1, "not json at all"), 1);
        CHECK_EQ(load_config("invalid3/2", 1, "[1,2,3]"), 1);
        CHECK_EQ(load_config("noflusher/2", 1,
                             R"({"global":{},"flushers":[{"type":"flusher_nope","detail":{}}]})"),
                 1);
    }
    {
        Step step("bad: a valid config loads, Resume, LoadConfig outside a hold-on window returns 1");
        CHECK_EQ(load_config("okcfg/2", 3, valid_json), 0);
        g_base.Resume();
        CHECK_EQ(load_config("late/2", 4, valid_json), 1);
        check_round_trip("okcfg/2", "okcfg", "before-bad-input");
    }
    LogGroup one;
    one.logs.push_back(make_log(1700000000, {{"msg", "x"}}));
    const std::string valid_group = pb::encode_log_group(one);
    const std::string valid_log = pb::encode_log(one.logs[0]);
    {
        Step step("bad: ProcessLogGroup errors return -1");
        std::string garbage("\xff\xff\xff\x07\x12\x34\x56\x78\x9a", 9);
        CHECK_EQ(g_base.ProcessLogGroup(gs("okcfg/2"), slice(garbage), gs("p")), -1);
        std::string truncated = valid_group.substr(0, valid_group.size() - 2);
        CHECK_EQ(g_base.ProcessLogGroup(gs("okcfg/2"), slice(truncated), gs("p")), -1);
        CHECK_EQ(g_base.ProcessLogGroup(gs("unknown/2"), slice(valid_group), gs("p")), -1);
        for (const auto& bad : bad_strings()) {
            print_case("ProcessLogGroup configName", bad.what);
            CHECK_EQ(g_base.ProcessLogGroup(bad.value, slice(valid_group), gs("p")), -1);
        }
        for (const auto& bad : bad_slices()) {
            print_case("ProcessLogGroup logGroupPb", bad.what);
            CHECK_EQ(g_base.ProcessLogGroup(gs("okcfg/2"), bad.value, gs("p")), -1);
        }
        print_case("ProcessLogGroup packId", "p=NULL, n=5");
        CHECK_EQ(g_base.ProcessLogGroup(gs("okcfg/2"), slice(valid_group), raw_gs(nullptr, 5)), -1);
        print_case("ProcessLogGroup packId", "n=-1");
        CHECK_EQ(g_base.ProcessLogGroup(gs("okcfg/2"), slice(valid_group), raw_gs("p", -1)), -1);
    }
    {
        Step step("bad: ProcessRawLog / ProcessRawLogV2 / ProcessLog errors return -1");
        std::string raw = "a raw line";
        CHECK_EQ(g_base.ProcessRawLog(gs("unknown/2"), slice(raw), gs("p"), gs("t")), -1);
        CHECK_EQ(g_base.ProcessRawLogV2(gs("unknown/2"), slice(raw), gs("p"), gs("t"),
                                        empty_slice()),
                 -1);
        CHECK_EQ(g_base.ProcessLog(gs("unknown/2"), slice(valid_log), gs("p"), gs("t"),
                                   empty_slice()),
                 -1);
        std::string garbage("\xff\xff\xff\x07\x01", 5);
        CHECK_EQ(g_base.ProcessLog(gs("okcfg/2"), slice(garbage), gs("p"), gs("t"), empty_slice()),
                 -1);
        for (const auto& bad : bad_slices()) {
            print_case("ProcessRawLog rawLog", bad.what);
            CHECK_EQ(g_base.ProcessRawLog(gs("okcfg/2"), bad.value, gs("p"), gs("t")), -1);
            print_case("ProcessRawLogV2 rawLog", bad.what);
            CHECK_EQ(g_base.ProcessRawLogV2(gs("okcfg/2"), bad.value, gs("p"), gs("t"),
                                            empty_slice()),
                     -1);
            print_case("ProcessRawLogV2 tags", bad.what);
            CHECK_EQ(g_base.ProcessRawLogV2(gs("okcfg/2"), slice(raw), gs("p"), gs("t"), bad.value),
                     -1);
            print_case("ProcessLog logPb", bad.what);
            CHECK_EQ(g_base.ProcessLog(gs("okcfg/2"), bad.value, gs("p"), gs("t"), empty_slice()),
                     -1);
            print_case("ProcessLog tags", bad.what);
            CHECK_EQ(g_base.ProcessLog(gs("okcfg/2"), slice(valid_log), gs("p"), gs("t"), bad.value),
                     -1);
        }
        for (const auto& bad : bad_strings()) {
            print_case("ProcessRawLog configName", bad.what);
            CHECK_EQ(g_base.ProcessRawLog(bad.value, slice(raw), gs("p"), gs("t")), -1);
            print_case("ProcessRawLogV2 configName", bad.what);
            CHECK_EQ(g_base.ProcessRawLogV2(bad.value, slice(raw), gs("p"), gs("t"), empty_slice()),
                     -1);
            print_case("ProcessLog configName", bad.what);
            CHECK_EQ(g_base.ProcessLog(bad.value, slice(valid_log), gs("p"), gs("t"), empty_slice()),
                     -1);
        }
        print_case("ProcessRawLog topic", "p=NULL, n=5");
        CHECK_EQ(g_base.ProcessRawLog(gs("okcfg/2"), slice(raw), gs("p"), raw_gs(nullptr, 5)), -1);
        print_case("ProcessLog topic", "n=-1");
        CHECK_EQ(g_base.ProcessLog(gs("okcfg/2"), slice(valid_log), gs("p"), raw_gs("t", -1),
                                   empty_slice()),
                 -1);
    }
    {
        Step step("bad: UnloadConfig, CtlCmd, GetContainerMeta, GetGoMetrics do not crash");
        CHECK_EQ(g_base.UnloadConfig(gs("proj"), gs("store"), gs("unknown/2")), 0);
        for (const auto& bad : bad_strings()) {
            print_case("UnloadConfig (any result)", bad.what);
            g_base.UnloadConfig(bad.value, bad.value, bad.value);
            print_case("CtlCmd (no result)", bad.what);
            g_base.CtlCmd(bad.value, 1, bad.value);
            g_base.CtlCmd(gs("okcfg/2"), -1, bad.value);
            print_case("GetContainerMeta", bad.what);
            CHECK(g_base.GetContainerMeta(bad.value) == nullptr);
            print_case("GetGoMetrics (any result)", bad.what);
            free_metrics(g_base.GetGoMetrics(bad.value));
        }
        g_base.CtlCmd(gs("unknown/2"), 12345, gs("{}"));
        g_base.CtlCmd(gs("okcfg/2"), INT64_MIN, gs(""));
        CHECK(g_base.GetContainerMeta(gs("nope")) == nullptr);
        for (const char* type : {"", "direct", "plugin", "nope"}) {
            // iLogtail's layout: a malloc'd PluginMetrics tree (or NULL) the caller frees.
            std::vector<std::map<std::string, std::string>> rows;
            int n = free_metrics(g_base.GetGoMetrics(gs(type)), &rows);
            std::printf("   GetGoMetrics(\"%s\") -> %d metrics\n", type, n);
        }
    }
    {
        Step step("bad: a valid pipeline still works afterwards");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("okcfg/2", 3, valid_json), 0);
        CHECK_EQ(load_config("final/2", 5, valid_json), 0);
        g_base.Resume();
        check_round_trip("okcfg/2", "okcfg", "after-bad-input");
        check_round_trip("final/2", "final", "after-bad-input-final");
        // Both running pipelines show up in GetGoMetrics, each with its config_name.
        std::vector<std::map<std::string, std::string>> rows;
        CHECK(free_metrics(g_base.GetGoMetrics(gs("")), &rows) >= 2);
        std::set<std::string> names;
        for (const auto& row : rows) {
            auto it = row.find("config_name");
            CHECK(it != row.end());
            if (it != row.end()) names.insert(it->second);
            CHECK(row.count("events_in") == 1);
        }
        CHECK(names.count("okcfg/2") == 1);
        CHECK(names.count("final/2") == 1);
        check_no_callback_errors();
    }
    hold_on_exit();
    return 0;
}

// ---------------------------------------------------------------------------
// Scenario: panic — processor_test_panic (a base built with `test-faults`)
// ---------------------------------------------------------------------------

std::string panic_config(const char* when) {
    return feed_config(std::string(R"([{"type":"processor_test_panic","detail":{"When":")") + when +
                       R"("}}])");
}

bool is_panic_alarm(const Log& log) {
    const std::string* type = log.get("alarm_type");
    const std::string* message = log.get("alarm_message");
    return type != nullptr && message != nullptr && type->find("PANIC") != std::string::npos &&
           message->find("processor_test_panic") != std::string::npos;
}

long long max_index(const std::vector<Received>& rs, const std::string& config) {
    long long max = -1, index;
    for (const auto& ref : logs_of(rs, config))
        if (parse_index(*ref.log, index) && index > max) max = index;
    return max;
}

int scenario_panic() {
    {
        Step step("panic: a panic while loading is an error return, not a crash");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("healthy/1", 11, mock_config("a")), 0);
        CHECK_EQ(load_config("panicload/2", 12, panic_config("load")), 1);
        CHECK_EQ(load_config("panicproc/2", 13, panic_config("process")), 0);
        g_base.Resume();
    }
    {
        Step step("panic: a panic while processing raises a PANIC alarm");
        CHECK(wait_for_content("healthy", "f1", "a", 10.0));
        LogGroup group = feed_group();
        std::string buffer = pb::encode_log_group(group);
        for (int i = 0; i < 3; i++)
            CHECK_EQ(g_base.ProcessLogGroup(gs("panicproc/2"), slice(buffer), gs("pack-p")), 0);
        bool alarmed = wait_for([](const std::vector<Received>& rs) {
            for (const auto& ref : logs_of(rs, "logtail_alarm"))
                if (is_panic_alarm(*ref.log)) return true;
            return false;
        }, 10.0);
        CHECK(alarmed);
        auto rs = snapshot();
        for (const auto& ref : logs_of(rs, "logtail_alarm")) {
            const std::string* type = ref.log->get("alarm_type");
            const std::string* message = ref.log->get("alarm_message");
            std::printf("   alarm: %s: %s\n", type ? type->c_str() : "(no alarm_type)",
                        message ? message->c_str() : "(no alarm_message)");
        }
    }
    {
        Step step("panic: the healthy pipeline keeps sending for at least 1 s after the panics");
        Clock::time_point after_panics = Clock::now();
        long long index_then = max_index(snapshot(), "healthy");
        bool kept_sending = wait_for([&](const std::vector<Received>& rs) {
            for (const auto& ref : logs_of(rs, "healthy")) {
                long long index;
                if (ref.from->at >= after_panics + std::chrono::seconds(1) &&
                    parse_index(*ref.log, index) && index > index_then)
                    return true;
            }
            return false;
        }, 10.0);
        CHECK(kept_sending);
        std::printf("   healthy Index %lld -> %lld\n", index_then, max_index(snapshot(), "healthy"));
        check_no_callback_errors();
    }
    hold_on_exit();
    return 0;
}

// ---------------------------------------------------------------------------
// Scenario: holdon-exit-backpressure — HoldOn(1) while the host refuses data
// ---------------------------------------------------------------------------

int scenario_holdon_exit_backpressure() {
    {
        Step step("backpressure: mock pipeline sends data");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("bpcfg/1", 21, mock_config("a")), 0);
        g_base.Resume();
        REQUIRE(wait_for_content("bpcfg", "f1", "a", 10.0));
    }
    {
        Step step("backpressure: host full (IsValidToSend and SendPb return -1), HoldOn(1) within 5 s");
        host().full = true;
        // Let the base run into the full host before exiting (bounded; proceeds either way).
        auto refusals = [] { return host().refused.load() + host().refused_checks.load(); };
        auto until = Clock::now() + std::chrono::seconds(2);
        while (refusals() == 0 && Clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        hold_on(1, 5.0);
        std::printf("   refused while full: %d IsValidToSend, %d SendPb\n",
                    host().refused_checks.load(), host().refused.load());
        // Informational: what HoldOn(1) persisted for the next start.
        std::error_code ec;
        for (const auto& entry :
             std::filesystem::recursive_directory_iterator(g_tmpdir + "/data", ec))
            if (entry.is_regular_file())
                std::printf("   persisted: %s (%ju bytes)\n", entry.path().c_str(),
                            static_cast<uintmax_t>(entry.file_size()));
        check_no_callback_errors();
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Scenarios: restart-1 and restart-2 — the plugin runtime's promises, over two processes that
// share a data dir (restart-2 is the next start of restart-1's host)
// ---------------------------------------------------------------------------

// metric_mock every millisecond, straight back to the host.
std::string fast_mock_config() {
    return R"({"global":{"InputIntervalMs":1,"AggregatIntervalMs":10,"FlushIntervalMs":10,)"
           R"("InputMaxFirstCollectDelayMs":0},"inputs":[{"type":"metric_mock","detail":{}}],)"
           R"("flushers":[{"type":"flusher_sls","detail":{}}]})";
}

std::string index_file() { return g_tmpdir + "/phase1-last-index"; }

// The Index values received under `config`: how many distinct, how many repeated, the range.
struct IndexCount {
    size_t distinct = 0, repeated = 0;
    long long min = -1, max = -1;
};

IndexCount count_indexes(const std::vector<Received>& rs, const std::string& config) {
    std::map<long long, int> seen;
    long long index;
    for (const auto& ref : logs_of(rs, config))
        if (parse_index(*ref.log, index)) seen[index]++;
    IndexCount c;
    for (const auto& [i, n] : seen) c.repeated += static_cast<size_t>(n - 1);
    c.distinct = seen.size();
    if (!seen.empty()) {
        c.min = seen.begin()->first;
        c.max = seen.rbegin()->first;
    }
    return c;
}

// A log of the built-in statistics pipeline for `plugin_type` whose `counter` moved.
bool statistics_show(const std::vector<Received>& rs, const std::string& plugin_type,
                     const std::string& counter) {
    for (const auto& ref : logs_of(rs, "shennong_log_profile")) {
        const std::string* value = ref.log->get(counter);
        if (ref.log->has("plugin_type", plugin_type) && value != nullptr && *value != "0")
            return true;
    }
    return false;
}

int scenario_restart_1() {
    {
        Step step("restart-1: 100 reloads under a 1 ms metric_mock stream lose no Index");
        hold_on(0, 10.0);
        CHECK_EQ(load_config("ckpt/1", 31, fast_mock_config()), 0);
        g_base.Resume();
        REQUIRE(wait_for([](const std::vector<Received>& rs) {
            return count_indexes(rs, "ckpt").distinct >= 20;
        }, 10.0));
        for (int i = 0; i < 100; ++i) {
            hold_on(0, 10.0);
            CHECK_EQ(load_config("ckpt/1", 31, fast_mock_config()), 0);
            g_base.Resume();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        // Stop the stream: HoldOn saves the checkpoint, and the pipeline is left out.
        hold_on(0, 10.0);
        CHECK_EQ(load_config("down/2", 32, feed_config("[]")), 0);
        g_base.Resume();
        IndexCount c = count_indexes(snapshot(), "ckpt");
        std::printf("   %zu distinct Index values (%lld..%lld), %zu repeated\n", c.distinct,
                    c.min, c.max, c.repeated);
        CHECK_EQ(c.min, 1);
        CHECK_EQ(c.repeated, static_cast<size_t>(0));
        CHECK_EQ(static_cast<long long>(c.distinct), c.max);  // no gap
        FILE* f = std::fopen(index_file().c_str(), "w");
        REQUIRE(f != nullptr);
        std::fprintf(f, "%lld\n", c.max);
        std::fclose(f);
    }
    {
        Step step("restart-1: statistics and alarms arrive under the reserved config names");
        // A plugin type that does not exist: skipped with an alarm, the pipeline loads.
        hold_on(0, 10.0);
        CHECK_EQ(load_config("down/2", 32, feed_config("[]")), 0);
        CHECK_EQ(load_config("alarming/2", 33, feed_config(R"([{"type":"processor_nope"}])")), 0);
        g_base.Resume();
        LogGroup group;
        group.logs.push_back(make_log(1700000000, {{"stat", "one"}}));
        std::string buffer = pb::encode_log_group(group);
        CHECK_EQ(g_base.ProcessLogGroup(gs("down/2"), slice(buffer), gs("STATS-0")), 0);
        CHECK(wait_for_content("down", "stat", "one", 10.0));
        CHECK(wait_for([](const std::vector<Received>& rs) {
            for (const auto& ref : logs_of(rs, "logtail_alarm"))
                if (ref.log->has("alarm_type", "PLUGIN_ALARM") &&
                    ref.log->get("alarm_message") != nullptr &&
                    ref.log->get("alarm_message")->find("processor_nope") != std::string::npos)
                    return true;
            return false;
        }, 10.0));
        CHECK(wait_for([](const std::vector<Received>& rs) {
            return statistics_show(rs, "flusher_sls", "plugin_out_events_total") &&
                   statistics_show(rs, "aggregator_context", "plugin_in_events_total");
        }, 10.0));
        // The same figures through GetGoMetrics, in LoongCollector's "direct" layout.
        std::vector<std::map<std::string, std::string>> rows;
        CHECK(free_metrics(g_base.GetGoMetrics(gs("direct")), &rows) > 0);
        bool flusher_row = false;
        for (const auto& row : rows) {
            CHECK(row.count("labels") == 1 && row.count("counters") == 1 &&
                  row.count("gauges") == 1);
            const std::string& labels = row.count("labels") ? row.at("labels") : "";
            if (labels.find("\"metric_category\":\"plugin\"") != std::string::npos &&
                labels.find("\"plugin_type\":\"flusher_sls\"") != std::string::npos &&
                labels.find("\"pipeline_name\":\"down\"") != std::string::npos)
                flusher_row = row.at("counters").find("\"plugin_out_events_total\":1") !=
                              std::string::npos;
        }
        CHECK(flusher_row);
        rows.clear();
        CHECK_EQ(free_metrics(g_base.GetGoMetrics(gs("cpp_provided")), &rows), 1);
        CHECK(!rows.empty() && rows[0].count("agent_go_routines_total") == 1);
    }
    {
        Step step("restart-1: the host is down; HoldOn(1) keeps what it could not deliver");
        host().full = true;
        LogGroup group;
        group.logs.push_back(make_log(1700000000, {{"marker", "survives"}}));
        std::string buffer = pb::encode_log_group(group);
        CHECK_EQ(g_base.ProcessLogGroup(gs("down/2"), slice(buffer), gs("DOWN-0")), 0);
        auto until = Clock::now() + std::chrono::seconds(5);
        while (host().refused.load() + host().refused_checks.load() == 0 && Clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK(host().refused.load() + host().refused_checks.load() > 0);
        hold_on(1, 5.0);
        CHECK(!wait_for_content("down", "marker", "survives", 0.1));
        check_no_callback_errors();
    }
    return 0;
}

int scenario_restart_2() {
    long long last = -1;
    {
        Step step("restart-2: read what restart-1 left");
        FILE* f = std::fopen(index_file().c_str(), "r");
        REQUIRE(f != nullptr);
        CHECK_EQ(std::fscanf(f, "%lld", &last), 1);
        std::fclose(f);
        std::printf("   restart-1 ended at Index %lld\n", last);
        CHECK(last > 0);
    }
    {
        Step step("restart-2: the undelivered batch is replayed, metric_mock continues");
        CHECK_EQ(load_config("down/2", 32, feed_config("[]")), 0);
        CHECK_EQ(load_config("ckpt/1", 31, fast_mock_config()), 0);
        g_base.Resume();
        CHECK(wait_for_content("down", "marker", "survives", 10.0));
        REQUIRE(wait_for([](const std::vector<Received>& rs) {
            return count_indexes(rs, "ckpt").distinct >= 5;
        }, 10.0));
        IndexCount c = count_indexes(snapshot(), "ckpt");
        std::printf("   after the restart: Index %lld..%lld\n", c.min, c.max);
        CHECK_EQ(c.min, last + 1);  // the checkpoint survived HoldOn(1) and the restart
        CHECK_EQ(c.repeated, static_cast<size_t>(0));
        check_no_callback_errors();
    }
    hold_on_exit();
    g_keep_tmpdir = false;  // the last run cleans up
    return 0;
}

// ---------------------------------------------------------------------------

bool pb_self_test() {
    LogGroup group = feed_group();
    std::string buffer = pb::encode_log_group(group);
    LogGroup decoded;
    std::string error;
    if (!pb::decode_log_group(buffer, decoded, error)) {
        std::printf("FAIL protobuf self-test: %s\n", error.c_str());
        return false;
    }
    return decoded.logs.size() == 3 && decoded.logs[1].has("env", "dev") &&
           decoded.logs[1].time_ns == 123456789 && decoded.topic == "t1" &&
           decoded.tags.size() == 1 && decoded.tags[0].value == "h1" &&
           pb::encode_log_group(decoded) == buffer;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::map<std::string, std::function<int()>> scenarios = {
        {"mock", scenario_mock},
        {"feed", scenario_feed},
        {"bad", scenario_bad},
        {"panic", scenario_panic},
        {"holdon-exit-backpressure", scenario_holdon_exit_backpressure},
        {"restart-1", scenario_restart_1},
        {"restart-2", scenario_restart_2},
    };
    if ((argc != 3 && argc != 4) || scenarios.count(argv[2]) == 0) {
        std::fprintf(stderr, "usage: %s <lib-dir> <scenario> [<shared dir>]\nscenarios:",
                     argv[0]);
        for (const auto& s : scenarios) std::fprintf(stderr, " %s", s.first.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    REQUIRE(pb_self_test());
    setup(argv[1], argc == 4 ? argv[3] : "");
    scenarios.at(argv[2])();

    remove_tmpdir();
    // A normal exit, as iLogtail's core does after HoldOn(1): the base must
    // not crash in its exit handlers.
    if (g_failures != 0) {
        std::printf("base_host_test %s: FAIL (%d failed checks)\n", argv[2], g_failures);
        return 1;
    }
    std::printf("base_host_test %s: PASS\n", argv[2]);
    return 0;
}
