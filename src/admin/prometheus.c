/* GET /metrics: the Prometheus text format (0.0.4).
 *
 * Seed 001's names come first, so its Grafana dashboards work unchanged
 * (websocket_connections_total is, as there, the number of connections
 * open now, hence a gauge); wsgate_* names follow the usual conventions.
 * Labels are bounded: backends and services, never clients.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"

typedef struct totals {
    uint64_t v[WSG_C__COUNT];
    uint64_t latency[WSG_LATENCY_BUCKETS];
    uint64_t latency_count;
    uint64_t latency_sum;
    uint64_t duration[WSG_DURATION_BUCKETS];
    uint64_t duration_count;
    uint64_t duration_sum;
} totals;

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void sum_workers(const wsg_gateway *gw, totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned w = 0; w < gw->proxy_count; w++) {
        const wsg_counters *c = &gw->proxies[w]->counters;
        for (int i = 0; i < WSG_C__COUNT; i++)
            t->v[i] += load(&c->v[i]);
        for (int i = 0; i < WSG_LATENCY_BUCKETS; i++)
            t->latency[i] += load(&c->latency.buckets[i]);
        for (int i = 0; i < WSG_DURATION_BUCKETS; i++)
            t->duration[i] += load(&c->duration.buckets[i]);
        t->latency_count += load(&c->latency.count);
        t->latency_sum += load(&c->latency.sum_us);
        t->duration_count += load(&c->duration.count);
        t->duration_sum += load(&c->duration.sum_us);
    }
}

/* One family with one sample. */
static int single(wsg_buf **out, const char *name, const char *type, const char *help,
                  double value)
{
    return wsg_prom_family(out, name, type, help) | wsg_prom_sample(out, name, "", value);
}

static int seed_names(wsg_buf **out, const totals *t, unsigned active)
{
    int rc = single(out, "websocket_connections_total", "gauge",
                    "WebSocket connections open now (seed 001's name)", active);
    rc |= wsg_prom_family(out, "websocket_messages_total", "counter",
                          "WebSocket messages relayed, by direction");
    rc |= wsg_prom_sample(out, "websocket_messages_total", "direction=\"inbound\"",
                          (double)t->v[WSG_C_MESSAGES_FROM_CLIENTS]);
    rc |= wsg_prom_sample(out, "websocket_messages_total", "direction=\"outbound\"",
                          (double)t->v[WSG_C_MESSAGES_FROM_BACKENDS]);
    rc |= wsg_prom_family(out, "websocket_message_latency_seconds", "histogram",
                          "Time the gateway adds to a message: from its read to its write "
                          "(one read in eight is timed)");
    rc |= wsg_prom_histogram(out, "websocket_message_latency_seconds", "", &wsg_latency_def,
                             t->latency, t->latency_count, t->latency_sum);
    rc |= wsg_prom_family(out, "websocket_connection_duration_seconds", "histogram",
                          "Lifetime of WebSocket connections that ended");
    rc |= wsg_prom_histogram(out, "websocket_connection_duration_seconds", "",
                             &wsg_duration_def, t->duration, t->duration_count,
                             t->duration_sum);
    static const struct {
        const char *type;
        wsg_counter c;
    } errors[] = {
        {"protocol", WSG_C_PROTOCOL_ERRORS},
        {"slow_consumer", WSG_C_SLOW_CONSUMERS},
        {"ping_timeout", WSG_C_PING_TIMEOUTS},
        {"idle_timeout", WSG_C_IDLE_TIMEOUTS},
        {"handshake_rejected", WSG_C_HANDSHAKES_REJECTED},
        {"handshake_failed", WSG_C_HANDSHAKES_FAILED},
        {"refused", WSG_C_CONNECTIONS_REFUSED},
        {"migration_failed", WSG_C_MIGRATIONS_FAILED},
        {"rate_limited", WSG_C_RATE_LIMITED},
    };
    rc |= wsg_prom_family(out, "websocket_errors_total", "counter",
                          "Connections ended or refused because something went wrong, by type");
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "type=\"%s\"", errors[i].type);
        rc |= wsg_prom_sample(out, "websocket_errors_total", labels, (double)t->v[errors[i].c]);
    }
    return rc;
}

