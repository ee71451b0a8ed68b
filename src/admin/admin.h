/* The HTTP port: backend registration, operations (drain), health and
 * readiness, served by every worker on its own listener, with keep-alive.
 *
 * Requests are read with the http module and routed by (method, path) to a
 * handler. A handler fills a wsg_reply at once, or defers it (a DNS lookup
 * under way) and finishes it later with wsg_admin_finish.
 */
#ifndef WSG_ADMIN_H
#define WSG_ADMIN_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/list.h"
#include "http/http.h"
#include "net/net.h"
#include "proxy/proxy.h"

/* State every worker's admin shares: dashboard logins, the login rate
 * limit, and the history the dashboard charts. Guarded by its own lock;
 * touched by admin requests and a sampler, never by the message path. */
#define WSG_LOGIN_SESSIONS 256
#define WSG_LOGIN_LIMITS 256
#define WSG_HISTORY_POINTS 300

typedef struct wsg_login {
    char token[65];      /* hex; "" when the slot is free */
    uint64_t expires_ms; /* monotonic */
} wsg_login;

typedef struct wsg_login_limit {
    wsg_peer who;
    double tokens;
    uint64_t at_ms;
} wsg_login_limit;

typedef struct wsg_history_point {
    uint64_t timestamp_ms; /* wall clock */
    uint32_t connections;
    uint32_t backends;
    double messages_per_second;
} wsg_history_point;

typedef struct wsg_admin_shared {
    pthread_mutex_t lock;
    wsg_login logins[WSG_LOGIN_SESSIONS];
    wsg_login_limit limits[WSG_LOGIN_LIMITS];
    wsg_history_point history[WSG_HISTORY_POINTS];
    size_t history_next;
    uint64_t last_messages;  /* messages total at the last sample */
    uint64_t last_sample_ms; /* monotonic */
} wsg_admin_shared;

void wsg_admin_shared_init(wsg_admin_shared *s);
void wsg_admin_shared_deinit(wsg_admin_shared *s);

/* Takes one history sample (call every few seconds from one thread). */
void wsg_admin_sample(wsg_admin_shared *s, const wsg_gateway *gw);

typedef struct wsg_admin {
    wsg_worker *worker;
    wsg_gateway *gw;
    wsg_admin_shared *shared;
    wsg_counters *counters; /* this worker's */
    wsg_list conns;
    atomic_uint live;
    bool closing_all;
} wsg_admin;

typedef struct wsg_http_conn wsg_http_conn;

/* What a handler answers. status 0 means "deferred". */
typedef struct wsg_reply {
    int status;
    char *body;                /* malloc'd; the connection frees it */
    const char *content_type;  /* NULL: application/json */
    const char *extra_headers; /* NULL or CRLF-terminated lines */
} wsg_reply;

/* The request a handler sees; valid until the handler returns. */
typedef struct wsg_request {
    const wsg_http_head *head;
    const char *body;
    size_t body_len;
    const wsg_peer *peer;
    wsg_http_conn *conn;
    bool tls; /* the request came over TLS */
} wsg_request;

void wsg_admin_init(wsg_admin *a, wsg_gateway *gw, wsg_admin_shared *shared, wsg_worker *w,
                    wsg_counters *counters);

/* Takes a new connection from the HTTP listener, or (admin_port) from the
 * ADMIN_BIND listener. With ADMIN_BIND set, the admin API, the dashboard and
 * the metrics answer on the admin listener only. */
void wsg_admin_accept(wsg_admin *a, int fd, const struct sockaddr_storage *peer, bool admin_port,
                      bool tls);

/* Closes every HTTP connection (shutdown). */
void wsg_admin_close_all(wsg_admin *a);

static inline unsigned wsg_admin_live(const wsg_admin *a)
{
    return atomic_load_explicit(&a->live, memory_order_relaxed);
}

/* Defers the reply of the request on conn. The connection writes NULL into
 * *slot if it goes away first, so the finisher knows not to answer. */
void wsg_admin_defer(wsg_http_conn *conn, wsg_http_conn **slot);

/* Sends a deferred reply and goes on with the connection. */
void wsg_admin_finish(wsg_http_conn *conn, wsg_reply *reply);

/* ---- replies ---------------------------------------------------------- */

/* Sets a JSON reply from obj (the reference is taken). */
void wsg_reply_json(wsg_reply *r, int status, json_t *obj);

/* Sets {"success": false, "error": message, "message": message}. */
void wsg_reply_error(wsg_reply *r, int status, const char *message);

/* ---- authentication (auth.c) -------------------------------------------- */

/* True when the request carries the gateway key: "authKey" in the JSON
 * body, "Authorization: Bearer <key>", or a live dashboard_session cookie.
 * Compared in constant time. */
bool wsg_admin_authorized(const wsg_admin *a, const wsg_request *req, const json_t *body);

/* Compares a candidate with the gateway key in constant time. */
bool wsg_admin_key_matches(const wsg_admin *a, const char *candidate, size_t len);

/* ---- handlers ------------------------------------------------------------ */

/* dashboard.c: the page and its assets, embedded in the binary */
void wsg_dashboard_page(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_dashboard_script(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_dashboard_style(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* login.c: POST /api/login, /api/logout, GET /api/history */
void wsg_api_login(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_logout(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_history(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
/* True when the request has a live dashboard_session cookie. */
bool wsg_login_valid(wsg_admin *a, const wsg_request *req);

/* health.c: /health, /healthz, /readyz */
void wsg_health_live(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_health_ready(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_health_summary(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* /_pressure: event-loop delay per worker, memory, connections against
 * limits; 503 with the reasons when one is past its threshold. */
void wsg_pressure(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* register.c: the seed-000 registration API */
void wsg_api_register(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_heartbeat(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_unregister(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* prometheus.c: GET /metrics */
void wsg_api_metrics(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* stats.c: GET /api/stats */
void wsg_api_stats(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* connections.c: GET /api/connections, POST /disconnect */
void wsg_api_connections(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_disconnect(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* drain.c: POST /drain and /undrain */
void wsg_api_drain(wsg_admin *a, const wsg_request *req, wsg_reply *reply);
void wsg_api_undrain(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

#endif
