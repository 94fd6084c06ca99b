/*
 * adaptor_test.c — checks libPluginAdapter.so against the adaptor ABI contract
 * (DESIGN.md §2) through the generated header, the way a C host links it.
 *
 * Build: cc -std=c11 -Wall -Werror -I include tests/c/adaptor_test.c \
 *           -L<libdir> -lPluginAdapter -Wl,-rpath,<libdir> -lpthread
 *
 * Prints one line per failed check (file:line and the expression) and exits 1 if
 * any check failed, 0 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "LogtailPluginAdapter.h"

/* ------------------------------------------------------------------------- */
/* Checks                                                                    */
/* ------------------------------------------------------------------------- */

static int g_failures = 0;

#define CHECK(expr)                                                            \
    do {                                                                       \
        if (!(expr)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: CHECK(%s)\n", __FILE__, __LINE__,     \
                    #expr);                                                    \
            g_failures++;                                                      \
        }                                                                      \
    } while (0)

/* Like CHECK(actual == expected) for integers, but prints both values. */
#define CHECK_EQ(actual, expected)                                             \
    do {                                                                       \
        long long check_a_ = (long long)(actual);                              \
        long long check_e_ = (long long)(expected);                            \
        if (check_a_ != check_e_) {                                            \
            fprintf(stderr, "FAIL %s:%d: CHECK_EQ(%s, %s): got %lld, want %lld\n", \
                    __FILE__, __LINE__, #actual, #expected, check_a_, check_e_); \
            g_failures++;                                                      \
        }                                                                      \
    } while (0)

static void section(const char* name) { printf("== %s\n", name); fflush(stdout); }

/* ------------------------------------------------------------------------- */
/* Recording callback sets A (id 1) and B (id 2)                             */
/* ------------------------------------------------------------------------- */

enum CallKind { CALL_NONE = 0, CALL_IS_VALID, CALL_SEND_PB, CALL_SEND_PB_V2, CALL_CTL };

/* The arguments of the last callback invocation, whatever set it reached. */
struct LastCall {
    int set_id;
    enum CallKind kind;
    long long logstore_key;
    const char* config_name;
    int config_name_size;
    const char* logstore;
    int logstore_size;
    char* pb_buffer;
    int pb_size;
    int lines;
    const char* shard_hash;
    int shard_hash_size;
    int opt_id;
    const char* params;
    int params_len;
};

static struct LastCall g_last;
static int g_calls[3];     /* invocations per recording set id (1, 2) */
static int g_ret_value;    /* what the recording callbacks return */

static void reset_last(void) {
    memset(&g_last, 0, sizeof(g_last));
    g_calls[1] = g_calls[2] = 0;
}

static int rec_is_valid(int set_id, long long key) {
    g_last.set_id = set_id;
    g_last.kind = CALL_IS_VALID;
    g_last.logstore_key = key;
    g_calls[set_id]++;
    return g_ret_value;
}

static int rec_send_pb(int set_id, enum CallKind kind, const char* config_name,
                       int config_name_size, const char* logstore, int logstore_size,
                       char* pb_buffer, int pb_size, int lines, const char* shard_hash,
                       int shard_hash_size) {
    g_last.set_id = set_id;
    g_last.kind = kind;
    g_last.config_name = config_name;
    g_last.config_name_size = config_name_size;
    g_last.logstore = logstore;
    g_last.logstore_size = logstore_size;
    g_last.pb_buffer = pb_buffer;
    g_last.pb_size = pb_size;
    g_last.lines = lines;
    g_last.shard_hash = shard_hash;
    g_last.shard_hash_size = shard_hash_size;
    g_calls[set_id]++;
    return g_ret_value;
}

static int rec_ctl(int set_id, const char* config_name, int config_name_size, int opt_id,
                   const char* params, int params_len) {
    g_last.set_id = set_id;
    g_last.kind = CALL_CTL;
    g_last.config_name = config_name;
    g_last.config_name_size = config_name_size;
    g_last.opt_id = opt_id;
    g_last.params = params;
    g_last.params_len = params_len;
    g_calls[set_id]++;
    return g_ret_value;
}

/* One set of the four callback signatures of DESIGN §2, recording under ID. */
#define DEFINE_RECORDING_SET(ID)                                                      \
    static int rec_is_valid_##ID(long long key) { return rec_is_valid(ID, key); }    \
    static int rec_send_pb_##ID(const char* c, int cs, const char* l, int ls,         \
                                char* pb, int pbs, int lines) {                       \
        return rec_send_pb(ID, CALL_SEND_PB, c, cs, l, ls, pb, pbs, lines, NULL, 0);  \
    }                                                                                 \
    static int rec_send_pb_v2_##ID(const char* c, int cs, const char* l, int ls,      \
                                   char* pb, int pbs, int lines, const char* sh,      \
                                   int shs) {                                         \
        return rec_send_pb(ID, CALL_SEND_PB_V2, c, cs, l, ls, pb, pbs, lines, sh, shs); \
    }                                                                                 \
    static int rec_ctl_##ID(const char* c, int cs, int opt, const char* p, int pl) {  \
        return rec_ctl(ID, c, cs, opt, p, pl);                                        \
    }

