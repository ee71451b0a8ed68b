/* Services and their backends: registration, health, draining, and the
 * choice of a backend for a new session.
 *
 * A service is a named group of backends with a balancing policy; the
 * default service serves WS_PORT. Backends come from configuration
 * (--backend, UPSTREAMS: static, checked actively) or register themselves
 * over HTTP (dynamic, kept alive by heartbeats), as seed 000's backends do.
 *
 * Concurrency: one mutex guards the lists and the fields marked "locked".
 * It is taken for a registration, a heartbeat, a pick (once per new
 * session) and a stats read; never on the message path. A backend is
 * reference-counted, so a connection keeps its backend alive after the
 * registry dropped it; its `state` and counters are atomics that workers
 * read without the lock.
 */
#ifndef WSG_REGISTRY_H
#define WSG_REGISTRY_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "balance/balance.h"
#include "config/config.h"
#include "core/str.h"

typedef enum wsg_backend_state {
    WSG_BACKEND_UP = 0,
    WSG_BACKEND_DRAINING = 1, /* no new sessions; its sessions move away */
    WSG_BACKEND_DOWN = 2,     /* dead, unregistered or failing checks */
} wsg_backend_state;

/* What one worker counted for one backend: written by that worker only
 * (relaxed load and store), summed by readers. */
typedef struct wsg_backend_stats {
    alignas(64) _Atomic uint64_t bytes_in; /* from the backend */
    _Atomic uint64_t bytes_out;             /* to the backend */
    _Atomic uint64_t handshakes_ok;
    _Atomic uint64_t handshakes_failed;     /* unreachable, wrong answer, timeout */
    _Atomic uint64_t handshakes_refused;    /* its own non-101 answer */
    _Atomic uint64_t backpressure_pauses;
    _Atomic uint64_t http_requests[5];      /* proxied HTTP requests by status class 1xx..5xx */
} wsg_backend_stats;

