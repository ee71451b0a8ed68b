/* The HTTP port: health and readiness endpoints, served by every worker
 * on its own listener, with keep-alive.
 *
 * Requests are read with the http module, routed by a table of (method,
 * path) to a handler, and answered as JSON. A handler fills a wsg_reply; the
 * connection writes it.
 */
#ifndef WSG_ADMIN_H
#define WSG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/list.h"
#include "http/http.h"
#include "net/net.h"
#include "proxy/proxy.h"

typedef struct wsg_admin {
    wsg_worker *worker;
    wsg_gateway *gw;
    wsg_counters *counters; /* this worker's */
    wsg_list conns;
    atomic_uint live;
    bool closing_all;
} wsg_admin;

/* What a handler answers: a status and a JSON body (NUL-terminated). */
typedef struct wsg_reply {
    int status;
    char body[2048];
    const char *extra_headers; /* "" or CRLF-terminated lines */
} wsg_reply;

/* The request a handler sees. */
typedef struct wsg_request {
    const wsg_http_head *head;
    const char *body;
    size_t body_len;
} wsg_request;

void wsg_admin_init(wsg_admin *a, wsg_gateway *gw, wsg_worker *w, wsg_counters *counters);

/* Takes a new connection from the HTTP listener. */
void wsg_admin_accept(wsg_admin *a, int fd, const struct sockaddr_storage *peer);

/* Closes every HTTP connection (shutdown). */
void wsg_admin_close_all(wsg_admin *a);

static inline unsigned wsg_admin_live(const wsg_admin *a)
{
    return atomic_load_explicit(&a->live, memory_order_relaxed);
}

/* health.c: the handlers of /health, /healthz and /readyz. */
void wsg_health_live(const wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_health_ready(const wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_health_summary(const wsg_admin *a, const wsg_request *req, wsg_reply *reply);

#endif