DEFINE_RECORDING_SET(1)
DEFINE_RECORDING_SET(2)

#define SET_A 1
#define SET_B 2

/* ------------------------------------------------------------------------- */
/* Forwarding checks                                                         */
/* ------------------------------------------------------------------------- */

static const int kReturnValues[] = {0, -1, -2, 7, 123456};
#define N_RETURN_VALUES (int)(sizeof(kReturnValues) / sizeof(kReturnValues[0]))

static const long long kKeys[] = {0, 42, -1, LLONG_MAX, LLONG_MIN,
                                  0x123456789abcdef0LL, -0x7edcba9876543210LL};
#define N_KEYS (int)(sizeof(kKeys) / sizeof(kKeys[0]))

/* Every forwarding call returns -1 with no callback to forward to. */
static void check_all_unregistered(void) {
    char pb[4] = {1, 2, 3, 4};
    CHECK_EQ(LogtailIsValidToSend(42), -1);
    CHECK_EQ(LogtailIsValidToSend(-1), -1);
    CHECK_EQ(LogtailSendPb("cfg", 3, "store", 5, pb, 4, 1), -1);
    CHECK_EQ(LogtailSendPbV2("cfg", 3, "store", 5, pb, 4, 1, "hash", 4), -1);
    CHECK_EQ(LogtailCtlCmd("cfg", 3, 1, "params", 6), -1);
}

static void check_is_valid_forwarding(int set_id) {
    for (int k = 0; k < N_KEYS; k++) {
        for (int r = 0; r < N_RETURN_VALUES; r++) {
            reset_last();
            g_ret_value = kReturnValues[r];
            CHECK_EQ(LogtailIsValidToSend(kKeys[k]), kReturnValues[r]);
            CHECK_EQ(g_calls[set_id], 1);
            CHECK_EQ(g_last.set_id, set_id);
            CHECK_EQ(g_last.kind, CALL_IS_VALID);
            CHECK_EQ(g_last.logstore_key, kKeys[k]);
        }
    }
}

