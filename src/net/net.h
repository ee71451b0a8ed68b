/* The network layer: worker threads with their loops, listening sockets,
 * non-blocking sockets with bounded output, dialling, the descriptor budget.
 * libuv lives here and above, never below.
 *
 * Sockets are plain non-blocking descriptors watched by a uv_poll_t: wsgate
 * does its own read(2) into the worker's scratch buffer and its own
 * sendmsg(2), which keeps a connection at one small handle and lets a write
 * go out at once from wherever the bytes are (STYLE.md, habit 4).
 *
 * I/O error vocabulary: >0 progress, 0 would block, <0 a negative errno
 * (UV_EOF at end of stream). Any negative result ends the connection.
 */
#ifndef WSG_NET_H
#define WSG_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/bucket.h"
#include "core/buf.h"
#include "core/rand.h"
#include "core/wheel.h"

/* ---- descriptor budget ------------------------------------------------- */

/* Descriptors are the hard limit of a gateway (RLIMIT_NOFILE may not be
 * raised). Every accepted connection takes its share up front, its own and
 * its upstream's, so no client is ever accepted without a way to reach a
 * backend. Shared by all workers; touched per connection, never per
 * message. */
typedef struct wsg_fd_budget {
    atomic_long used;
    long limit;
} wsg_fd_budget;

/* Takes n descriptors; false (and nothing taken) when that would pass the
 * limit. */
bool wsg_fd_budget_take(wsg_fd_budget *b, long n);
void wsg_fd_budget_give(wsg_fd_budget *b, long n);

/* ---- sockets ------------------------------------------------------------ */

typedef struct wsg_sock wsg_sock;
struct ssl_st;

/* Readiness callback: status < 0 is a poll error; events are UV_READABLE
 * and/or UV_WRITABLE. Recover the owner with wsg_container_of. */
typedef void (*wsg_sock_cb)(wsg_sock *s, int status, int events);

struct wsg_sock {
    uv_poll_t poll;   /* poll.poll_cb is the owner's wsg_sock_cb (TLS: tls.c's);
                         poll.data is the SSL of a TLS socket, NULL for TCP */
    wsg_buf *out;     /* accepted but unsent bytes; NULL when all are sent */
    int fd;
    uint8_t want;     /* events currently asked of the loop */
    bool reading;     /* the owner wants UV_READABLE */
    bool connecting;  /* a connect is under way: wait for UV_WRITABLE */
    bool tls_handshaking;
    uint8_t tls_want;           /* what the handshake waits for */
    bool tls_read_needs_write;  /* SSL_read asked for writability */
    bool tls_write_needs_read;  /* SSL_write asked for readability */
};

/* Watches fd on loop; the socket starts neither reading nor writing.
 * Returns 0 or a negative errno (the fd is then left open). */
int wsg_sock_open(uv_loop_t *loop, wsg_sock *s, int fd, wsg_sock_cb cb);

void wsg_sock_set_reading(wsg_sock *s, bool on);

/* Reads into buf. Returns bytes read, 0 when nothing is there, UV_EOF when
 * the peer finished, or a negative errno. */
long wsg_sock_read(wsg_sock *s, void *buf, size_t len);

/* Sends the buffers in order: as much as the kernel takes at once, the rest
 * is copied into s->out and sent when the socket is writable. Returns 0, or
 * a negative errno (UV_ENOMEM when the copy failed). */
int wsg_sock_write(wsg_sock *s, const uv_buf_t *bufs, unsigned n);

/* Sends queued bytes; call on UV_WRITABLE. Returns 1 when the queue is
 * empty, 0 when bytes remain, or a negative errno. */
int wsg_sock_flush(wsg_sock *s);

static inline size_t wsg_sock_pending(const wsg_sock *s)
{
    return wsg_buf_len(s->out);
}

/* Stops watching, drops queued output and closes the descriptor;
 * close_cb runs on a later loop turn, when the handle's memory may go
 * (STYLE.md, habit 3). Closing twice is a bug. */
void wsg_sock_close(wsg_sock *s, uv_close_cb close_cb);

/* Stops watching without closing: returns the descriptor and, in *ssl, its
 * TLS state (NULL for TCP), both now the caller's, for another owner to
 * continue the connection (wsg_sock_open, then wsg_sock_tls_adopt).
 * Queued output is dropped: detach only when nothing is pending.
 * close_cb runs as for wsg_sock_close. */
int wsg_sock_detach(wsg_sock *s, uv_close_cb close_cb, struct ssl_st **ssl);

