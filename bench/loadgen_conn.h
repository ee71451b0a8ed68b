/* Inside a loadgen worker: its connections and what they do on the wire.
 * Private to loadgen_conn.c (connections) and loadgen_worker.c (phases and
 * schedule); nothing else includes it.
 *
 * A connection's life:
 *
 *   NEW --start--> CONNECTING --writable--> HANDSHAKE --101--> OPEN
 *                      |        \               ^  |              |
 *                      |   (wss) +--> TLS ------+  |              |
 *                      |                 |         |              |
 *                      +------ failed ---+---------+--> GONE <----+ dropped / closed at the end
 *
 * An idle OPEN connection owns no buffer: reads go to the worker's rx
 * scratch, frames to send are built in its tx scratch and written at once.
 * A connection allocates only for an incomplete frame (in), a fragmented
 * message (msg), bytes the socket did not take (out), or its handshake (hs).
 */
#ifndef LG_CONN_H
#define LG_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "loadgen_config.h"
#include "loadgen_report.h"
#include "loadgen_tls.h"
#include "loadgen_wire.h"
#include "ws/ws.h"

#define LG_NS_PER_MS UINT64_C(1000000)
#define LG_NS_PER_S UINT64_C(1000000000)
/* The worker's read scratch: one read's worth for any connection. */
#define LG_RX_SIZE (256 * 1024)

enum { LC_NEW = 0, LC_CONNECTING, LC_TLS, LC_HANDSHAKE, LC_OPEN, LC_GONE };

enum {
    LC_F_WRITING = 1, /* EPOLLOUT is on: out holds bytes */
    LC_F_PINGED = 2,  /* the end-of-hold ping went out */
    LC_F_PONGED = 4,  /* and its pong came back */
    LC_F_DEFLATED = 8, /* the message being collected came with RSV1 */
};

enum { LG_PHASE_RAMP, LG_PHASE_WAIT_GO, LG_PHASE_LOAD, LG_PHASE_DRAIN, LG_PHASE_END };

/* Bytes held for a connection: data[off..len) are live. */
typedef struct lg_buf {
    uint32_t off;
    uint32_t len;
    uint32_t cap;
    uint8_t data[];
} lg_buf;

/* Kept only while a connection opens. */
typedef struct lg_hs {
    uint64_t t0;   /* when connect() was called */
    uint32_t slot; /* position in the worker's pending array */
    uint32_t len;  /* response bytes in head */
    char accept[WSG_WS_ACCEPT_LEN + 1];
    char head[LG_HEAD_MAX];
} lg_hs;

typedef struct lg_conn {
    int fd;
    uint8_t state;
    uint8_t flags;
    uint32_t inflight; /* echoes awaited on this connection */
    uint64_t seq_tx;   /* next sequence number to send */
    uint64_t seq_rx;   /* next sequence number expected back */
    lg_hs *hs;
    lg_tls *tls; /* wss only */
    lg_buf *in;
    lg_buf *msg;
    lg_buf *out;
} lg_conn;

typedef struct lg_worker {
    const lg_config *cfg;
    uint32_t k;     /* this worker's number */
    uint64_t first; /* global index of conns[0] */
    uint32_t count; /* connections of this worker */
    lg_conn *conns;
    int ep;
    lg_tls_ctx *tls_ctx; /* wss only */
    int up_fd;
    int down_fd;
    int phase;
    wsg_rand rng;
    uint8_t *rx;
    uint8_t *tx; /* frames for tx_conn, not yet written */
    size_t tx_len;
    size_t tx_cap;
    lg_conn *tx_conn;
    uint8_t *src_full; /* per source address: out of ports toward the target */
    uint32_t src_full_count;
    uint32_t *pending; /* slots of connections still opening */
    uint32_t npending;
    uint32_t max_pending;
    uint32_t started; /* connections started so far, in slot order */
    uint64_t t_start;
    double ramp_step_ns; /* between starts; 0 = no pacing */
    uint64_t ramp_deadline;
    uint64_t connect_timeout_ns;
    uint64_t next_sweep;
    uint64_t go;           /* start of the load, the same in every worker */
    uint64_t measure_from; /* intended send times from here on count */
    uint64_t load_end;
    uint64_t drain_end;
    double tick_ns;         /* fixed rate: between two messages of this worker */
    double tick_offset;     /* fixed rate: this worker's phase among workers */
    uint64_t tick;          /* fixed rate: the next message's number */
    bool loop_started;      /* closed loop: first messages sent */
    uint64_t outstanding;   /* echoes awaited, over all connections */
    uint64_t pongs_awaited; /* idle: end-of-hold pongs still to come */
    unsigned said;          /* diagnostics printed, one bit per kind */
    lg_result res;
} lg_worker;

/* Starts connecting connection c; on failure it is counted and GONE. */
void lg_conn_start(lg_worker *w, lg_conn *c, uint64_t now);

/* Handles epoll events for c. */
void lg_conn_event(lg_worker *w, lg_conn *c, uint32_t events, uint64_t now);

/* Counts a connection that did not open, says why (the first time for each
 * kind), and releases it. */
void lg_conn_fail(lg_worker *w, lg_conn *c, lg_fail kind, const char *why);

/* Counts an open connection as dropped (unless the run is over) and
 * releases it. */
void lg_conn_drop(lg_worker *w, lg_conn *c, const char *why);

/* Closes the socket and frees what c holds; c becomes GONE. */
void lg_conn_release(lg_worker *w, lg_conn *c);

/* Queues one timed message with intended send time `intended`. */
void lg_conn_send_message(lg_worker *w, lg_conn *c, uint64_t intended);

/* Queues a control frame (payload at most 125 bytes). */
void lg_conn_send_control(lg_worker *w, lg_conn *c, uint8_t opcode, const void *p, size_t n);

/* Writes what the tx scratch holds to its connection. */
void lg_conn_flush(lg_worker *w);

/* Prints a diagnostic line on stderr the first time `kind` (0..31) happens
 * in this worker, so that 100,000 equal failures make one line. */
void lg_say_once(lg_worker *w, unsigned kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum { LG_SAY_DROP = LG_FAIL_KINDS, LG_SAY_MISMATCH, LG_SAY_SOURCE, LG_SAY_SKIP, LG_SAY_STOP };

static inline uint64_t lg_conn_index(const lg_worker *w, const lg_conn *c)
{
    return w->first + (uint64_t)(c - w->conns);
}

#endif
