/*
 * replacement_base.c — a minimal third-party plugin base written in C, built only from the
 * published headers (DESIGN.md §2, §3). The host must load it in place of Tailrace's own
 * libPluginBase.so and take its data back through the adaptor.
 *
 * Build (host/tests/daemon.rs does this):
 *   cc -std=c11 -shared -fPIC -Wall -Werror -I include -o <dir>/libPluginBase.so \
 *      tests/c/replacement_base.c -L <libdir> -lPluginAdapter \
 *      -Wl,-soname,libPluginBase.so -Wl,-rpath,'$ORIGIN' -lpthread
 *
 * Behaviour:
 * - LoadConfig is accepted only while held on (between HoldOn and Resume, and before the first
 *   Resume); it remembers every config, and those whose JSON contains "inputs" get a producer.
 *   An empty jsonStr deletes the config.
 * - Resume starts one thread per such config: every 200 ms it sends a LogGroup of one log
 *   (Time = now; contents from=replacement-base, seq=<counter>, config=<name>) with
 *   LogtailSendPb under the config name without its "/N" suffix.
 * - HoldOn stops and joins those threads; configs not reloaded before the next Resume are
 *   forgotten. A reloaded config keeps its seq counter.
 * - Everything else succeeds per the contract; Process* return -1 for an unknown config or a
 *   bad buffer. Null pointers and negative lengths are errors, never crashes.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "LogtailPluginAdapter.h"
#include "LogtailPluginBase.h"

#define MAX_CONFIGS 64
#define MAX_NAME 256
#define PERIOD_MS 200

/* ------------------------------------------------------------------------- */
/* State                                                                     */
/* ------------------------------------------------------------------------- */

struct config {
    char name[MAX_NAME];
    int has_inputs;
    int loaded;     /* loaded in the current window (or running since the last Resume) */
    long long seq;  /* the last seq sent, carried over reloads */
};

struct worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    char name[MAX_NAME];      /* "P/1" */
    char send_name[MAX_NAME]; /* "P" */
    long long seq;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_held_on = 1; /* before the first Resume the base counts as held on */
static struct config g_configs[MAX_CONFIGS];
static int g_nconfigs = 0;
static struct worker *g_workers[MAX_CONFIGS];
static int g_nworkers = 0;

/* A GoString is valid when it has no negative length and no NULL pointer with a length. */
static int go_string_ok(GoString s) {
    return s.n >= 0 && s.n < MAX_NAME * 1024 && (s.p != NULL || s.n == 0);
}

static int go_slice_ok(GoSlice s) {
    return s.len >= 0 && (s.data != NULL || s.len == 0);
}

/* Copies a config name into a NUL-terminated buffer; 0 when it is invalid or too long. */
static int copy_name(GoString s, char out[MAX_NAME]) {
    if (!go_string_ok(s) || s.n == 0 || s.n >= MAX_NAME) {
        return 0;
    }
    if (memchr(s.p, '\0', (size_t)s.n) != NULL) {
        return 0;
    }
    memcpy(out, s.p, (size_t)s.n);
    out[s.n] = '\0';
    return 1;
}

