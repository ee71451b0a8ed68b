/* Private to src/proxy: the bridge (one proxied client) and its upstream.
 *
 *   client socket ──► bridge.rx (client→backend stream) ──► upstream socket
 *   client socket ◄── upstream.rx (backend→client stream) ◄── upstream socket
 *
 * The bridge lives from accept to the close callback of its last socket.
 * The upstream is separate so that a new one can be dialled while the
 * client stays; it is freed in its own close callback. Nothing is freed
 * inside its own callback chain: sockets close in two phases and the
 * bridge counts the handles still open (STYLE.md, habit 3).
 */
#ifndef WSG_PROXY_INT_H
#define WSG_PROXY_INT_H

#include "http/http.h"
#include "proxy/proxy.h"

typedef enum bridge_state {
    B_REQUEST,    /* reading the client's upgrade request */
    B_CONNECTING, /* dialling a backend and waiting for its 101 */
    B_OPEN,       /* relaying frames */
    B_CLOSING,    /* a close frame has passed; waiting for the answer */
    B_ANSWERING,  /* relaying a backend's non-101 answer to the client */
    B_ENDING,     /* flushing what is queued, then closing the sockets */
} bridge_state;

enum {
    BF_CLIENT_SENT_CLOSE = 1,  /* a close frame came from the client */
    BF_CLIENT_GOT_CLOSE = 2,   /* a close frame went to the client */
    BF_BACKEND_SENT_CLOSE = 4,
    BF_BACKEND_GOT_CLOSE = 8,
    BF_LINGER = 16,            /* read and drop client input before closing, so an
                                  HTTP answer is not lost to a reset */
    BF_ESTABLISHED = 32,       /* the session reached B_OPEN */
};

typedef enum upstream_state {
    U_CONNECTING, /* TCP connect under way, request queued */
    U_HANDSHAKE,  /* request sent, reading the answer head */
    U_OPEN,       /* relaying frames */
    U_RELAYING,   /* relaying a non-101 answer's body */
} upstream_state;

typedef struct client_hs client_hs;
typedef struct upstream_hs upstream_hs;

typedef struct wsg_upstream {
    wsg_sock sock;
    struct wsg_bridge *bridge;
    wsg_backend *backend;
    wsg_buf *held;       /* unfinished frame bytes from the backend */
    upstream_hs *hs;     /* while connecting; NULL after */
    wsg_ws_stream rx;    /* backend → client */
    uint64_t rx_at;      /* last byte from the backend */
    uint64_t ping_at;    /* our unanswered ping to the backend, or 0 */
    uint64_t stall_at;   /* since when the backend is not taking our bytes, or 0 */
    uint8_t state;
} wsg_upstream;

typedef struct wsg_bridge {
    wsg_sock client;
    wsg_timer timer;
    wsg_list link;       /* in proxy->bridges */
    wsg_proxy *proxy;
    wsg_upstream *up;
    client_hs *hs;       /* while reading the request; NULL after */
    wsg_buf *held;       /* client bytes not yet passed on */
    char *dial_request;  /* the upgrade request for the backend, without its key */
    wsg_ws_stream rx;    /* client → backend */
    uint64_t id;
    uint64_t opened_at;
    uint64_t rx_at;      /* last byte from the client */
    uint64_t ping_at;    /* our unanswered ping to the client, or 0 */
    uint64_t stall_at;   /* since when the client is not taking our bytes, or 0 */
    uint64_t msg_at;     /* last data message either way (idle timeout) */
    uint64_t end_at;     /* deadline of the closing handshake or flush */
    uint64_t bytes_in;   /* from the client */
    uint64_t bytes_out;  /* to the client */
    wsg_peer peer;
    uint16_t close_code; /* what the client got or sent; 1006 when nothing */
    uint8_t state;
    uint8_t flags;
    uint8_t handles;     /* sockets not yet closed */
} wsg_bridge;

/* bridge.c */
uint64_t bridge_now(const wsg_bridge *b);
void bridge_arm(wsg_bridge *b, uint64_t due);
void bridge_sync_reading(wsg_bridge *b);
void bridge_end(wsg_bridge *b, const char *why);
void bridge_open(wsg_bridge *b);
void bridge_close_client(wsg_bridge *b, uint16_t code, const char *reason);
void bridge_upstream_failed(wsg_bridge *b, const char *why);
void bridge_relay_from_client(wsg_bridge *b, uint8_t *p, size_t n);
void bridge_relay_from_backend(wsg_bridge *b, uint8_t *p, size_t n);
void bridge_release_upstream(wsg_bridge *b);
int bridge_write_client(wsg_bridge *b, const void *data, size_t len);
void bridge_on_upstream_event(wsg_sock *s, int status, int events);

/* upgrade.c */
void upgrade_on_client_readable(wsg_bridge *b);
void upgrade_on_upstream_event(wsg_upstream *u, int events);
void upgrade_timeout(wsg_bridge *b);
void upgrade_free(wsg_bridge *b);
void upstream_hs_free(wsg_upstream *u);
/* Answers the client with an HTTP error and ends the bridge. */
void upgrade_answer(wsg_bridge *b, int status, const char *extra_headers, const char *message);

#endif
