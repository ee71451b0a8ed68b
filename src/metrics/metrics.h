/* Per-thread counters and histograms, summed when read, and the
 * Prometheus text format (0.0.4) they are shown in.
 *
 * Each worker owns one wsg_counters and is the only thread that writes it;
 * readers (the metrics endpoint, health) load each value and add the
 * workers up. Writes are a relaxed load and store, not a read-modify-write,
 * so the message path never takes a lock or a locked instruction, and
 * readers still see whole values (no torn reads, no data race in C11
 * terms).
 */
#ifndef WSG_METRICS_H
#define WSG_METRICS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef enum wsg_counter {
    WSG_C_CONNECTIONS_OPENED,   /* WebSocket sessions established */
    WSG_C_CONNECTIONS_CLOSED,   /* ... and ended */
    WSG_C_CONNECTIONS_REFUSED,  /* turned away at the descriptor or connection limit */
    WSG_C_HANDSHAKES_REJECTED,  /* client upgrade requests answered 4xx */
    WSG_C_HANDSHAKES_FAILED,    /* 5xx: no backend, unreachable, bad answer, timeout */
    WSG_C_MESSAGES_FROM_CLIENTS,
    WSG_C_MESSAGES_FROM_BACKENDS,
    WSG_C_BYTES_FROM_CLIENTS,
    WSG_C_BYTES_FROM_BACKENDS,
    WSG_C_PROTOCOL_ERRORS,      /* frames that broke RFC 6455 (either side) */
    WSG_C_SLOW_CONSUMERS,       /* peers closed for staying over the high-water mark */
    WSG_C_PING_TIMEOUTS,        /* peers closed for not answering a ping */
    WSG_C_IDLE_TIMEOUTS,
    WSG_C_BACKPRESSURE_PAUSES,  /* times one side stopped being read */
    WSG_C_HTTP_REQUESTS,        /* requests served on the HTTP port */
    WSG_C_MIGRATIONS,           /* sessions moved to another backend, client kept */
    WSG_C_MIGRATIONS_FAILED,    /* moves that ended the session (1011, 1013) */
    WSG_C_MIGRATION_DROPPED,    /* client messages cut by a move and dropped */
    WSG_C_MIGRATION_LOST_BYTES, /* bytes queued for a failed backend, lost with it */
    WSG_C_MIGRATION_UNANSWERED, /* messages a failed backend got after its last answer */
    WSG_C_RATE_LIMITED,         /* upgrades and HTTP requests answered 429 */
    WSG_C_MESSAGES_DROPPED,     /* client messages over MESSAGE_RATE, dropped */
    WSG_C_HTTP_PROXY_REFUSED,   /* /api and /sse requests answered by the gateway: unknown
                                   service, no backend (backends count the others) */
    WSG_C__COUNT,
} wsg_counter;

/* Histogram bounds, in microseconds, fixed at compile time so that the
 * workers' copies add up bucket by bucket. */
#define WSG_LATENCY_BUCKETS 12
#define WSG_DURATION_BUCKETS 12

typedef struct wsg_histogram_def {
    const uint64_t *bounds_us;
    size_t count;
} wsg_histogram_def;

extern const wsg_histogram_def wsg_latency_def;  /* gateway-added message latency */
extern const wsg_histogram_def wsg_duration_def; /* connection lifetimes */

typedef struct wsg_histogram {
    _Atomic uint64_t buckets[WSG_DURATION_BUCKETS > WSG_LATENCY_BUCKETS ? WSG_DURATION_BUCKETS
                                                                        : WSG_LATENCY_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} wsg_histogram;

typedef struct wsg_counters {
    alignas(64) _Atomic uint64_t v[WSG_C__COUNT];
    wsg_histogram latency;
    wsg_histogram duration;
} wsg_counters;

/* Adds n; only the owning thread may call it. */
static inline void wsg_count(wsg_counters *c, wsg_counter which, uint64_t n)
{
    uint64_t cur = atomic_load_explicit(&c->v[which], memory_order_relaxed);
    atomic_store_explicit(&c->v[which], cur + n, memory_order_relaxed);
}

static inline uint64_t wsg_counter_read(const wsg_counters *c, wsg_counter which)
{
    return atomic_load_explicit(&c->v[which], memory_order_relaxed);
}

/* Counts one observation; only the owning thread may call it. */
void wsg_observe(wsg_histogram *h, const wsg_histogram_def *def, uint64_t us);

/* ---- Prometheus text format ------------------------------------------- */

/* Each writer appends to *out and returns 0, or -1 when memory ran out
 * (the scrape fails, the gateway does not). */

int wsg_prom_family(wsg_buf **out, const char *name, const char *type, const char *help);

/* One sample; labels is "" or `key="value",...` already escaped. */
int wsg_prom_sample(wsg_buf **out, const char *name, const char *labels, double value);

/* A whole histogram (sums of all workers' copies): _bucket lines with le=,
 * _sum and _count, values in seconds. */
int wsg_prom_histogram(wsg_buf **out, const char *name, const char *labels,
                       const wsg_histogram_def *def, const uint64_t *buckets, uint64_t count,
                       uint64_t sum_us);

/* Escapes a label value (backslash, quote, newline) into out. */
void wsg_prom_label_value(char *out, size_t outlen, const char *value);

#endif
