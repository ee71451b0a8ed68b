/* GET /api/stats in seed 000's shape, so its dashboards and scripts read
 * wsgate unchanged:
 *
 *   {"timestamp", "totalServers", "healthyServers", "totalActiveSessions",
 *    "totalMigrations", "recentMigrations": [{timestamp, fromServer,
 *    toServer, clientCount}], "servers": [{id, host, publicHost, port,
 *    wsPort, activeConnections, reportedConnections, maxConnections,
 *    lastHeartbeat, cpuUsage, ramUsage, ramTotal, latency, status}]}
 *
 * activeConnections is the gateway's own live count; the heartbeat's figure
 * is reportedConnections. status is healthy, unhealthy (a failed dial made
 * it suspect, or its heartbeats are late), draining or down.
 */
#include <stdio.h>

#include "admin/admin.h"

#define RECENT_MIGRATIONS 20

typedef struct stats_ctx {
    json_t *servers;
    uint64_t now;
    size_t total;
    size_t healthy;
} stats_ctx;

static const char *status_of(const wsg_backend *b, uint64_t now)
{
    switch (wsg_backend_state_of(b)) {
    case WSG_BACKEND_DOWN:
        return "down";
    case WSG_BACKEND_DRAINING:
        return "draining";
    default:
        break;
    }
    bool suspect = atomic_load_explicit(&((wsg_backend *)b)->suspect_until,
                                        memory_order_relaxed) > now;
    return suspect || b->heartbeat_late ? "unhealthy" : "healthy";
}

static json_t *number_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

/* Runs under the registry lock (wsg_registry_each). */
static void add_server(void *ctx, const wsg_service *s, const wsg_backend *b)
{
    stats_ctx *c = ctx;
    const char *status = status_of(b, c->now);
    unsigned latency_us = atomic_load_explicit(&((wsg_backend *)b)->latency_us,
                                               memory_order_relaxed);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:f, s:s, s:s, s:s, s:I, "
        "s:I, s:b}",
        "id", b->id, "host", b->host, "publicHost", b->public_host, "port", b->http_port,
        "wsPort", b->ws_port, "activeConnections",
        (json_int_t)atomic_load_explicit(&((wsg_backend *)b)->active, memory_order_relaxed),
        "reportedConnections", (json_int_t)b->reported_connections, "maxConnections",
        (json_int_t)b->max_connections, "lastHeartbeat", (json_int_t)b->heartbeat_ms,
        "cpuUsage", number_or_null(b->cpu_usage), "ramUsage", number_or_null(b->ram_usage),
        "ramTotal", number_or_null(b->ram_total), "latency", latency_us / 1000.0, "status",
        status, "service", s->name, "group", b->group, "migrationsIn",
        (json_int_t)atomic_load_explicit(&((wsg_backend *)b)->migrations_in,
                                         memory_order_relaxed),
        "migrationsOut",
        (json_int_t)atomic_load_explicit(&((wsg_backend *)b)->migrations_out,
                                         memory_order_relaxed),
        "static", b->is_static);
    if (o)
        json_array_append_new(c->servers, o);
    c->total++;
    c->healthy += status[0] == 'h';
}

void wsg_api_stats(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    if (!wsg_admin_authorized(a, req, NULL)) {
        wsg_reply_error(reply, 401, "Invalid authentication key");
        return;
    }
    stats_ctx c = {.servers = json_array(), .now = uv_now(&a->worker->loop)};
    wsg_registry_each(a->gw->registry, add_server, &c);

    wsg_migration recent[RECENT_MIGRATIONS];
    uint64_t total_migrations = 0;
    size_t n = wsg_registry_recent_migrations(a->gw->registry, recent, RECENT_MIGRATIONS,
                                              &total_migrations);
    json_t *migrations = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(migrations,
                              json_pack("{s:I, s:s, s:s, s:I}", "timestamp",
                                        (json_int_t)recent[i].timestamp_ms, "fromServer",
                                        recent[i].from, "toServer", recent[i].to, "clientCount",
                                        (json_int_t)recent[i].clients));
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "timestamp",
                             (json_int_t)wsg_registry_wall_ms(), "totalServers",
                             (json_int_t)c.total, "healthyServers", (json_int_t)c.healthy,
                             "totalActiveSessions",
                             (json_int_t)wsg_gateway_connections(a->gw), "stickySessions",
                             (json_int_t)wsg_sessions_count(a->gw->sessions), "totalMigrations",
                             (json_int_t)total_migrations, "recentMigrations", migrations,
                             "servers", c.servers));
}