static inline void wsg_backend_count(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

typedef struct wsg_backend {
    atomic_uint refs;
    atomic_int state;            /* wsg_backend_state */
    atomic_uint active;          /* sessions through this gateway now */
    atomic_uint_fast64_t suspect_until; /* loop-clock ms; see mark_suspect */
    atomic_uint latency_us;      /* smoothed time to dial and upgrade */
    atomic_uint_fast64_t migrations_in;  /* sessions moved onto it */
    atomic_uint_fast64_t migrations_out; /* sessions moved away from it */
    atomic_uint_fast64_t drain_since;    /* monotonic ms draining began */
    atomic_uint sticky;                  /* sticky sessions pointing at it */
    atomic_bool unregistered;            /* it said goodbye: its sessions move now,
                                            losslessly, whatever the drain mode */
    wsg_backend_stats *stats;            /* one per worker */

    /* Fixed at creation. */
    char *id;
    char *host;         /* dialled */
    char *service;
    char *group;        /* "" when none */
    uint16_t ws_port;   /* dialled for WebSocket sessions */
    uint16_t http_port; /* dialled for HTTP requests */
    uint32_t weight;
    bool is_static;     /* from configuration: health-checked, never expires */
    bool tls;           /* wss://: dialled with TLS */
    socklen_t ws_addrlen;
    struct sockaddr_storage ws_addr;
    socklen_t http_addrlen;
    struct sockaddr_storage http_addr;

    /* Locked: changed by registration and heartbeats. */
    char *public_host;  /* reported, never dialled */
    uint32_t max_connections; /* 0: no limit */
    uint64_t registered_ms;   /* wall clock */
    uint64_t heartbeat_ms;    /* wall clock of the last heartbeat */
    uint64_t heartbeat_mono;  /* monotonic ms of the last heartbeat */
    uint32_t reported_connections;
    double cpu_usage;   /* -1 when never reported */
    double ram_usage;
    double ram_total;
    bool heartbeat_late; /* "missed heartbeat" already logged */
    uint8_t check_ok;    /* consecutive passed health checks */
    uint8_t check_fail;  /* consecutive failed health checks */
    bool drained;        /* locked: an operator drained it (kept while it is down) */
} wsg_backend;

typedef struct wsg_service {
    char *name;
    wsg_backend **backends; /* listed members; the registry holds a ref each */
    size_t count;
    const wsg_balancer_ops *balancer;
    void *balancer_state;
} wsg_service;

#define WSG_MIGRATION_HISTORY 100

#define WSG_MIGRATION_TARGETS 16

typedef struct wsg_migration {
    uint64_t timestamp_ms;  /* wall clock of the first move */
    uint64_t updated_mono;  /* monotonic ms of the last move counted */
    char from[64];
    char to[64];            /* a backend id, or "N servers" */
    uint32_t clients;
    uint32_t targets;       /* distinct backends the sessions went to */
    uint32_t target_hash[WSG_MIGRATION_TARGETS];
} wsg_migration;

/* What the registry tells the gateway: something changed that connections
 * may have to act on (a backend went down or started draining). Called
 * with the lock released. */
typedef void (*wsg_registry_changed_cb)(void *ctx);

typedef struct wsg_registry {
    pthread_mutex_t lock;
    wsg_service **services;
    size_t count;
    wsg_service *default_service;
    const wsg_config *cfg;
    unsigned workers;           /* size of each backend's stats array */
    const wsg_balancer_ops *default_balancer;
    wsg_registry_changed_cb changed;
    void *changed_ctx;
    uint64_t rnd;               /* xorshift state for policies, locked */
    /* migration history, locked */
    wsg_migration history[WSG_MIGRATION_HISTORY];
    size_t history_next;
    uint64_t total_migrations;
} wsg_registry;

/* What a backend says about itself when it registers (seed 000's body,
 * plus the optional service, group and weight). */
typedef struct wsg_backend_spec {
    const char *id;
    const char *host;
    const char *public_host; /* NULL: same as host */
    uint16_t port;           /* HTTP */
    uint16_t ws_port;
    uint32_t max_connections;
    const char *service;     /* NULL: the default service */
    const char *group;       /* NULL: none */
    uint32_t weight;         /* 0: 1 */
    bool tls;                /* dial with TLS (wss://) */
} wsg_backend_spec;

typedef struct wsg_heartbeat {
    uint32_t active_connections;
    double cpu_usage; /* <0: not sent */
    double ram_usage;
    double ram_total;
} wsg_heartbeat;

/* Builds the registry from --backend (default service) and UPSTREAMS,
 * resolving host names once. Returns 0, or -1 with err naming the option
 * and the bad entry. */
int wsg_registry_init(wsg_registry *r, const wsg_config *cfg, unsigned workers, char *err,
                      size_t errlen);

void wsg_registry_deinit(wsg_registry *r);

void wsg_registry_on_change(wsg_registry *r, wsg_registry_changed_cb cb, void *ctx);

/* True for names that can never be services (admin routes). */
bool wsg_registry_name_reserved(wsg_str name);

/* True when name may name a service: letters, digits, '-', '_', '.'. */
bool wsg_registry_name_valid(wsg_str name);

/* Registers a backend, or updates one with the same id: the address given
 * must already be resolved (addr/addrlen for the WebSocket port; the HTTP
 * port uses the same host). Returns 1 when created, 0 when updated, or a
 * negative value with err set: -1 for a reserved service name,
 * WSG_REGISTER_CONFLICT for the id of a configured backend. */
#define WSG_REGISTER_CONFLICT (-2)
int wsg_registry_register(wsg_registry *r, const wsg_backend_spec *spec,
                          const struct sockaddr_storage *addr, socklen_t addrlen, char *err,
                          size_t errlen);

/* Records a heartbeat. Returns 0, or -1 when no backend has that id (the
 * backend should register again). */
int wsg_registry_heartbeat(wsg_registry *r, const char *id, const wsg_heartbeat *hb);

/* Removes a backend; its sessions move to others. Returns 0 or -1 when
 * unknown. */
int wsg_registry_unregister(wsg_registry *r, const char *id);

/* Starts (on) or ends (off) draining a backend. Returns the sessions on it,
 * or -1 when unknown. */
long wsg_registry_drain(wsg_registry *r, const char *id, bool on);

/* Drains (on) or takes back (off) every backend of a group, for
 * blue-green deploys. Returns the sessions on them; *backends counts the
 * backends (0: no such group). */
long wsg_registry_drain_group(wsg_registry *r, const char *group, bool on, size_t *backends);

/* Takes backends whose heartbeats stopped for longer than SERVER_TIMEOUT
 * out of service; logs late heartbeats once. Call every HEARTBEAT_INTERVAL
 * from one thread. */
void wsg_registry_expire(wsg_registry *r);

/* Applies one active health check result of a static backend: `fall`
 * failures in a row take it down, `rise` passes bring it back. */
void wsg_registry_check_result(wsg_registry *r, wsg_backend *b, bool ok, unsigned rise,
                               unsigned fall);

/* Finds a service by name; NULL when there is none. Services are never
 * removed, so the pointer stays valid. */
wsg_service *wsg_registry_service(wsg_registry *r, wsg_str name);

/* Chooses an eligible backend of svc for a new session (up, not suspect,
 * under its connection limit, not `avoid`) and counts the session on it.
 * `prefer`, when eligible, wins outright (a sticky session's backend).
 * Returns the backend with a reference for the caller, or NULL when none is
 * eligible. Pair with wsg_backend_release. */
wsg_backend *wsg_registry_pick(wsg_registry *r, wsg_service *svc, wsg_str key,
                               wsg_backend *prefer, const wsg_backend *avoid, uint64_t now);

/* True when b would be chosen for a new session right now. */
bool wsg_backend_eligible(wsg_backend *b, uint64_t now);

/* Ends a session counted by wsg_registry_pick and drops its reference. */
void wsg_backend_release(wsg_backend *b);

void wsg_backend_ref(wsg_backend *b);
void wsg_backend_unref(wsg_backend *b);

static inline wsg_backend_state wsg_backend_state_of(const wsg_backend *b)
{
    return (wsg_backend_state)atomic_load_explicit(&b->state, memory_order_acquire);
}

/* Makes new sessions avoid b for `for_ms` after a failed dial. */
void wsg_backend_mark_suspect(wsg_backend *b, uint64_t now, uint64_t for_ms);

/* Folds one measured dial-and-upgrade time into b's latency. */
void wsg_backend_note_latency(wsg_backend *b, uint64_t us);

/* Counts one session moved from one backend to another. Moves away from
 * the same backend within a few seconds add up to one history entry, whose
 * `to` reads "N servers" when they went to several (as seed 000 shows);
 * the history is bounded, the oldest entry goes first. `now` is monotonic
 * ms. */
void wsg_registry_record_migration(wsg_registry *r, const char *from, const char *to,
                                   uint64_t now);

/* Copies the newest migrations, newest first; returns how many. */
size_t wsg_registry_recent_migrations(wsg_registry *r, wsg_migration *out, size_t max,
                                      uint64_t *total);

/* Copies b's public host (it may change under the lock). */
void wsg_registry_public_host(wsg_registry *r, const wsg_backend *b, char *out, size_t outlen);

/* Calls fn for every listed backend with the lock held: fn must not call
 * back into the registry. */
void wsg_registry_each(wsg_registry *r, void (*fn)(void *ctx, const wsg_service *s,
                                                    const wsg_backend *b),
                       void *ctx);

/* Monotonic milliseconds, the clock of heartbeats (and of libuv loops). */
uint64_t wsg_registry_mono_ms(void);

/* Wall-clock milliseconds since the epoch, for what is shown to people. */
uint64_t wsg_registry_wall_ms(void);

#endif