static int gateway_names(wsg_buf **out, const wsg_admin *a, const totals *t, unsigned active)
{
    static const struct {
        const char *name;
        const char *help;
        wsg_counter c;
    } counters[] = {
        {"wsgate_connections_opened_total", "WebSocket sessions established",
         WSG_C_CONNECTIONS_OPENED},
        {"wsgate_connections_closed_total", "WebSocket sessions ended", WSG_C_CONNECTIONS_CLOSED},
        {"wsgate_connections_refused_total",
         "Clients turned away at accept: descriptor, connection or pending-handshake limit, "
         "drain or shutdown",
         WSG_C_CONNECTIONS_REFUSED},
        {"wsgate_handshakes_rejected_total",
         "Upgrades refused: a 4xx of the gateway's, or the backend's own non-101 answer",
         WSG_C_HANDSHAKES_REJECTED},
        {"wsgate_handshakes_failed_total",
         "Upgrades that failed on the backend side (502, 503, 504)", WSG_C_HANDSHAKES_FAILED},
        {"wsgate_protocol_errors_total", "Frames that broke RFC 6455", WSG_C_PROTOCOL_ERRORS},
        {"wsgate_slow_consumers_total",
         "Peers closed for staying above the write high-water "
         "mark",
         WSG_C_SLOW_CONSUMERS},
        {"wsgate_ping_timeouts_total", "Peers closed for not answering a ping",
         WSG_C_PING_TIMEOUTS},
        {"wsgate_backpressure_pauses_total",
         "Times one side stopped being read because the "
         "other was slow",
         WSG_C_BACKPRESSURE_PAUSES},
        {"wsgate_migrations_total", "Sessions moved to another backend, client kept",
         WSG_C_MIGRATIONS},
        {"wsgate_migrations_failed_total", "Moves that ended the session (1011 or 1013)",
         WSG_C_MIGRATIONS_FAILED},
        {"wsgate_migration_dropped_messages_total", "Client messages cut by a move and dropped",
         WSG_C_MIGRATION_DROPPED},
        {"wsgate_migration_lost_bytes_total",
         "Client bytes lost in moves: queued for a failed backend, or held for a session that "
         "could not move",
         WSG_C_MIGRATION_LOST_BYTES},
        {"wsgate_migration_unanswered_messages_total",
         "Client messages a failed backend was sent after the last bytes it sent back: "
         "possibly lost with it",
         WSG_C_MIGRATION_UNANSWERED},
        {"wsgate_http_requests_total", "Requests served on the HTTP port", WSG_C_HTTP_REQUESTS},
        {"wsgate_rate_limited_total", "Upgrades and HTTP requests answered 429",
         WSG_C_RATE_LIMITED},
        {"wsgate_messages_dropped_total", "Client messages over MESSAGE_RATE, dropped",
         WSG_C_MESSAGES_DROPPED},
        {"wsgate_http_proxy_refused_total",
         "/api and /sse requests the gateway answered itself: unknown service, no backend",
         WSG_C_HTTP_PROXY_REFUSED},
    };
    int rc = single(out, "wsgate_connections_active", "gauge", "WebSocket connections open now",
                    active);
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        rc |= single(out, counters[i].name, "counter", counters[i].help,
                     (double)t->v[counters[i].c]);
    rc |= wsg_prom_family(out, "wsgate_bytes_total", "counter", "Bytes received, by side");
    rc |= wsg_prom_sample(out, "wsgate_bytes_total", "from=\"clients\"",
                          (double)t->v[WSG_C_BYTES_FROM_CLIENTS]);
    rc |= wsg_prom_sample(out, "wsgate_bytes_total", "from=\"backends\"",
                          (double)t->v[WSG_C_BYTES_FROM_BACKENDS]);
    rc |= single(out, "wsgate_sticky_sessions", "gauge",
                 "Sticky sessions remembered (connected or not)",
                 (double)wsg_sessions_count(a->gw->sessions));
    rc |= single(out, "wsgate_draining", "gauge", "1 while the gateway drains",
                 atomic_load(&a->gw->draining) ? 1 : 0);
    rc |= single(out, "wsgate_uptime_seconds", "gauge", "Seconds since the gateway started",
                 (double)(wsg_registry_wall_ms() - a->gw->started_ms) / 1000);
    return rc;
}

