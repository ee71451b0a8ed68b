/* WebSocket proxying: client upgrade, backend dial and handshake, and the
 * frame-aware bridge between the two.
 *
 * A wsg_gateway is the process-wide context (configuration, registry,
 * limits), read-mostly and shared by all workers. A wsg_proxy is one
 * worker's share: its connections, counters and policies; only that
 * worker's thread touches it, except the `live` count and the counters,
 * which other threads may read.
 */
#ifndef WSG_PROXY_H
#define WSG_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/list.h"
#include "core/pool.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "net/net.h"
#include "registry/registry.h"
#include "registry/sessions.h"
#include "ws/ws.h"

typedef struct wsg_gateway {
    const wsg_config *cfg;
    wsg_registry *registry;
    wsg_sessions *sessions;
    wsg_fd_budget fds;
    atomic_long clients;     /* WebSocket clients now, all workers */
    long max_clients;        /* from --max-connections and the file limit */
    wsg_cidr *trusted;       /* proxies whose X-Forwarded-For is believed */
    size_t trusted_count;
    uint8_t ping_token[4];   /* marks the gateway's own pings */
    atomic_bool draining;    /* drained or shutting down: no new sessions, readiness 503 */
    atomic_bool stopping;    /* shutting down (SIGTERM): an undrain cannot undo it */
    uint64_t started_ms;     /* wall clock, for uptime */
    struct wsg_proxy **proxies; /* every worker's share, for totals */
    unsigned proxy_count;
    wsg_clients *addresses;      /* limits per client address */
    wsg_cidr *registration_nets; /* who may register; NULL: anyone with the key */
    size_t registration_net_count;
    atomic_long pending;         /* connections still in their upgrade */
    wsg_tls_server *tls;         /* server certificates; NULL without TLS */
    struct ssl_ctx_st *tls_client; /* for wss:// backends */
} wsg_gateway;

typedef struct wsg_proxy {
    wsg_counters counters;
    wsg_pool client_handshakes;   /* client_hs: the state of upgrading clients */
    wsg_pool backend_handshakes;  /* upstream_hs: dials under way */
    wsg_worker *worker;
    wsg_gateway *gw;
    wsg_ws_policy from_client;
    wsg_ws_policy from_backend;
    wsg_list bridges;        /* every connection of this worker */
    atomic_uint live;        /* entries in `bridges` */
    uint64_t next_seq;
    uint64_t refused_logged_at;
    unsigned dials_in_flight; /* migration dials under way */
    wsg_list dial_queue;      /* moving sessions waiting for a dial slot (migrate.c) */
    unsigned sample;          /* picks the reads whose latency is timed */
    unsigned moving;          /* sessions between two backends */
    bool closing_all;
} wsg_proxy;

/* Sets up a worker's proxy state, before its thread starts. */
void wsg_proxy_init(wsg_proxy *p, wsg_gateway *gw, wsg_worker *w);

/* Frees what is left once the worker's loop has ended. */
void wsg_proxy_deinit(wsg_proxy *p);

/* Takes a new client connection from the WebSocket listener; `tls` when
 * that listener speaks TLS. */
void wsg_proxy_accept(wsg_proxy *p, int fd, const struct sockaddr_storage *peer, bool tls);

/* Takes over a client of the HTTP port whose request, request[0..n), is a
 * WebSocket upgrade for /ws/:service?path=P; the request then goes through
 * the same upgrade as on WS_PORT, to path P of that service. fd and ssl
 * (NULL without TLS, its handshake done) become the bridge's. */
void wsg_proxy_adopt(wsg_proxy *p, int fd, struct ssl_st *ssl, const wsg_peer *peer,
                     const uint8_t *request, size_t n);

/* ---- HTTP and SSE proxying (http_forward.c) ----------------------------- */

/* One request of the HTTP port forwarded to a service's backend: the
 * request head as read by the port, the body streamed on, the answer
 * streamed back. */
typedef struct wsg_forward wsg_forward;

