/* /_pressure: is this process near its limits? Load balancers and
 * orchestrators read it to steer new clients elsewhere before the gateway
 * refuses them (the @fastify/under-pressure route of seed 002). */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "admin/admin.h"

/* Resident memory of the process in bytes, or 0 when unknown. */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (!f)
        return 0;
    int got = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    return got == 2 ? resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* True when `used` is past `percent` of `limit` (0 percent: never). */
static bool past_share(long used, long limit, uint32_t percent)
{
    return percent && limit > 0 && (uint64_t)used * 100 > (uint64_t)limit * percent;
}

/* Appends a reason to the array, formatted. */
static void add_reason(json_t *reasons, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reason(json_t *reasons, const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_array_append_new(reasons, json_string(text));
}

/* Each worker's loop delay; notes those past the threshold. */
static json_t *loop_delays(const wsg_gateway *gw, json_t *reasons)
{
    json_t *delays = json_array();
    uint64_t limit = gw->cfg->pressure_loop_delay;
    for (unsigned i = 0; i < gw->proxy_count; i++) {
        unsigned lag = wsg_worker_loop_lag_ms(gw->proxies[i]->worker);
        json_array_append_new(delays, json_integer(lag));
        if (limit && lag > limit)
            add_reason(reasons, "worker %u event loop %u ms late (limit %llu ms)", i, lag,
                       (unsigned long long)limit);
    }
    return delays;
}

void wsg_pressure(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    const wsg_gateway *gw = a->gw;
    const wsg_config *cfg = gw->cfg;
    json_t *reasons = json_array();
    json_t *delays = loop_delays(gw, reasons);

    uint64_t rss = resident_bytes();
    if (cfg->pressure_rss && rss > cfg->pressure_rss)
        add_reason(reasons, "resident memory %llu bytes (limit %llu)", (unsigned long long)rss,
                   (unsigned long long)cfg->pressure_rss);
    long conns = (long)wsg_gateway_connections(gw);
    if (past_share(conns, gw->max_clients, cfg->pressure_connections))
        add_reason(reasons, "%ld connections of %ld (limit %u %%)", conns, gw->max_clients,
                   cfg->pressure_connections);
    long pending = atomic_load_explicit(&gw->pending, memory_order_relaxed);
    if (past_share(pending, (long)cfg->max_pending, cfg->pressure_connections))
        add_reason(reasons, "%ld pending handshakes of %u (limit %u %%)", pending,
                   cfg->max_pending, cfg->pressure_connections);

    bool pressed = json_array_size(reasons) > 0;
    json_t *body = json_pack(
        "{s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}}", "status",
        pressed ? "under pressure" : "ok", "reasons", reasons, "eventLoopDelayMs", delays,
        "rssBytes", (json_int_t)rss, "connections", (json_int_t)conns, "maxConnections",
        (json_int_t)gw->max_clients, "pendingHandshakes", (json_int_t)pending,
        "maxPendingHandshakes", (json_int_t)cfg->max_pending, "limits", "eventLoopDelayMs",
        (json_int_t)cfg->pressure_loop_delay, "rssBytes", (json_int_t)cfg->pressure_rss,
        "connectionsPercent", (json_int_t)cfg->pressure_connections);
    wsg_reply_json(reply, pressed ? 503 : 200, body);
    if (pressed)
        reply->extra_headers = "Retry-After: 10\r\n";
}