static void check_send_pb_forwarding(int set_id) {
    /* Sizes deliberately smaller than the buffers: the adaptor must pass them
     * through, not compute them. */
    const char config[] = "my-config/with/slashes";
    const char logstore[] = "my-logstore";
    char pb[64];
    for (int i = 0; i < (int)sizeof(pb); i++) pb[i] = (char)(i * 7);

    for (int r = 0; r < N_RETURN_VALUES; r++) {
        reset_last();
        g_ret_value = kReturnValues[r];
        CHECK_EQ(LogtailSendPb(config, 9, logstore, 11, pb, 37, 5 + r), kReturnValues[r]);
        CHECK_EQ(g_calls[set_id], 1);
        CHECK_EQ(g_last.set_id, set_id);
        CHECK_EQ(g_last.kind, CALL_SEND_PB);
        CHECK(g_last.config_name == config);
        CHECK_EQ(g_last.config_name_size, 9);
        CHECK(g_last.logstore == logstore);
        CHECK_EQ(g_last.logstore_size, 11);
        CHECK(g_last.pb_buffer == pb);
        CHECK_EQ(g_last.pb_size, 37);
        CHECK_EQ(g_last.lines, 5 + r);
    }

    /* Empty logstore and empty buffer: forwarded as they are. */
    reset_last();
    g_ret_value = -2;
    CHECK_EQ(LogtailSendPb(config, 0, NULL, 0, NULL, 0, 0), -2);
    CHECK_EQ(g_calls[set_id], 1);
    CHECK(g_last.config_name == config);
    CHECK_EQ(g_last.config_name_size, 0);
    CHECK(g_last.logstore == NULL);
    CHECK_EQ(g_last.logstore_size, 0);
    CHECK(g_last.pb_buffer == NULL);
    CHECK_EQ(g_last.pb_size, 0);
    CHECK_EQ(g_last.lines, 0);

    /* Large sizes are not interpreted either. */
    reset_last();
    g_ret_value = 7;
    CHECK_EQ(LogtailSendPb(config, INT_MAX, logstore, INT_MAX - 1, pb, INT_MAX - 2, INT_MAX - 3), 7);
    CHECK_EQ(g_last.config_name_size, INT_MAX);
    CHECK_EQ(g_last.logstore_size, INT_MAX - 1);
    CHECK_EQ(g_last.pb_size, INT_MAX - 2);
    CHECK_EQ(g_last.lines, INT_MAX - 3);
}

static void check_send_pb_v2_forwarding(int set_id) {
    const char config[] = "cfg-v2";
    const char logstore[] = "store-v2";
    const char shard_hash[] = "0123456789abcdef";
    char pb[32];
    for (int i = 0; i < (int)sizeof(pb); i++) pb[i] = (char)(0xA0 + i);

    for (int r = 0; r < N_RETURN_VALUES; r++) {
        reset_last();
        g_ret_value = kReturnValues[r];
        CHECK_EQ(LogtailSendPbV2(config, 6, logstore, 8, pb, 31, 3 + r, shard_hash, 16),
                 kReturnValues[r]);
        CHECK_EQ(g_calls[set_id], 1);
        CHECK_EQ(g_last.set_id, set_id);
        CHECK_EQ(g_last.kind, CALL_SEND_PB_V2);
        CHECK(g_last.config_name == config);
        CHECK_EQ(g_last.config_name_size, 6);
        CHECK(g_last.logstore == logstore);
        CHECK_EQ(g_last.logstore_size, 8);
        CHECK(g_last.pb_buffer == pb);
        CHECK_EQ(g_last.pb_size, 31);
        CHECK_EQ(g_last.lines, 3 + r);
        CHECK(g_last.shard_hash == shard_hash);
        CHECK_EQ(g_last.shard_hash_size, 16);
    }

    /* Empty shard hash. */
    reset_last();
    g_ret_value = 0;
    CHECK_EQ(LogtailSendPbV2(config, 6, logstore, 8, pb, 31, 1, NULL, 0), 0);
    CHECK_EQ(g_calls[set_id], 1);
    CHECK(g_last.shard_hash == NULL);
    CHECK_EQ(g_last.shard_hash_size, 0);
}

static void check_ctl_forwarding(int set_id) {
    const char config[] = "cfg-ctl";
    const char params[] = "{\"x\":1}";
    const int opt_ids[] = {0, 1, -5, INT_MAX, INT_MIN};
    for (int i = 0; i < (int)(sizeof(opt_ids) / sizeof(opt_ids[0])); i++) {
        reset_last();
        g_ret_value = kReturnValues[i % N_RETURN_VALUES];
        CHECK_EQ(LogtailCtlCmd(config, 7, opt_ids[i], params, 7), g_ret_value);
        CHECK_EQ(g_calls[set_id], 1);
        CHECK_EQ(g_last.set_id, set_id);
        CHECK_EQ(g_last.kind, CALL_CTL);
        CHECK(g_last.config_name == config);
        CHECK_EQ(g_last.config_name_size, 7);
        CHECK_EQ(g_last.opt_id, opt_ids[i]);
        CHECK(g_last.params == params);
        CHECK_EQ(g_last.params_len, 7);
    }
}

