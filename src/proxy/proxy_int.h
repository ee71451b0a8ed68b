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

#include <string.h>

#include "http/http.h"
#include "proxy/proxy.h"
#include "registry/sessions.h"

/* Moments in a connection's life, kept in 32 bits to keep idle
 * connections small: the low bits of the loop's millisecond clock, never 0
 * (0 means "not set"). Only spans shorter than 24 days are taken between
 * them, which modular arithmetic gets right across the wrap. */
typedef uint32_t wsg_stamp;

static inline wsg_stamp stamp(uint64_t now)
{
    return (wsg_stamp)now | 1;
}

/* The full clock value of a stamp that is not in the future. (A stamp is
 * up to 1 ms ahead of the moment it marks, for its low bit: that reads as
 * now.) */
static inline uint64_t past(uint64_t now, wsg_stamp t)
{
    int32_t ago = (int32_t)((uint32_t)now - t);
    return ago > 0 ? now - (uint64_t)ago : now;
}

/* The full clock value of a stamp within 24 days of now, either way (a
 * deadline). */
static inline uint64_t around(uint64_t now, wsg_stamp t)
{
    return now + (uint64_t)(int64_t)(int32_t)(t - (uint32_t)now);
}

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
    BF_DRAIN_PENDING = 64,     /* move to another backend at the next message boundary */
    BF_PENDING = 128,          /* counted in gateway.pending (still upgrading) */
    BF_DROPPING = 256,         /* dropping a client message over MESSAGE_RATE */
    BF_ROUTED = 512,           /* came from the HTTP port: the target names a service
                                  (/ws/:service?path=P) */
};

typedef enum upstream_state {
    U_CONNECTING, /* TCP connect under way, request queued */
    U_HANDSHAKE,  /* request sent, reading the answer head */
    U_OPEN,       /* relaying frames */
    U_RELAYING,   /* relaying a non-101 answer's body */
    U_RETIRING,   /* a drained backend's last answers, until its close frame */
} upstream_state;

typedef struct upstream_hs upstream_hs;

/* The client's side of the handshake (upgrade.c), until frames flow. */
typedef struct client_hs {
    wsg_http_reader reader;
    wsg_http_head head;
    wsg_buf *raw;          /* the request as received; head strings point here */
    char *protocols;       /* the client's subprotocol offer, joined; NULL if none */
    char *extensions;      /* its deflate offer rewritten for backends; NULL if none */
    wsg_service *service;
    wsg_backend *sticky;   /* the session's backend (a reference), tried first */
    uint64_t deadline;     /* for the backend side, once dialling */
    uint8_t dials;
} client_hs;

/* A backend whose dial failed is avoided for this long. */
#define SUSPECT_MS 2000

/* A session between two backends (migrate.c). Allocated only then. */
typedef struct migration {
    struct wsg_bridge *bridge; /* the moving session */
    wsg_list queued;     /* in proxy->dial_queue while waiting for a dial slot */
    wsg_backend *left;   /* the backend the session left (a reference) */
    struct wsg_upstream *retiring; /* a drained backend finishing its answers */
    wsg_buf *hold;       /* client frames for the next backend, in order */
    wsg_buf *early;      /* frames the next backend sent with its 101 */
    uint64_t retire_deadline;
    uint64_t started;
    uint64_t deadline;   /* no backend by then: close 1013 */
    uint64_t not_before; /* next dial attempt, spread by jitter */
    uint32_t dials;
    bool dialing;        /* a dial is under way (counted in the worker) */
    bool ready;          /* the next backend said 101; waiting for `retiring` */
    bool dropping;       /* dropping the rest of a client message cut by the move */
} migration;

typedef struct wsg_upstream {
    wsg_sock sock;
    struct wsg_bridge *bridge;
    wsg_backend *backend;
    /* One or the other, by state: a dial's handshake state before U_OPEN
     * (and in U_RELAYING), then the unfinished frame bytes from the
     * backend; an idle connection pays for one pointer. */
    union {
        upstream_hs *hs;
        wsg_buf *held;
    };
    wsg_ws_stream rx;    /* backend → client */
    wsg_stamp rx_at;     /* last byte from the backend */
    wsg_stamp ping_at;   /* our unanswered ping to the backend, or 0 */
    wsg_stamp stall_at;  /* since when the backend is not taking our bytes, or 0 */
    uint8_t state;
    /* Client messages written since the backend last sent anything: what
     * may be lost if it fails now (it sits in padding; saturates). */
    uint16_t unanswered;
} wsg_upstream;