static inline bool wsg_sock_is_closing(const wsg_sock *s)
{
    return uv_is_closing((const uv_handle_t *)&s->poll) != 0;
}

/* The socket's TLS state, NULL for plain TCP. (It lives in the poll
 * handle's user pointer: the owner finds the socket by container_of.) */
static inline struct ssl_st *wsg_sock_ssl(const wsg_sock *s)
{
    return (struct ssl_st *)s->poll.data;
}

/* Re-computes the events asked of the loop (internal to net/). */
void wsg_sock_update_events(wsg_sock *s);

/* ---- TLS ---------------------------------------------------------------- */

/* A set of server certificates: [0] the default, the others chosen by SNI
 * (the first whose names match). Loaded whole, swapped whole. */
typedef struct wsg_tls_certs wsg_tls_certs;

/* The certificates a listener uses now; swapped on SIGHUP while sockets
 * made from the old set keep it. */
typedef struct wsg_tls_server {
    pthread_mutex_t lock;
    wsg_tls_certs *certs;
} wsg_tls_server;

/* Loads TLS_CERT/TLS_KEY and the "cert:key,..." extras (TLS 1.2 and 1.3,
 * modern ciphers, ALPN http/1.1). NULL with err naming the file. */
wsg_tls_certs *wsg_tls_certs_load(const char *cert, const char *key, const char *extras,
                                  char *err, size_t errlen);
void wsg_tls_server_init(wsg_tls_server *t, wsg_tls_certs *certs);
/* Makes new handshakes use `certs`; open connections are untouched. */
void wsg_tls_server_swap(wsg_tls_server *t, wsg_tls_certs *certs);
void wsg_tls_server_deinit(wsg_tls_server *t);

/* A client context for wss:// backends: system CAs or ca_file; verify
 * the backend's certificate and name unless told not to. */
struct ssl_ctx_st *wsg_tls_client_ctx(const char *ca_file, bool verify, char *err,
                                      size_t errlen);

/* Makes an open socket a TLS server (after accept) or client (after the
 * TCP connect; host names the backend for SNI and verification). The
 * handshake then runs inside the socket. Returns 0 or a negative errno. */
int wsg_sock_tls_accept(wsg_sock *s, wsg_tls_server *t);
int wsg_sock_tls_connect(wsg_sock *s, struct ssl_ctx_st *ctx, const char *host);

/* Continues a detached TLS connection (handshake done) on an open socket. */
void wsg_sock_tls_adopt(wsg_sock *s, struct ssl_st *ssl);

/* Frees a detached TLS state that no socket took (NULL: nothing). */
void wsg_sock_tls_drop(struct ssl_st *ssl);

/* Internal to net/: the TLS side of read, write, flush and close. */
long wsg_sock_tls_read(wsg_sock *s, void *buf, size_t len);
int wsg_sock_tls_write(wsg_sock *s, const uv_buf_t *bufs, unsigned n);
int wsg_sock_tls_flush(wsg_sock *s);
void wsg_sock_tls_free(wsg_sock *s);
bool wsg_sock_tls_pending(const wsg_sock *s);

/* Starts a non-blocking connect. Returns 0 with *fd set when under way, or
 * a negative errno. Open the socket with wsg_sock_open, then call
 * wsg_sock_await_connect; the UV_WRITABLE event that follows says the
 * connect finished, and wsg_sock_connect_result tells how. */
int wsg_dial(const struct sockaddr *addr, socklen_t addrlen, int *fd);

void wsg_sock_await_connect(wsg_sock *s);

/* What a poll error on the socket was: libuv reports every error on a
 * polled descriptor as UV_EBADF, but the socket knows (a reset, a refused
 * connect). Returns a negative errno, or `status` when it knows nothing. */
int wsg_sock_error(const wsg_sock *s, int status);

/* The outcome of the connect (0 or a negative errno); stops waiting. */
int wsg_sock_connect_result(wsg_sock *s);

/* Formats "1.2.3.4:5678" or "[::1]:5678" into out. */
void wsg_addr_format(const struct sockaddr *sa, char *out, size_t outlen);

/* Parses "host:port", "[v6]:port" or "ip" (+ default port) into an address
 * without a DNS lookup. Returns 0, or -1 when host is not a literal. */
int wsg_addr_parse(const char *text, uint16_t default_port, struct sockaddr_storage *out,
                   socklen_t *len);

/* A peer's address in 20 bytes, for connections to keep for logs and the
 * X-Forwarded-For header. IPv4-mapped IPv6 addresses are stored as IPv4. */
