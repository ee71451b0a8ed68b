/* Services and their backends, and the choice of a backend for a session.
 *
 * A service is a named group of backends with a balancing policy; the
 * default service serves WS_PORT. Backends come from configuration
 * (--backend, UPSTREAMS). The registry is built on the main thread before
 * the workers start; after that workers only read it, and a backend's live
 * counters are atomics touched once per connection, never per message.
 */
#ifndef WSG_REGISTRY_H
#define WSG_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "balance/balance.h"
#include "config/config.h"
#include "core/str.h"

typedef struct wsg_backend {
    char *id;           /* "host:port" for configured backends */
    char *host;         /* as configured, for logs and stats */
    uint16_t ws_port;   /* dialled for WebSocket sessions */
    uint16_t http_port; /* dialled for HTTP requests */
    socklen_t ws_addrlen;
    struct sockaddr_storage ws_addr;
    uint32_t max_connections; /* 0: no limit */
    atomic_uint active;       /* sessions through this gateway now */
    /* Loop-clock milliseconds before which new sessions avoid this backend
     * because a dial to it failed. All loops share one monotonic clock. */
    atomic_uint_fast64_t suspect_until;
} wsg_backend;

typedef struct wsg_service {
    char *name;
    wsg_backend **backends;
    size_t count;
    const wsg_balancer_ops *balancer;
    void *balancer_state;
} wsg_service;

typedef struct wsg_registry {
    wsg_service **services;
    size_t count;
    wsg_service *default_service;
} wsg_registry;

/* Builds the registry from --backend (default service) and UPSTREAMS,
 * resolving host names once. Returns 0, or -1 with err naming the option
 * and the bad entry. */
int wsg_registry_init(wsg_registry *r, const wsg_config *cfg, char *err, size_t errlen);

void wsg_registry_deinit(wsg_registry *r);

/* Finds a service by name; NULL when there is none. */
wsg_service *wsg_registry_service(const wsg_registry *r, wsg_str name);

/* True for names that can never be services (admin routes). */
bool wsg_registry_name_reserved(wsg_str name);

/* Chooses an eligible backend of svc for a new session (not suspect, under
 * its connection limit, not `avoid`) and counts the session on it. Returns
 * NULL when no backend is eligible. Pair with wsg_backend_release. */
wsg_backend *wsg_registry_pick(const wsg_service *svc, wsg_str key, const wsg_backend *avoid,
                               uint64_t now);

/* Ends a session counted by wsg_registry_pick. */
void wsg_backend_release(wsg_backend *b);

/* Makes new sessions avoid b for `for_ms` after a failed dial. */
void wsg_backend_mark_suspect(wsg_backend *b, uint64_t now, uint64_t for_ms);

#endif