typedef struct wsg_bridge {
    wsg_sock client;
    wsg_timer timer;
    wsg_list link;       /* in proxy->bridges */
    wsg_proxy *proxy;
    wsg_upstream *up;
    client_hs *hs;       /* while reading the request; NULL after */
    migration *mig;      /* while moving to another backend; NULL otherwise */
    wsg_session *session; /* sticky session, NULL without a sticky key */
    wsg_client *counted;  /* this connection's address entry, NULL if not counted */
    wsg_buf *held;       /* client bytes not yet passed on */
    char *request;       /* what dials need of the client's request (upgrade.c) */
    char *agreed;        /* "protocol\nextensions" the backend chose; NULL if neither */
    wsg_ws_stream rx;    /* client → backend */
    uint64_t id;
    uint64_t opened_at;
    wsg_stamp rx_at;     /* last byte from the client */
    wsg_stamp ping_at;   /* our unanswered ping to the client, or 0 */
    wsg_stamp stall_at;  /* since when the client is not taking our bytes, or 0 */
    wsg_stamp msg_at;    /* last data message either way (idle timeout) */
    uint64_t bytes_in;   /* from the client */
    uint64_t bytes_out;  /* to the client */
    wsg_bucket messages; /* MESSAGE_RATE */
    wsg_stamp end_at;    /* deadline of the closing handshake or flush */
    wsg_peer peer;
    uint16_t close_code; /* what the client got or sent; 1006 when nothing */
    uint8_t state;
    uint8_t handles;     /* sockets not yet closed */
    uint16_t flags;
} wsg_bridge;

/* bridge.c */
wsg_bridge *bridge_create(wsg_proxy *p, int fd, const wsg_peer *peer);
void bridge_shutdown(wsg_bridge *b, bool now);
/* The bridge has left its upgrade (opened or ended): uncount it. */
void bridge_not_pending(wsg_bridge *b);
const wsg_config *bridge_config(const wsg_bridge *b);
void bridge_close_both(wsg_bridge *b, uint16_t client_code, const char *client_reason,
                       uint16_t backend_code, const char *backend_reason, const char *why);
bool bridge_can_frame_backend(const wsg_bridge *b);
void bridge_close_frame_to_backend(wsg_bridge *b, uint16_t code, const char *reason);
uint64_t bridge_now(const wsg_bridge *b);
void bridge_arm(wsg_bridge *b, uint64_t due);
void bridge_sync_reading(wsg_bridge *b);
void bridge_end(wsg_bridge *b, const char *why);
void bridge_open(wsg_bridge *b);
void bridge_close_client(wsg_bridge *b, uint16_t code, const char *reason);
void bridge_upstream_failed(wsg_bridge *b, const char *why);
void bridge_relay_from_client(wsg_bridge *b, uint8_t *p, size_t n);
void bridge_relay_from_backend(wsg_bridge *b, wsg_upstream *u, uint8_t *p, size_t n);
void bridge_close_upstream(wsg_upstream *u);
void bridge_release_upstream(wsg_bridge *b);
int bridge_write_client(wsg_bridge *b, const void *data, size_t len);
int bridge_write_backend(wsg_bridge *b, const void *data, size_t len);
/* Whether a frame of ours may go to the client now (between its frames). */
bool bridge_can_frame_client(const wsg_bridge *b);
void bridge_on_upstream_event(wsg_sock *s, int status, int events);

/* liveness.c */
bool liveness_is_our_pong(const wsg_bridge *b, const wsg_ws_span *span);
/* Acts on whichever deadline has passed, then arms the timer for the next. */
void liveness_check(wsg_bridge *b, uint64_t now);

/* proxy.c */
/* Marks a backend suspect after a failed dial or answer and logs `what`,
 * once while it stays suspect: a dead backend's many sessions do not each
 * say so. */
void proxy_backend_failed(wsg_bridge *b, wsg_backend *backend, const char *what,
                          const char *why);