typedef struct wsg_peer {
    uint8_t ip[16];
    uint16_t port;
    uint8_t family; /* AF_INET or AF_INET6 */
} wsg_peer;

void wsg_peer_set(wsg_peer *p, const struct sockaddr_storage *ss);
/* "1.2.3.4" or "2001:db8::1" */
void wsg_peer_format_ip(const wsg_peer *p, char *out, size_t outlen);
/* "1.2.3.4:5678" or "[2001:db8::1]:5678" */
void wsg_peer_format(const wsg_peer *p, char *out, size_t outlen);

/* An address block such as 10.0.0.0/8 or ::1/128. */
typedef struct wsg_cidr {
    uint8_t ip[16];
    uint8_t family;
    uint8_t bits;
} wsg_cidr;

/* Parses "ADDR" or "ADDR/BITS" (n bytes). Returns 0 or -1. */
int wsg_cidr_parse(const char *text, size_t n, wsg_cidr *out);

bool wsg_cidr_match(const wsg_cidr *c, int family, const uint8_t *ip);

/* Parses a comma-separated list of CIDRs into a new array (*out, *count).
 * Returns 0, or -1 with the bad entry copied into bad. */
int wsg_cidr_list_parse(const char *text, wsg_cidr **out, size_t *count, char *bad,
                        size_t badlen);

/* ---- limits per client address (clients.c) -------------------------- */

#define WSG_CLIENT_SHARDS 16

typedef struct wsg_client_limits {
    double upgrade_rate;  /* new WebSocket upgrades per second; 0: off */
    double upgrade_burst;
    double request_rate;  /* HTTP requests per second; 0: off */
    double request_burst;
    uint32_t max_per_ip;  /* open connections per address; 0: no limit */
    wsg_cidr *exempt;     /* never limited (owned) */
    size_t exempt_count;
} wsg_client_limits;

/* One address. `connections` and the buckets are guarded by its shard. */
typedef struct wsg_client {
    struct wsg_client *next;
    wsg_bucket upgrades;
    wsg_bucket requests;
    uint64_t seen_ms;
    uint32_t connections;
    uint32_t hash;
    uint8_t ip[16];
    uint8_t family;
} wsg_client;

typedef struct wsg_client_shard {
    pthread_mutex_t lock;
    wsg_client **buckets;
    size_t bucket_count;
    size_t count;
} wsg_client_shard;

typedef struct wsg_clients {
    wsg_client_limits limits;
    wsg_client_shard shards[WSG_CLIENT_SHARDS];
} wsg_clients;

typedef enum wsg_admit {
    WSG_ADMIT_OK = 0,
    WSG_ADMIT_RATE = 1, /* too many too fast: 429 with Retry-After */
    WSG_ADMIT_FULL = 2, /* too many open from that address: 503 */
} wsg_admit;

/* Takes ownership of limits->exempt. */
void wsg_clients_init(wsg_clients *t, const wsg_client_limits *limits);
void wsg_clients_deinit(wsg_clients *t);

bool wsg_clients_exempt(const wsg_clients *t, int family, const uint8_t *ip);

/* Admits a new WebSocket connection from an address (its upgrade bucket
 * and its connection count). On WSG_ADMIT_OK, *counted is the entry to
 * release when the connection ends (NULL when nothing was counted); on
 * WSG_ADMIT_RATE, *retry_ms says when to come back. `now` in ms. */
wsg_admit wsg_clients_admit_upgrade(wsg_clients *t, int family, const uint8_t *ip, uint64_t now,
                                    wsg_client **counted, uint32_t *retry_ms);
void wsg_clients_release(wsg_clients *t, wsg_client *c, uint64_t now);

/* Admits one HTTP request from an address. */
wsg_admit wsg_clients_admit_request(wsg_clients *t, int family, const uint8_t *ip, uint64_t now,
                                    uint32_t *retry_ms);

/* Forgets addresses idle for a minute. Returns how many. */
size_t wsg_clients_sweep(wsg_clients *t, uint64_t now);

/* ---- workers --------------------------------------------------------- */

#define WSG_SCRATCH_SIZE ((size_t)256 * 1024)
/* Room in front of the scratch data for bytes a connection held back (an
 * unfinished frame header or control frame), so they are joined to the new
 * bytes without a second copy of the read. */
#define WSG_SCRATCH_HEADROOM 256

typedef struct wsg_worker wsg_worker;

/* A timer in the worker's wheel; `fire` runs on the worker's thread. */
typedef struct wsg_timer {
    wsg_wheel_node node;
    void (*fire)(struct wsg_timer *t);
} wsg_timer;

