/* Health endpoints: /healthz (the process answers), /readyz (it can take
 * new sessions), /health (a summary for people and load balancers). */
#include <stdio.h>

#include "admin/admin.h"

/* Backends of the default service that would take a new session now. */
static size_t eligible_backends(const wsg_admin *a)
{
    wsg_service *svc = a->gw->registry->default_service;
    uint64_t now = uv_now(&a->worker->loop);
    size_t n = 0;
    pthread_mutex_lock(&a->gw->registry->lock);
    for (size_t i = 0; i < svc->count; i++)
        n += wsg_backend_eligible(svc->backends[i], now);
    pthread_mutex_unlock(&a->gw->registry->lock);
    return n;
}

static size_t listed_backends(const wsg_admin *a)
{
    pthread_mutex_lock(&a->gw->registry->lock);
    size_t n = a->gw->registry->default_service->count;
    pthread_mutex_unlock(&a->gw->registry->lock);
    return n;
}

void wsg_health_live(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)a;
    (void)req;
    wsg_reply_json(reply, 200, json_pack("{s:s}", "status", "ok"));
}

void wsg_health_ready(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    const char *status = "ready";
    if (atomic_load_explicit(&a->gw->draining, memory_order_relaxed))
        status = "draining";
    else if (eligible_backends(a) == 0)
        status = "no backend available";
    wsg_reply_json(reply, status[0] == 'r' ? 200 : 503, json_pack("{s:s}", "status", status));
}

void wsg_health_summary(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    bool draining = atomic_load_explicit(&a->gw->draining, memory_order_relaxed);
    uint64_t uptime = (wsg_registry_wall_ms() - a->gw->started_ms) / 1000;
    wsg_reply_json(reply, 200,
                   json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "status",
                             draining ? "draining" : "ok", "uptime", (json_int_t)uptime,
                             "connections", (json_int_t)wsg_gateway_connections(a->gw),
                             "backends", (json_int_t)listed_backends(a), "healthyBackends",
                             (json_int_t)eligible_backends(a), "sessions",
                             (json_int_t)wsg_sessions_count(a->gw->sessions)));
}