/* migrate.c */
bool migrate_possible(const wsg_bridge *b);
void migrate_begin(wsg_bridge *b, const char *why, bool graceful);
void migrate_on_timer(wsg_bridge *b, uint64_t now);
uint64_t migrate_next_due(const wsg_bridge *b);
void migrate_switched(wsg_bridge *b, const uint8_t *early, size_t n);
void migrate_retired(wsg_bridge *b);
void migrate_abandon_retiring(wsg_bridge *b);
void migrate_dial_failed(wsg_bridge *b, const char *why);
/* Ends a move that cannot succeed: the client gets `code`, what was held
 * for it is counted as lost. */
void migrate_give_up(wsg_bridge *b, uint16_t code, const char *reason);
int migrate_hold(wsg_bridge *b, const uv_buf_t *bufs, unsigned n);
bool migrate_hold_full(const wsg_bridge *b);
void migrate_check_drain(wsg_bridge *b);
void migrate_free(wsg_bridge *b);

/* upgrade.c: the client's side of the handshake */
void upgrade_on_client_readable(wsg_bridge *b);
/* Takes a request already read by the HTTP port (BF_ROUTED) as if it had
 * been read from the client. */
void upgrade_take_request(wsg_bridge *b, const uint8_t *bytes, size_t n);
void upgrade_timeout(wsg_bridge *b);
void upgrade_free(wsg_bridge *b);
/* Answers the client with an HTTP error and ends the bridge. */
void upgrade_answer(wsg_bridge *b, int status, const char *extra_headers, const char *message);
/* Writes the upgrade request for a backend from bridge.request: all but
 * the key, the offers and the final CRLF. Returns 0 or -1 (memory). */
int upgrade_render_request(const wsg_bridge *b, wsg_buf **w);
/* The client's path and query, as it asked. */
wsg_str upgrade_target(const wsg_bridge *b);
/* The first dial failed: tries another backend or answers 502. */
void upgrade_dial_failed(wsg_bridge *b, wsg_backend *failed);
/* The backend switched: answers the client 101 with the backend's choices
 * and opens the bridge. Returns -1 when the bridge ended instead. */
int upgrade_accept(wsg_bridge *b, const wsg_http_head *answer, wsg_str protocol,
                   wsg_str extensions);

/* dial.c: the backend's side */
int dial_start(wsg_bridge *b, wsg_backend *backend, const char *migrated_from);
void dial_on_event(wsg_upstream *u, int events);
uint64_t dial_deadline(const wsg_upstream *u);
void dial_free(wsg_upstream *u);
size_t dial_state_size(void);

/* forwarded.c: what the upgrade and the HTTP proxy tell backends alike */
bool proxy_peer_trusted(const wsg_gateway *gw, int family, const uint8_t *ip);
/* The client's address as the backend should see it: the peer, or, behind
 * trusted proxies, the last address in X-Forwarded-For that is not one. */
void proxy_real_client_ip(const wsg_gateway *gw, const wsg_peer *peer, wsg_str xff, bool trusted,
                          char *out, size_t outlen);
/* Writes X-Forwarded-For, X-Forwarded-Proto and X-Real-IP. xff and proto
 * are what the client sent; they count only when the peer is a trusted
 * proxy (--trusted-proxies). Returns 0 or -1 (memory). */
int proxy_put_forwarded(const wsg_gateway *gw, const wsg_peer *peer, bool tls, wsg_str xff,
                        wsg_str proto, wsg_buf **w);
/* The sticky key: the query parameter, header or cookie WSGATE_STICKY_KEY
 * names (clientId in the query, as the seed gateway). Empty when absent. */
wsg_str proxy_sticky_key(const wsg_config *cfg, const wsg_http_head *h);

/* Small writers for requests and answers: each returns 0 or -1 (memory). */
static inline int put_bytes(wsg_buf **w, const char *s, size_t n)
{
    return wsg_buf_append(w, s, n);
}

static inline int put_cstr(wsg_buf **w, const char *s)
{
    return wsg_buf_append(w, s, strlen(s));
}

static inline int put_header(wsg_buf **w, wsg_str name, wsg_str value)
{
    return wsg_buf_append(w, name.p, name.len) | wsg_buf_append(w, ": ", 2) |
           wsg_buf_append(w, value.p, value.len) | wsg_buf_append(w, "\r\n", 2);
}

#endif