/* ---- per backend ---------------------------------------------------------- */

typedef struct row {
    char labels[256];
    double up;
    double connections;
    double sessions;
    double migrations_in;
    double migrations_out;
    double handshakes[3]; /* ok, failed, refused */
    double http[5];       /* proxied requests by status class */
    double bytes_in;
    double bytes_out;
    double pauses;
    double heartbeat_age; /* -1: configured backend, no heartbeats */
    double latency;
} row;

typedef struct rows {
    row *list;
    size_t count;
    size_t cap;
    unsigned workers;
    uint64_t mono;
} rows;

/* Runs under the registry lock. */
static void collect(void *ctx, const wsg_service *s, const wsg_backend *cb)
{
    rows *rs = ctx;
    wsg_backend *b = (wsg_backend *)cb;
    if (rs->count == rs->cap)
        return;
    row *r = &rs->list[rs->count++];
    char id[100];
    char svc[100];
    wsg_prom_label_value(id, sizeof(id), b->id);
    wsg_prom_label_value(svc, sizeof(svc), s->name);
    snprintf(r->labels, sizeof(r->labels), "backend=\"%s\",service=\"%s\"", id, svc);
    r->up = wsg_backend_state_of(b) == WSG_BACKEND_UP ? 1 : 0;
    r->connections = atomic_load_explicit(&b->active, memory_order_relaxed);
    r->sessions = atomic_load_explicit(&b->sticky, memory_order_relaxed);
    r->migrations_in = (double)atomic_load_explicit(&b->migrations_in, memory_order_relaxed);
    r->migrations_out = (double)atomic_load_explicit(&b->migrations_out, memory_order_relaxed);
    r->latency = atomic_load_explicit(&b->latency_us, memory_order_relaxed) / 1e6;
    r->heartbeat_age = b->is_static ? -1 : (double)(rs->mono - b->heartbeat_mono) / 1000;
    for (unsigned w = 0; w < rs->workers; w++) {
        const wsg_backend_stats *st = &b->stats[w];
        r->handshakes[0] += (double)load(&st->handshakes_ok);
        r->handshakes[1] += (double)load(&st->handshakes_failed);
        r->handshakes[2] += (double)load(&st->handshakes_refused);
        r->bytes_in += (double)load(&st->bytes_in);
        r->bytes_out += (double)load(&st->bytes_out);
        r->pauses += (double)load(&st->backpressure_pauses);
        for (int k = 0; k < 5; k++)
            r->http[k] += (double)load(&st->http_requests[k]);
    }
}

#define FIELD(f) offsetof(row, f)

