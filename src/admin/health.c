/* Health endpoints: /healthz (the process answers), /readyz (it can take
 * new sessions), /health (a summary for people and load balancers). */
#include <stdio.h>
#include <time.h>

#include "admin/admin.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Backends of the default service that would take a new session now. */
static size_t eligible_backends(const wsg_admin *a)
{
    const wsg_service *svc = a->gw->registry->default_service;
    uint64_t now = uv_now(&a->worker->loop);
    size_t n = 0;
    for (size_t i = 0; i < svc->count; i++) {
        wsg_backend *b = svc->backends[i];
        bool suspect = atomic_load_explicit(&b->suspect_until, memory_order_relaxed) > now;
        bool full = b->max_connections &&
                    atomic_load_explicit(&b->active, memory_order_relaxed) >= b->max_connections;
        if (!suspect && !full)
            n++;
    }
    return n;
}

void wsg_health_live(const wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)a;
    (void)req;
    reply->status = 200;
    snprintf(reply->body, sizeof(reply->body), "{\"status\":\"ok\"}\n");
}

void wsg_health_ready(const wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    const char *status = "ready";
    if (atomic_load_explicit(&a->gw->draining, memory_order_relaxed))
        status = "draining";
    else if (eligible_backends(a) == 0)
        status = "no backend available";
    reply->status = status[0] == 'r' ? 200 : 503;
    snprintf(reply->body, sizeof(reply->body), "{\"status\":\"%s\"}\n", status);
}

void wsg_health_summary(const wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)req;
    bool draining = atomic_load_explicit(&a->gw->draining, memory_order_relaxed);
    uint64_t uptime = (wall_ms() - a->gw->started_ms) / 1000;
    reply->status = 200;
    snprintf(reply->body, sizeof(reply->body),
             "{\"status\":\"%s\",\"uptime\":%llu,\"connections\":%u,\"backends\":%zu,"
             "\"healthyBackends\":%zu}\n",
             draining ? "draining" : "ok", (unsigned long long)uptime, wsg_gateway_connections(a->gw),
             a->gw->registry->default_service->count, eligible_backends(a));
}