static int contains(const char *hay, size_t hay_len, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0 || hay_len < n) {
        return n == 0;
    }
    for (size_t i = 0; i + n <= hay_len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Caller holds g_lock. */
static struct config *find_config(const char *name) {
    for (int i = 0; i < g_nconfigs; i++) {
        if (strcmp(g_configs[i].name, name) == 0) {
            return &g_configs[i];
        }
    }
    return NULL;
}

/* Caller holds g_lock. */
static void remove_config(struct config *c) {
    int i = (int)(c - g_configs);
    g_configs[i] = g_configs[g_nconfigs - 1];
    g_nconfigs--;
}

/* ------------------------------------------------------------------------- */
/* A tiny protobuf encoder for sls_logs.LogGroup                              */
/* ------------------------------------------------------------------------- */

struct buf {
    unsigned char data[2048];
    size_t len;
    int overflow;
};

static void put_byte(struct buf *b, unsigned char c) {
    if (b->len < sizeof b->data) {
        b->data[b->len++] = c;
    } else {
        b->overflow = 1;
    }
}

static void put_varint(struct buf *b, uint64_t v) {
    while (v >= 0x80) {
        put_byte(b, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    put_byte(b, (unsigned char)v);
}

static void put_tag(struct buf *b, unsigned field, unsigned wire_type) {
    put_varint(b, ((uint64_t)field << 3) | wire_type);
}

static void put_bytes(struct buf *b, unsigned field, const void *data, size_t len) {
    put_tag(b, field, 2);
    put_varint(b, len);
    for (size_t i = 0; i < len; i++) {
        put_byte(b, ((const unsigned char *)data)[i]);
    }
}

static void put_fixed32(struct buf *b, unsigned field, uint32_t v) {
    put_tag(b, field, 5);
    for (int i = 0; i < 4; i++) {
        put_byte(b, (unsigned char)(v >> (8 * i)));
    }
}

/* Log.Contents (field 2): Content{Key = 1, Value = 2}. */
static void put_content(struct buf *log, const char *key, const char *value) {
    struct buf content = {.len = 0, .overflow = 0};
    put_bytes(&content, 1, key, strlen(key));
    put_bytes(&content, 2, value, strlen(value));
    put_bytes(log, 2, content.data, content.len);
    log->overflow |= content.overflow;
}

/* LogGroup{Logs = 1: Log{Time = 1, Contents = 2, Time_ns = 4}}; returns 0 on overflow. */
static int encode_log_group(struct buf *group, const char *config, long long seq) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char seq_text[32];
    size_t n = 0;
    /* seq as decimal, without printf (keeps the encoder self-contained) */
    char rev[32];
    unsigned long long v = (unsigned long long)seq;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < sizeof rev);
    for (size_t i = 0; i < n; i++) {
        seq_text[i] = rev[n - 1 - i];
    }
    seq_text[n] = '\0';

    struct buf log = {.len = 0, .overflow = 0};
    put_tag(&log, 1, 0);
    put_varint(&log, (uint32_t)now.tv_sec);
    put_content(&log, "from", "replacement-base");
    put_content(&log, "seq", seq_text);
    put_content(&log, "config", config);
    put_fixed32(&log, 4, (uint32_t)now.tv_nsec);

    group->len = 0;
    group->overflow = log.overflow;
    put_bytes(group, 1, log.data, log.len);
    return !group->overflow;
}

/* ------------------------------------------------------------------------- */
/* Producer threads                                                          */
/* ------------------------------------------------------------------------- */

static void *produce(void *arg) {
    struct worker *w = arg;
    struct buf group;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        pthread_mutex_unlock(&w->mu);
        if (encode_log_group(&group, w->name, w->seq + 1)) {
            int rc = LogtailSendPb(w->send_name, (int)strlen(w->send_name), "", 0,
                                   (char *)group.data, (int)group.len, 1);
            if (rc == 0) {
                w->seq++; /* -1 (queue full) or -2 (unknown config): retried next period */
            }
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += (long)PERIOD_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->mu);
        while (!w->stop) {
            if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT) {
                break;
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Caller holds g_lock. */
static void start_worker(struct config *c) {
    if (g_nworkers >= MAX_CONFIGS) {
        return;
    }
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return;
    }
    strcpy(w->name, c->name);
    strcpy(w->send_name, c->name);
    /* iLogtail >= 2.0: data goes back under the real config name, the "/N" suffix stripped. */
    char *slash = strrchr(w->send_name, '/');
    if (slash != NULL && slash[1] != '\0' && strspn(slash + 1, "0123456789") == strlen(slash + 1)) {
        *slash = '\0';
    }
    w->seq = c->seq;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, produce, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return;
    }
    g_workers[g_nworkers++] = w;
}

static void stop_worker(struct worker *w) {
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* ------------------------------------------------------------------------- */
/* Generation-1 exports (LogtailPluginBase.h)                                */
/* ------------------------------------------------------------------------- */

GoInt InitPluginBase(void) {
    return 0;
}

GoInt InitPluginBaseV2(GoString globalConfig) {
    return LoadGlobalConfig(globalConfig);
}

GoInt LoadGlobalConfig(GoString jsonStr) {
    return go_string_ok(jsonStr) ? 0 : 1;
}

GoInt LoadConfig(GoString project, GoString logstore, GoString configName,
                 GoInt64 logstoreKey, GoString jsonStr) {
    (void)logstoreKey;
    char name[MAX_NAME];
    if (!go_string_ok(project) || !go_string_ok(logstore) || !go_string_ok(jsonStr) ||
        !copy_name(configName, name)) {
        return 1;
    }
    GoInt rc = 0;
    pthread_mutex_lock(&g_lock);
    struct config *c = find_config(name);
    if (!g_held_on) {
        rc = 1;
    } else if (jsonStr.n == 0) {
        if (c != NULL) {
            remove_config(c);
        }
    } else {
        if (c == NULL) {
            if (g_nconfigs >= MAX_CONFIGS) {
                rc = 1;
            } else {
                c = &g_configs[g_nconfigs++];
                memset(c, 0, sizeof *c);
                strcpy(c->name, name);
            }
        }
        if (c != NULL) {
            c->loaded = 1;
            c->has_inputs = contains(jsonStr.p, (size_t)jsonStr.n, "\"inputs\"");
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

GoInt UnloadConfig(GoString project, GoString logstore, GoString configName) {
    char name[MAX_NAME];
    (void)project;
    (void)logstore;
    if (!copy_name(configName, name)) {
        return 0;
    }
    pthread_mutex_lock(&g_lock);
    struct config *c = find_config(name);
    if (g_held_on && c != NULL && c->loaded) {
        c->loaded = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return 0;
}

void HoldOn(GoInt exitFlag) {
    (void)exitFlag; /* nothing is buffered here, so there is nothing to persist */
    struct worker *stopping[MAX_CONFIGS];
    int n;
    pthread_mutex_lock(&g_lock);
    if (g_held_on) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    g_held_on = 1;
    n = g_nworkers;
    memcpy(stopping, g_workers, sizeof(stopping[0]) * (size_t)n);
    g_nworkers = 0;
    pthread_mutex_unlock(&g_lock);

    for (int i = 0; i < n; i++) {
        stop_worker(stopping[i]);
    }

    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < n; i++) {
        struct config *c = find_config(stopping[i]->name);
        if (c != NULL) {
            c->seq = stopping[i]->seq;
        }
        free(stopping[i]);
    }
    /* Set aside: every config must be loaded again in this window to survive Resume. */
    for (int i = 0; i < g_nconfigs; i++) {
        g_configs[i].loaded = 0;
    }
    pthread_mutex_unlock(&g_lock);
}

void Resume(void) {
    pthread_mutex_lock(&g_lock);
    if (!g_held_on) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    for (int i = 0; i < g_nconfigs;) {
        if (!g_configs[i].loaded) {
            remove_config(&g_configs[i]); /* set aside and not reloaded: discarded */
        } else {
            i++;
        }
    }
    for (int i = 0; i < g_nconfigs; i++) {
        if (g_configs[i].has_inputs) {
            start_worker(&g_configs[i]);
        }
    }
    g_held_on = 0;
    pthread_mutex_unlock(&g_lock);
}

/* 0 when the data is for a loaded config (it is accepted and dropped: no processors here). */
static GoInt accept(GoString configName, GoSlice data) {
    char name[MAX_NAME];
    if (!copy_name(configName, name) || !go_slice_ok(data)) {
        return -1;
    }
    pthread_mutex_lock(&g_lock);
    struct config *c = find_config(name);
    GoInt rc = (c != NULL && c->loaded) ? 0 : -1;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

GoInt ProcessRawLog(GoString configName, GoSlice rawLog, GoString packId, GoString topic) {
    if (!go_string_ok(packId) || !go_string_ok(topic)) {
        return -1;
    }
    return accept(configName, rawLog);
}

GoInt ProcessRawLogV2(GoString configName, GoSlice rawLog, GoString packId, GoString topic,
                      GoSlice tags) {
    if (!go_string_ok(packId) || !go_string_ok(topic) || !go_slice_ok(tags)) {
        return -1;
    }
    return accept(configName, rawLog);
}

GoInt ProcessLog(GoString configName, GoSlice logPb, GoString packId, GoString topic,
                 GoSlice tags) {
    if (!go_string_ok(packId) || !go_string_ok(topic) || !go_slice_ok(tags)) {
        return -1;
    }
    return accept(configName, logPb);
}

GoInt ProcessLogGroup(GoString configName, GoSlice logGroupPb, GoString packId) {
    if (!go_string_ok(packId)) {
        return -1;
    }
    return accept(configName, logGroupPb);
}

void CtlCmd(GoString configName, GoInt cmdId, GoString cmdDetail) {
    (void)configName;
    (void)cmdId;
    (void)cmdDetail;
}

void *GetContainerMeta(GoString containerId) {
    (void)containerId;
    return NULL;
}