/* How an exchange ended, for the HTTP port. */
typedef enum wsg_forward_end {
    WSG_FORWARD_KEEP,  /* complete; the connection serves the next request */
    WSG_FORWARD_CLOSE, /* complete, or an error answered: close once flushed */
    WSG_FORWARD_ABORT, /* the client left, or the answer cannot be completed: close now */
} wsg_forward_end;

/* The client's side, owned by the HTTP port. */
typedef struct wsg_forward_client {
    wsg_sock *sock;        /* the forwarder writes to it and turns its reading on and off */
    const wsg_peer *peer;  /* valid while the exchange runs */
    bool tls;
    /* Called once when the exchange ends (unless wsg_forward_abort came
     * first); the forwarder is gone by then. With WSG_FORWARD_KEEP, `rest`
     * holds the client's bytes past this request, now the port's. */
    void (*done)(void *ctx, wsg_forward_end how, wsg_buf *rest);
    void *ctx;
} wsg_forward_client;

typedef struct wsg_forward_request {
    const wsg_http_head *head;     /* valid during wsg_forward_start only */
    const wsg_http_reader *reader; /* that read the head: the body continues from it */
    wsg_route_kind kind;           /* WSG_ROUTE_API or WSG_ROUTE_SSE */
    wsg_str service;
    size_t prefix_len;             /* of "/api/:service" in the target */
    const uint8_t *after;          /* bytes read past the head */
    size_t after_len;
    bool keep_alive;               /* the client may send another request */
} wsg_forward_request;

/* Starts forwarding. *slot holds the forwarder while it runs and is set to
 * NULL when it ends; done may be called before this returns (an unknown
 * service, no backend). */
void wsg_forward_start(wsg_proxy *p, const wsg_forward_client *client,
                       const wsg_forward_request *req, wsg_forward **slot);

/* The client socket's events, while the forwarder runs. */
void wsg_forward_on_client(wsg_forward *f, int events);

/* The HTTP port closes the client connection: the forwarder ends without
 * calling done. */
void wsg_forward_abort(wsg_forward *f);

/* Ends every connection: each client gets 1001 and each backend 1001 at the
 * next frame boundary, then sockets close once flushed (or at once when
 * `now` is true). Further accepts are refused. */
void wsg_proxy_close_all(wsg_proxy *p, bool now);

static inline unsigned wsg_proxy_live(const wsg_proxy *p)
{
    return atomic_load_explicit(&p->live, memory_order_relaxed);
}

/* Connections of every worker, read from any thread. */
unsigned wsg_gateway_connections(const wsg_gateway *gw);

/* The registry changed: connections on backends that went down move now,
 * those on draining backends at their next message boundary. */
void wsg_proxy_backends_changed(wsg_proxy *p);

/* What the admin API shows of a connection. */
typedef struct wsg_connection_info {
    uint64_t id;
    const char *client_id;   /* sticky key, "" when none; valid during the callback */
    size_t client_id_len;
    const char *backend;     /* backend id, "" while between backends */
    const char *state;       /* "handshake", "open", "moving", "closing" */
    wsg_peer peer;
    uint64_t age_ms;
    uint64_t bytes_in;
    uint64_t bytes_out;
} wsg_connection_info;

/* Calls fn for each of this worker's WebSocket connections (its thread). */
void wsg_proxy_each_connection(wsg_proxy *p,
                               void (*fn)(void *ctx, const wsg_connection_info *info),
                               void *ctx);

/* Closes this worker's connections of a client (client_id non-empty) or
 * with an id (conn_id non-zero) with code and reason; the backend side gets
 * 1001. Returns how many. */
unsigned wsg_proxy_disconnect(wsg_proxy *p, wsg_str client_id, uint64_t conn_id, uint16_t code,
                              const char *reason);

/* Writes a short 503 answer to a descriptor we cannot serve and closes it
 * (on a TLS listener only closes it); never blocks. */
void wsg_proxy_refuse(int fd, const char *message, bool tls);

#endif