/* LogtailSendPbV2 with no V2 callback: -1, and no callback of any set runs. */
static void check_send_pb_v2_unregistered(void) {
    char pb[8] = {0};
    reset_last();
    g_ret_value = 7;
    CHECK_EQ(LogtailSendPbV2("cfg", 3, "store", 5, pb, 8, 1, "hash", 4), -1);
    CHECK_EQ(g_calls[SET_A] + g_calls[SET_B], 0);
}

/* ------------------------------------------------------------------------- */
/* Concurrent registration                                                   */
/* ------------------------------------------------------------------------- */

#define N_REGISTER_THREADS 8
#define N_CALLER_THREADS 4
#define N_REGISTRATIONS 10000
#define FINAL_SET N_REGISTER_THREADS /* set index used before and after the race */

#define CONC_KEY 0x0102030405060708LL
static const char kConcConfig[] = "concurrent-config";
static const char kConcLogstore[] = "concurrent-logstore";
static char g_conc_pb[16];

/* Set i returns 100+i from SendPb, 200+i from IsValidToSend, 300+i from
 * SendPbV2 and 400+i from CtlCmd, so any returned value names the set it
 * came from. Each callback also checks it got the caller's arguments. */
static atomic_int g_conc_bad_args;

static int conc_is_valid(int i, long long key) {
    if (key != CONC_KEY) atomic_fetch_add(&g_conc_bad_args, 1);
    return 200 + i;
}

static int conc_send_pb(int i, const char* c, int cs, const char* l, int ls, char* pb, int pbs,
                        int lines) {
    if (c != kConcConfig || cs != (int)strlen(kConcConfig) || l != kConcLogstore ||
        ls != (int)strlen(kConcLogstore) || pb != g_conc_pb || pbs != (int)sizeof(g_conc_pb) ||
        lines != 3)
        atomic_fetch_add(&g_conc_bad_args, 1);
    return 100 + i;
}

#define DEFINE_CONCURRENT_SET(I)                                                        \
    static int conc_is_valid_##I(long long key) { return conc_is_valid(I, key); }      \
    static int conc_send_pb_##I(const char* c, int cs, const char* l, int ls, char* pb, \
                                int pbs, int lines) {                                   \
        return conc_send_pb(I, c, cs, l, ls, pb, pbs, lines);                           \
    }                                                                                   \
    static int conc_send_pb_v2_##I(const char* c, int cs, const char* l, int ls,        \
                                   char* pb, int pbs, int lines, const char* sh,        \
                                   int shs) {                                           \
        (void)c; (void)cs; (void)l; (void)ls; (void)pb; (void)pbs; (void)lines;         \
        (void)sh; (void)shs;                                                            \
        return 300 + I;                                                                 \
    }                                                                                   \
    static int conc_ctl_##I(const char* c, int cs, int opt, const char* p, int pl) {    \
        (void)c; (void)cs; (void)opt; (void)p; (void)pl;                                \
        return 400 + I;                                                                 \
    }

DEFINE_CONCURRENT_SET(0)
DEFINE_CONCURRENT_SET(1)
DEFINE_CONCURRENT_SET(2)
DEFINE_CONCURRENT_SET(3)
DEFINE_CONCURRENT_SET(4)
DEFINE_CONCURRENT_SET(5)
DEFINE_CONCURRENT_SET(6)
DEFINE_CONCURRENT_SET(7)
DEFINE_CONCURRENT_SET(8)

