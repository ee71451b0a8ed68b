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