static int backend_names(wsg_buf **out, const rows *rs)
{
    static const struct {
        const char *name;
        const char *type;
        const char *help;
        size_t field;
    } families[] = {
        {"wsgate_backend_up", "gauge", "1 when the backend takes new sessions", FIELD(up)},
        {"wsgate_backend_connections", "gauge", "Live sessions through this gateway",
         FIELD(connections)},
        {"wsgate_backend_sessions", "gauge", "Sticky sessions assigned to the backend",
         FIELD(sessions)},
        {"wsgate_backend_backpressure_pauses_total", "counter",
         "Times a session on the backend stopped a side for backpressure", FIELD(pauses)},
        {"wsgate_backend_latency_seconds", "gauge",
         "Smoothed time to dial the backend and get its 101 (or to connect, for checks)",
         FIELD(latency)},
    };
    int rc = 0;
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        rc |= wsg_prom_family(out, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < rs->count; i++) {
            double v; /* the double member at that offset */
            memcpy(&v, (const char *)&rs->list[i] + families[f].field, sizeof(v));
            rc |= wsg_prom_sample(out, families[f].name, rs->list[i].labels, v);
        }
    }
    static const char *const results[] = {"ok", "failed", "refused"};
    char labels[sizeof(((row *)0)->labels) + 32];
    rc |= wsg_prom_family(out, "wsgate_backend_handshakes_total", "counter",
                          "Backend upgrade handshakes, by result");
    for (size_t i = 0; i < rs->count; i++) {
        for (int k = 0; k < 3; k++) {
            snprintf(labels, sizeof(labels), "%s,result=\"%s\"", rs->list[i].labels, results[k]);
            rc |= wsg_prom_sample(out, "wsgate_backend_handshakes_total", labels,
                                  rs->list[i].handshakes[k]);
        }
    }
    rc |= wsg_prom_family(out, "wsgate_backend_http_requests_total", "counter",
                          "HTTP and SSE requests proxied to the backend, by status class");
    for (size_t i = 0; i < rs->count; i++) {
        for (int k = 0; k < 5; k++) {
            snprintf(labels, sizeof(labels), "%s,code=\"%dxx\"", rs->list[i].labels, k + 1);
            rc |= wsg_prom_sample(out, "wsgate_backend_http_requests_total", labels,
                                  rs->list[i].http[k]);
        }
    }
    rc |= wsg_prom_family(out, "wsgate_backend_migrations_total", "counter",
                          "Sessions moved onto (in) or away from (out) the backend");
    for (size_t i = 0; i < rs->count; i++) {
        snprintf(labels, sizeof(labels), "%s,direction=\"in\"", rs->list[i].labels);
        rc |= wsg_prom_sample(out, "wsgate_backend_migrations_total", labels,
                              rs->list[i].migrations_in);
        snprintf(labels, sizeof(labels), "%s,direction=\"out\"", rs->list[i].labels);
        rc |= wsg_prom_sample(out, "wsgate_backend_migrations_total", labels,
                              rs->list[i].migrations_out);
    }
    rc |= wsg_prom_family(out, "wsgate_backend_bytes_total", "counter",
                          "Bytes from (in) and to (out) the backend");
    for (size_t i = 0; i < rs->count; i++) {
        snprintf(labels, sizeof(labels), "%s,direction=\"in\"", rs->list[i].labels);
        rc |= wsg_prom_sample(out, "wsgate_backend_bytes_total", labels, rs->list[i].bytes_in);
        snprintf(labels, sizeof(labels), "%s,direction=\"out\"", rs->list[i].labels);
        rc |= wsg_prom_sample(out, "wsgate_backend_bytes_total", labels, rs->list[i].bytes_out);
    }
    rc |= wsg_prom_family(out, "wsgate_backend_heartbeat_age_seconds", "gauge",
                          "Seconds since the backend's last heartbeat (registered backends)");
    for (size_t i = 0; i < rs->count; i++) {
        if (rs->list[i].heartbeat_age >= 0)
            rc |= wsg_prom_sample(out, "wsgate_backend_heartbeat_age_seconds", rs->list[i].labels,
                                  rs->list[i].heartbeat_age);
    }
    return rc;
}

void wsg_api_metrics(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    totals t;
    wsg_buf *out = NULL;
    rows rs = {.cap = 1024, .workers = a->gw->proxy_count, .mono = wsg_registry_mono_ms()};
    rs.list = calloc(rs.cap, sizeof(*rs.list));
    unsigned active = wsg_gateway_connections(a->gw);
    sum_workers(a->gw, &t);
    int rc = rs.list ? 0 : -1;
    if (rs.list)
        wsg_registry_each(a->gw->registry, collect, &rs);
    rc |= seed_names(&out, &t, active);
    rc |= gateway_names(&out, a, &t, active);
    rc |= backend_names(&out, &rs);
    rc |= wsg_buf_append(&out, "", 1);
    free(rs.list);
    if (rc != 0) {
        wsg_buf_free(&out);
        wsg_reply_error(reply, 503, "out of memory");
        return;
    }
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply->body = strdup((const char *)wsg_buf_begin(out));
    wsg_buf_free(&out);
    if (reply->body == NULL)
        wsg_reply_error(reply, 503, "out of memory");
}