/* A function to run on a worker's thread, posted from any thread. */
typedef struct wsg_call {
    struct wsg_call *next;
    void (*fn)(wsg_worker *w, void *arg);
    void *arg;
} wsg_call;

struct wsg_worker {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;   /* other threads post commands through this */
    uv_timer_t tick;     /* drives the wheel */
    wsg_wheel wheel;
    wsg_rand rng;
    uint8_t *scratch;    /* WSG_SCRATCH_HEADROOM + WSG_SCRATCH_SIZE bytes */
    unsigned index;
    atomic_uint commands;
    uv_mutex_t calls_lock;  /* guards calls and finished */
    bool finished;          /* the loop is ending: calls are refused */
    wsg_call *calls;
    wsg_call **calls_tail;
    /* Event-loop delay: how late the tick timer fires. The worst delay of
     * the last second (or of this one, when worse) is published for other
     * threads, with the monotonic time of the last tick so that a loop
     * stuck right now shows too. */
    uint64_t tick_due_ms;   /* when the next tick should run */
    unsigned lag_window_ms; /* worst delay in the window under way */
    unsigned lag_window_ticks;
    atomic_uint lag_ms;          /* worst delay of the last full window */
    atomic_uint_fast64_t ticked_at_ms;
    /* Set by the layer above before start; all run on the worker thread. */
    void (*on_start)(wsg_worker *w);
    void (*on_command)(wsg_worker *w, unsigned commands);
    void (*on_stop)(wsg_worker *w);
    void *app;
};

/* Prepares a worker (loop, scratch buffer, wheel); the caller then sets the
 * callbacks and calls wsg_worker_start. Start-up failures abort. */
void wsg_worker_init(wsg_worker *w, unsigned index, uint64_t tick_ms);

/* Runs the worker's loop on a new thread. Returns 0 or a negative errno. */
int wsg_worker_start(wsg_worker *w);

/* Posts command bits to the worker from any thread; they are OR-ed
 * together until on_command runs. */
void wsg_worker_post(wsg_worker *w, unsigned commands);

/* Runs fn(w, arg) on w's thread soon, in posting order. Returns 0, or -1
 * when out of memory or the worker is stopping (the call is not made). */
int wsg_worker_call(wsg_worker *w, void (*fn)(wsg_worker *w, void *arg), void *arg);

/* Stops the loop once every handle is closed: call on the worker thread
 * from on_command after closing the layer's own handles. */
void wsg_worker_finish(wsg_worker *w);

/* The worker's event-loop delay in milliseconds, read from any thread:
 * the worst of the last second, or how long its loop has been stuck now. */
unsigned wsg_worker_loop_lag_ms(wsg_worker *w);

/* Waits for the thread and frees the loop and buffers. */
void wsg_worker_join(wsg_worker *w);

static inline uint64_t wsg_worker_now(wsg_worker *w)
{
    return uv_now(&w->loop);
}

void wsg_timer_schedule(wsg_worker *w, wsg_timer *t, uint64_t due);
void wsg_timer_cancel(wsg_worker *w, wsg_timer *t);

/* ---- listeners ---------------------------------------------------------- */

typedef struct wsg_listener wsg_listener;

/* Receives each accepted, non-blocking descriptor; owns it from then on. */
typedef void (*wsg_accept_cb)(wsg_listener *l, int fd, const struct sockaddr_storage *peer);

struct wsg_listener {
    uv_poll_t poll;
    uv_timer_t retry;    /* resumes accepting after descriptors ran out */
    int fd;
    bool open;
    bool tls;            /* accepted sockets speak TLS */
    wsg_worker *worker;
    wsg_accept_cb on_accept;
    void *data;
};

/* Creates a listening socket with SO_REUSEPORT, so that each worker has
 * its own accept queue on the same port. Returns the descriptor, or a
 * negative errno with err describing it. Called on the main thread so that
 * a bad address fails the start. */
int wsg_listen_socket(const char *host, uint16_t port, int backlog, char *err, size_t errlen);

/* Fails with EADDRINUSE when anything listens on host:port already, even
 * another process with SO_REUSEPORT, which would otherwise share the port
 * silently. Returns 0 or a negative errno with err describing it. */
int wsg_listen_probe(const char *host, uint16_t port, char *err, size_t errlen);

/* Starts accepting on fd in w's loop (worker thread). */
int wsg_listener_start(wsg_listener *l, wsg_worker *w, int fd, wsg_accept_cb cb);

/* Stops accepting and closes the socket (worker thread). */
void wsg_listener_close(wsg_listener *l);

#endif