/* Registers set i; even sets use the V2 registration, odd ones V1. */
static void register_concurrent_set(int i) {
#define REGISTER_CASE(I)                                                                   \
    case I:                                                                                \
        if (I % 2 == 0)                                                                    \
            RegisterLogtailCallBackV2(conc_is_valid_##I, conc_send_pb_##I,                 \
                                      conc_send_pb_v2_##I, conc_ctl_##I);                  \
        else                                                                               \
            RegisterLogtailCallBack(conc_is_valid_##I, conc_send_pb_##I, conc_ctl_##I);    \
        break;
    switch (i) {
        REGISTER_CASE(0)
        REGISTER_CASE(1)
        REGISTER_CASE(2)
        REGISTER_CASE(3)
        REGISTER_CASE(4)
        REGISTER_CASE(5)
        REGISTER_CASE(6)
        REGISTER_CASE(7)
        REGISTER_CASE(8)
        default:
            abort();
    }
#undef REGISTER_CASE
}

static atomic_int g_start;  /* every thread spins until this is set */
static atomic_int g_registrars_running;

static void wait_for_start(void) {
    while (!atomic_load(&g_start)) {
    }
}
static atomic_llong g_conc_calls;
static atomic_int g_conc_bad_returns;

static void* registrar_main(void* arg) {
    int i = (int)(long)arg;
    wait_for_start();
    for (int n = 0; n < N_REGISTRATIONS; n++) register_concurrent_set(i);
    atomic_fetch_sub(&g_registrars_running, 1);
    return NULL;
}

static void note_bad_return(const char* what, int value) {
    /* Report only the first few, the counter tells the rest. */
    if (atomic_fetch_add(&g_conc_bad_returns, 1) < 5)
        fprintf(stderr, "FAIL concurrent: %s returned %d, not a registered set's value\n", what,
                value);
}

static void* caller_main(void* arg) {
    (void)arg;
    wait_for_start();
    /* Keep calling until every registrar is done, then a little more. */
    int extra = 1000;
    while (atomic_load(&g_registrars_running) > 0 || extra-- > 0) {
        int r = LogtailSendPb(kConcConfig, (int)strlen(kConcConfig), kConcLogstore,
                              (int)strlen(kConcLogstore), g_conc_pb, (int)sizeof(g_conc_pb), 3);
        if (r < 100 || r > 100 + FINAL_SET) note_bad_return("LogtailSendPb", r);
        r = LogtailIsValidToSend(CONC_KEY);
        if (r < 200 || r > 200 + FINAL_SET) note_bad_return("LogtailIsValidToSend", r);
        r = LogtailCtlCmd("c", 1, 3, "p", 1);
        if (r < 400 || r > 400 + FINAL_SET) note_bad_return("LogtailCtlCmd", r);
        atomic_fetch_add(&g_conc_calls, 3);
    }
    return NULL;
}

static void check_concurrent_registration(void) {
    pthread_t registrars[N_REGISTER_THREADS];
    pthread_t callers[N_CALLER_THREADS];

    /* A set is registered before the race, so -1 is never a valid answer. */
    register_concurrent_set(FINAL_SET);
    atomic_store(&g_registrars_running, N_REGISTER_THREADS);

    for (int i = 0; i < N_CALLER_THREADS; i++)
        CHECK_EQ(pthread_create(&callers[i], NULL, caller_main, NULL), 0);
    for (int i = 0; i < N_REGISTER_THREADS; i++)
        CHECK_EQ(pthread_create(&registrars[i], NULL, registrar_main, (void*)(long)i), 0);
    atomic_store(&g_start, 1);
    for (int i = 0; i < N_REGISTER_THREADS; i++) pthread_join(registrars[i], NULL);
    for (int i = 0; i < N_CALLER_THREADS; i++) pthread_join(callers[i], NULL);

    printf("   %lld forwarding calls during %d registrations\n",
           (long long)atomic_load(&g_conc_calls), N_REGISTER_THREADS * N_REGISTRATIONS);
    CHECK_EQ(atomic_load(&g_conc_bad_returns), 0);
    CHECK_EQ(atomic_load(&g_conc_bad_args), 0);
    CHECK(atomic_load(&g_conc_calls) > 0);

    /* After the race, one final registration wins. */
    register_concurrent_set(FINAL_SET);
    CHECK_EQ(LogtailSendPb(kConcConfig, (int)strlen(kConcConfig), kConcLogstore,
                           (int)strlen(kConcLogstore), g_conc_pb, (int)sizeof(g_conc_pb), 3),
             100 + FINAL_SET);
    CHECK_EQ(LogtailIsValidToSend(CONC_KEY), 200 + FINAL_SET);
    CHECK_EQ(LogtailSendPbV2("c", 1, "l", 1, g_conc_pb, 1, 1, "h", 1), 300 + FINAL_SET);
    CHECK_EQ(LogtailCtlCmd("c", 1, 3, "p", 1), 400 + FINAL_SET);
    CHECK_EQ(atomic_load(&g_conc_bad_args), 0);
}

/* ------------------------------------------------------------------------- */

int main(void) {
    section("version");
    CHECK_EQ(PluginAdapterVersion(), 300);

    section("nothing registered: every forwarding call returns -1");
    check_all_unregistered();

    section("V1 registration forwards exactly");
    RegisterLogtailCallBack(rec_is_valid_1, rec_send_pb_1, rec_ctl_1);
    check_is_valid_forwarding(SET_A);
    check_send_pb_forwarding(SET_A);
    check_ctl_forwarding(SET_A);
    section("V1 registration: LogtailSendPbV2 has no callback");
    check_send_pb_v2_unregistered();

    section("V2 registration forwards exactly");
    RegisterLogtailCallBackV2(rec_is_valid_1, rec_send_pb_1, rec_send_pb_v2_1, rec_ctl_1);
    check_is_valid_forwarding(SET_A);
    check_send_pb_forwarding(SET_A);
    check_send_pb_v2_forwarding(SET_A);
    check_ctl_forwarding(SET_A);

    section("last registration wins (V2 A, then V2 B)");
    RegisterLogtailCallBackV2(rec_is_valid_2, rec_send_pb_2, rec_send_pb_v2_2, rec_ctl_2);
    check_is_valid_forwarding(SET_B);
    check_send_pb_forwarding(SET_B);
    check_send_pb_v2_forwarding(SET_B);
    check_ctl_forwarding(SET_B);

    section("last registration wins (V1 A, then V1 B)");
    RegisterLogtailCallBack(rec_is_valid_1, rec_send_pb_1, rec_ctl_1);
    RegisterLogtailCallBack(rec_is_valid_2, rec_send_pb_2, rec_ctl_2);
    check_is_valid_forwarding(SET_B);
    check_send_pb_forwarding(SET_B);
    check_ctl_forwarding(SET_B);

    section("concurrent registration while forwarding");
    check_concurrent_registration();

    section("NULL callbacks (V2): forwarding returns -1 again");
    RegisterLogtailCallBackV2(NULL, NULL, NULL, NULL);
    check_all_unregistered();

    section("NULL callbacks (V1): forwarding returns -1 again");
    RegisterLogtailCallBack(rec_is_valid_1, rec_send_pb_1, rec_ctl_1);
    g_ret_value = 7;
    CHECK_EQ(LogtailIsValidToSend(1), 7);
    RegisterLogtailCallBack(NULL, NULL, NULL);
    CHECK_EQ(LogtailIsValidToSend(42), -1);
    CHECK_EQ(LogtailSendPb("cfg", 3, "store", 5, NULL, 0, 0), -1);
    CHECK_EQ(LogtailCtlCmd("cfg", 3, 1, "params", 6), -1);

    section("partial registration: only the NULL ones return -1");
    reset_last();
    RegisterLogtailCallBackV2(rec_is_valid_1, NULL, rec_send_pb_v2_1, NULL);
    g_ret_value = 7;
    CHECK_EQ(LogtailIsValidToSend(1), 7);
    CHECK_EQ(LogtailSendPb("cfg", 3, "store", 5, NULL, 0, 0), -1);
    CHECK_EQ(LogtailSendPbV2("cfg", 3, "store", 5, NULL, 0, 0, NULL, 0), 7);
    CHECK_EQ(LogtailCtlCmd("cfg", 3, 1, "params", 6), -1);
    CHECK_EQ(g_calls[SET_A], 2);
    RegisterLogtailCallBackV2(NULL, NULL, NULL, NULL);

    if (g_failures != 0) {
        printf("adaptor_test: FAIL (%d failed checks)\n", g_failures);
        return 1;
    }
    printf("adaptor_test: PASS\n");
    return 0;
}
