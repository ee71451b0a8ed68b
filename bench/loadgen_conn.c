/* A loadgen worker's connections: connecting from a source address, the
 * upgrade, reading and checking echoes, and writing (loadgen_conn.h). */
#include "loadgen_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LG_MIN_STASH 4096
/* Queued bytes past which a due message is skipped rather than queued: a
 * peer that stopped reading must not make us grow without bound. */
#define LG_OUT_CAP (4u << 20)
/* connect_from's code for a failed bind: beyond any errno. */
#define LG_EBIND 100000

static const char *const fail_names[LG_FAIL_KINDS] = {
    "refused", "timeout", "out of source ports", "handshake", "error", "not started",
};

void lg_say_once(lg_worker *w, unsigned kind, const char *fmt, ...)
{
    va_list ap;
    if (w->said & (1u << kind))
        return;
    w->said |= 1u << kind;
    fprintf(stderr, "loadgen[%u]: ", w->k);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- buffers ----------------------------------------------------------- */

/* Appends n bytes to *bp, moving live bytes to the front or growing as
 * needed. Returns 0, or -1 when memory runs out (that connection fails). */
static int buf_append(lg_buf **bp, const void *p, size_t n)
{
    lg_buf *b = *bp;
    size_t live = b ? b->len - b->off : 0;
    if (b && b->off > 0) {
        memmove(b->data, b->data + b->off, live);
        b->off = 0;
        b->len = (uint32_t)live;
    }
    if (b == NULL || b->cap - live < n) {
        size_t cap = b && b->cap ? b->cap : LG_MIN_STASH;
        while (cap < live + n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return -1;
        lg_buf *nb = realloc(b, sizeof(*nb) + cap);
        if (nb == NULL)
            return -1;
        nb->off = 0;
        nb->len = (uint32_t)live;
        nb->cap = (uint32_t)cap;
        *bp = b = nb;
    }
    memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
    return 0;
}

static void buf_free(lg_buf **bp)
{
    free(*bp);
    *bp = NULL;
}

/* ---- socket or TLS --------------------------------------------------------- */

/* send() and recv() for plain and TLS connections alike: >0 bytes moved,
 * 0 (reads) when the peer closed, -1 with errno (EAGAIN: try when epoll
 * says so) otherwise. */
static ssize_t conn_send(const lg_conn *c, const void *p, size_t n)
{
    if (c->tls)
        return lg_tls_write(c->tls, p, n);
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t conn_recv(const lg_conn *c, void *p, size_t n)
{
    if (c->tls)
        return lg_tls_read(c->tls, p, n);
    return recv(c->fd, p, n, 0);
}

/* ---- lifecycle ----------------------------------------------------------- */

static int set_events(lg_worker *w, lg_conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(c - w->conns)};
    return epoll_ctl(w->ep, op, c->fd, &ev);
}

static void pending_add(lg_worker *w, lg_conn *c)
{
    c->hs->slot = w->npending;
    w->pending[w->npending++] = (uint32_t)(c - w->conns);
}

static void pending_remove(lg_worker *w, lg_conn *c)
{
    uint32_t last = w->pending[--w->npending];
    w->pending[c->hs->slot] = last;
    w->conns[last].hs->slot = c->hs->slot;
}

void lg_conn_release(lg_worker *w, lg_conn *c)
{
    if (w->tx_conn == c) {
        w->tx_conn = NULL;
        w->tx_len = 0;
    }
    if (c->hs) {
        pending_remove(w, c);
        free(c->hs);
        c->hs = NULL;
    }
    if (c->tls) {
        lg_tls_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    buf_free(&c->in);
    buf_free(&c->msg);
    buf_free(&c->out);
    c->fd = -1;
    c->flags = 0;
    c->state = LC_GONE;
}

void lg_conn_fail(lg_worker *w, lg_conn *c, lg_fail kind, const char *why)
{
    w->res.fail[kind]++;
    lg_say_once(w, kind, "connection %llu not opened (%s): %s",
                (unsigned long long)lg_conn_index(w, c), fail_names[kind], why);
    lg_conn_release(w, c);
}

void lg_conn_drop(lg_worker *w, lg_conn *c, const char *why)
{
    if (w->phase != LG_PHASE_END) {
        w->res.dropped++;
        lg_say_once(w, LG_SAY_DROP, "connection %llu dropped: %s",
                    (unsigned long long)lg_conn_index(w, c), why);
    }
    /* Its echoes will never come: the drain must not wait for them. */
    w->outstanding -= c->inflight < w->outstanding ? c->inflight : w->outstanding;
    if ((c->flags & LC_F_PINGED) && !(c->flags & LC_F_PONGED) && w->pongs_awaited > 0)
        w->pongs_awaited--;
    lg_conn_release(w, c);
}

static lg_fail fail_kind(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return LG_FAIL_REFUSED;
    case ETIMEDOUT:
        return LG_FAIL_TIMEOUT;
    case EADDRNOTAVAIL:
        return LG_FAIL_ADDR;
    default:
        return LG_FAIL_OTHER;
    }
}

/* ---- connecting ------------------------------------------------------------ */

/* IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), which may then
 * reuse a port that other destinations already use from this address: one
 * source address reaches each ip:port through its own ~28,000 ports. */
static int bind_source(int fd, uint32_t addr)
{
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    return bind(fd, (struct sockaddr *)&a, sizeof(a));
}

/* Connects one socket from source `src` (when sources are given). Returns
 * the descriptor, or -errno. A failed bind (an address that is not local,
 * say) comes back as -LG_EBIND, so that only connect()'s EADDRNOTAVAIL reads
 * as "out of ports". */
static int connect_from(lg_worker *w, uint32_t src)
{
    const lg_config *cfg = w->cfg;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cfg->src_count > 0 && bind_source(fd, cfg->src_first + src) < 0) {
        close(fd);
        return -LG_EBIND;
    }
    if (connect(fd, (const struct sockaddr *)&cfg->dst, sizeof(cfg->dst)) == 0 ||
        errno == EINPROGRESS)
        return fd;
    int err = errno;
    close(fd);
    return -err;
}

/* Connection i starts at source i mod count and moves on while sources are
 * out of ports. Returns the descriptor, or -errno. */
static int open_socket(lg_worker *w, uint64_t index)
{
    uint32_t n = w->cfg->src_count;
    if (n == 0)
        return connect_from(w, 0);
    for (uint32_t t = 0; t < n && w->src_full_count < n; t++) {
        uint32_t src = (uint32_t)((index + t) % n);
        if (w->src_full[src])
            continue;
        int fd = connect_from(w, src);
        if (fd != -EADDRNOTAVAIL)
            return fd;
        w->src_full[src] = 1;
        w->src_full_count++;
        struct in_addr a = {htonl(w->cfg->src_first + src)};
        lg_say_once(w, LG_SAY_SOURCE, "source %s is out of ports; using the next ones",
                    inet_ntoa(a));
    }
    return -EADDRNOTAVAIL;
}

void lg_conn_start(lg_worker *w, lg_conn *c, uint64_t now)
{
    c->fd = -1;
    c->state = LC_CONNECTING;
    c->hs = malloc(sizeof(*c->hs));
    if (c->hs == NULL) {
        lg_conn_fail(w, c, LG_FAIL_OTHER, "out of memory");
        return;
    }
    c->hs->t0 = now;
    c->hs->len = 0;
    pending_add(w, c);
    int fd = open_socket(w, lg_conn_index(w, c));
    if (fd == -LG_EBIND) {
        lg_conn_fail(w, c, LG_FAIL_OTHER, "cannot bind its source address (not local?)");
        return;
    }
    if (fd < 0) {
        lg_conn_fail(w, c, fail_kind(-fd), strerror(-fd));
        return;
    }
    c->fd = fd;
    if (set_events(w, c, EPOLL_CTL_ADD, EPOLLOUT) < 0)
        lg_conn_fail(w, c, LG_FAIL_OTHER, strerror(errno));
}

static void send_request(lg_worker *w, lg_conn *c)
{
    char key[WSG_WS_KEY_LEN + 1];
    char req[1700];
    wsg_ws_make_key(&w->rng, key);
    wsg_ws_accept(wsg_str_make(key, WSG_WS_KEY_LEN), c->hs->accept);
    int n = lg_wire_request_ext(req, sizeof(req), w->cfg->host_header, w->cfg->path,
                                lg_conn_index(w, c), key, w->cfg->deflate);
    if (n < 0) {
        lg_conn_fail(w, c, LG_FAIL_OTHER, "request too long");
        return;
    }
    /* A fresh socket's buffer (or TLS session) takes a request this small
     * whole. */
    ssize_t sent = conn_send(c, req, (size_t)n);
    if (sent != n) {
        lg_conn_fail(w, c, sent < 0 ? fail_kind(errno) : LG_FAIL_OTHER,
                     sent < 0 ? strerror(errno) : "short write of the request");
        return;
    }
    c->state = LC_HANDSHAKE;
    if (set_events(w, c, EPOLL_CTL_MOD, EPOLLIN) < 0)
        lg_conn_fail(w, c, LG_FAIL_OTHER, strerror(errno));
}

/* wss: drives the TLS handshake; the upgrade request follows it. */
static void on_tls_progress(lg_worker *w, lg_conn *c)
{
    char why[128];
    int r = lg_tls_handshake(c->tls, why, sizeof(why));
    if (r < 0)
        lg_conn_fail(w, c, LG_FAIL_HANDSHAKE, why);
    else if (r == 0 && set_events(w, c, EPOLL_CTL_MOD, lg_tls_want(c->tls)) < 0)
        lg_conn_fail(w, c, LG_FAIL_OTHER, strerror(errno));
    else if (r == 1)
        send_request(w, c);
}

static void on_connected(lg_worker *w, lg_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        lg_conn_fail(w, c, fail_kind(err), strerror(err));
        return;
    }
    if (w->tls_ctx == NULL) {
        send_request(w, c);
        return;
    }
    c->tls = lg_tls_new(w->tls_ctx, c->fd);
    if (c->tls == NULL) {
        lg_conn_fail(w, c, LG_FAIL_OTHER, "out of memory for TLS");
        return;
    }
    c->state = LC_TLS;
    on_tls_progress(w, c);
}

static const char *handshake_error(int rc, int status, char *buf, size_t cap)
{
    switch (rc) {
    case LG_HS_BAD_STATUS:
        snprintf(buf, cap, "status %d instead of 101", status);
        return buf;
    case LG_HS_BAD_ACCEPT:
        return "wrong or missing Sec-WebSocket-Accept";
    case LG_HS_BAD_UPGRADE:
        return "no Upgrade: websocket";
    case LG_HS_NO_DEFLATE:
        return "permessage-deflate offered but not accepted";
    default:
        return "response head too long";
    }
}

static void on_data(lg_worker *w, lg_conn *c, uint8_t *p, size_t n, uint64_t now);

static void conn_open(lg_worker *w, lg_conn *c, size_t head, uint64_t now)
{
    lg_hs *hs = c->hs;
    size_t extra = hs->len - head;
    lg_hist_record(&w->res.handshake, (now - hs->t0) / 1000);
    w->res.connected++;
    /* A server may send frames right behind its 101. */
    memcpy(w->rx, hs->head + head, extra);
    pending_remove(w, c);
    free(hs);
    c->hs = NULL;
    c->state = LC_OPEN;
    if (extra > 0)
        on_data(w, c, w->rx, extra, now);
}

static void on_handshake_readable(lg_worker *w, lg_conn *c, uint64_t now)
{
    lg_hs *hs = c->hs;
    char why[64];
    int status;
    ssize_t r = conn_recv(c, hs->head + hs->len, LG_HEAD_MAX - hs->len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        lg_conn_fail(w, c, LG_FAIL_HANDSHAKE,
                     r == 0 ? "closed during the handshake" : strerror(errno));
        return;
    }
    hs->len += (uint32_t)r;
    int head = lg_wire_response(hs->head, hs->len, hs->accept, &status);
    if (head > 0 && w->cfg->deflate && !lg_wire_accepts_deflate(hs->head, (size_t)head))
        head = LG_HS_NO_DEFLATE;
    if (head < 0)
        lg_conn_fail(w, c, LG_FAIL_HANDSHAKE, handshake_error(head, status, why, sizeof(why)));
    else if (head > 0)
        conn_open(w, c, (size_t)head, now);
}

/* ---- writing ------------------------------------------------------------------ */

/* Writes first and queues only what the socket does not take (STYLE.md,
 * habit 4). A write error is left for the read side to find: the socket
 * is shut down, epoll reports it, and the connection is dropped there, so
 * nothing is freed in the middle of a caller's work (habit 3). */
static void conn_write(lg_worker *w, lg_conn *c, const uint8_t *p, size_t n)
{
    while (c->out == NULL && n > 0) {
        ssize_t s = conn_send(c, p, n);
        if (s < 0 && errno == EINTR)
            continue;
        if (s < 0 && errno == EAGAIN)
            break;
        if (s < 0) {
            shutdown(c->fd, SHUT_RDWR);
            return;
        }
        p += s;
        n -= (size_t)s;
    }
    if (n == 0)
        return;
    if (buf_append(&c->out, p, n) < 0) {
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    if (!(c->flags & LC_F_WRITING)) {
        c->flags |= LC_F_WRITING;
        set_events(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
    }
}

void lg_conn_flush(lg_worker *w)
{
    lg_conn *c = w->tx_conn;
    size_t n = w->tx_len;
    w->tx_conn = NULL;
    w->tx_len = 0;
    if (c && n > 0)
        conn_write(w, c, w->tx, n);
}

/* Room for n more bytes of frames for c in the tx scratch, which holds one
 * connection's frames at a time so that a burst leaves in one write. */
static uint8_t *tx_reserve(lg_worker *w, lg_conn *c, size_t n)
{
    if (w->tx_conn != c || w->tx_len + n > w->tx_cap)
        lg_conn_flush(w);
    w->tx_conn = c;
    return w->tx + w->tx_len;
}

void lg_conn_send_message(lg_worker *w, lg_conn *c, uint64_t intended)
{
    bool measured = intended >= w->measure_from;
    uint8_t key[4];
    if (c->out && c->out->len - c->out->off > LG_OUT_CAP) {
        w->res.skipped += measured;
        lg_say_once(w, LG_SAY_SKIP, "connection %llu: over 4 MiB queued; skipping messages",
                    (unsigned long long)lg_conn_index(w, c));
        return;
    }
    wsg_rand_bytes(&w->rng, key, sizeof(key));
    uint8_t *p = tx_reserve(w, c, LG_FRAME_SIZE(w->cfg->payload));
    if (w->cfg->deflate)
        w->tx_len += lg_wire_message_deflated(p, w->cfg->payload, lg_conn_index(w, c),
                                              c->seq_tx++, intended, key);
    else
        w->tx_len +=
            lg_wire_message(p, w->cfg->payload, lg_conn_index(w, c), c->seq_tx++, intended, key);
    c->inflight++;
    w->outstanding++;
    w->res.sent += measured;
}

void lg_conn_send_control(lg_worker *w, lg_conn *c, uint8_t opcode, const void *p, size_t n)
{
    uint8_t *out = tx_reserve(w, c, WSG_WS_MAX_CONTROL_FRAME);
    w->tx_len += wsg_ws_control_frame(out, opcode, p, n, &w->rng);
}

static void on_writable(lg_worker *w, lg_conn *c)
{
    lg_buf *out = c->out;
    while (out && out->off < out->len) {
        ssize_t s = conn_send(c, out->data + out->off, out->len - out->off);
        if (s < 0 && errno == EINTR)
            continue;
        if (s < 0 && errno == EAGAIN)
            return;
        if (s < 0) {
            lg_conn_drop(w, c, strerror(errno));
            return;
        }
        out->off += (uint32_t)s;
    }
    buf_free(&c->out);
    c->flags &= (uint8_t)~LC_F_WRITING;
    set_events(w, c, EPOLL_CTL_MOD, EPOLLIN);
}

/* ---- reading ------------------------------------------------------------------- */

static void mismatch(lg_worker *w, lg_conn *c, const char *what)
{
    w->res.mismatches++;
    lg_say_once(w, LG_SAY_MISMATCH, "connection %llu: %s", (unsigned long long)lg_conn_index(w, c),
                what);
}

static void on_message(lg_worker *w, lg_conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    const lg_config *cfg = w->cfg;
    lg_echo e;
    if (cfg->mode != LG_MODE_ECHO) {
        mismatch(w, c, "a data message on an idle connection");
        return;
    }
    if (c->inflight > 0) {
        c->inflight--;
        w->outstanding--;
    }
    if (lg_wire_check(p, n, cfg->payload, lg_conn_index(w, c), &e) < 0) {
        mismatch(w, c, "an echo that differs from every message sent");
    } else if (e.seq < c->seq_rx || e.seq >= c->seq_tx) {
        mismatch(w, c, "an echo out of order");
    } else {
        /* Earlier messages whose echoes never came (lost with a backend
         * that died): their echoes cannot come after this one, so they
         * are no longer awaited. They count as lost, not as mismatches. */
        uint64_t skipped = e.seq - c->seq_rx;
        if (skipped > 0) {
            w->res.gaps++;
            skipped = skipped < c->inflight ? skipped : c->inflight;
            c->inflight -= (uint32_t)skipped;
            w->outstanding -= skipped < w->outstanding ? skipped : w->outstanding;
        }
        c->seq_rx = e.seq + 1;
        if (e.sent_ns >= w->measure_from) {
            w->res.received++;
            lg_hist_record(&w->res.rtt, now > e.sent_ns ? (now - e.sent_ns) / 1000 : 0);
        }
    }
    /* Closed loop: each echo sends the next message, timed from now. */
    if (cfg->inflight > 0 && w->phase == LG_PHASE_LOAD && now < w->load_end)
        lg_conn_send_message(w, c, now);
}

/* A whole message's payload: plain, or stored DEFLATE blocks to undo (in
 * place) when it came with RSV1. */
static void on_payload(lg_worker *w, lg_conn *c, uint8_t *p, size_t n, uint64_t now)
{
    if (c->flags & LC_F_DEFLATED) {
        long plain = lg_wire_unstore(p, n);
        if (plain < 0) {
            mismatch(w, c, "a compressed echo that is not stored DEFLATE blocks");
            if (c->inflight > 0) {
                c->inflight--;
                w->outstanding--;
            }
            return;
        }
        n = (size_t)plain;
    }
    on_message(w, c, p, n, now);
}

static void on_pong(lg_worker *w, lg_conn *c)
{
    if ((c->flags & LC_F_PINGED) && !(c->flags & LC_F_PONGED)) {
        c->flags |= LC_F_PONGED;
        w->pongs_awaited--;
    }
}

/* Collects a fragmented message. Returns 0, or -1 once c is dropped. */
static void on_payload(lg_worker *w, lg_conn *c, uint8_t *p, size_t n, uint64_t now);

static int on_fragment(lg_worker *w, lg_conn *c, const wsg_ws_header *h, const uint8_t *p,
                       uint64_t now)
{
    size_t have = c->msg ? c->msg->len : 0;
    if (have + h->len > LG_MSG_MAX || buf_append(&c->msg, p, (size_t)h->len) < 0) {
        lg_conn_drop(w, c, "fragmented message too long");
        return -1;
    }
    if (h->fin) {
        on_payload(w, c, c->msg->data, c->msg->len, now);
        buf_free(&c->msg);
    }
    return 0;
}

/* Handles one whole frame. Returns 0, or -1 once c is dropped. */
static int on_frame(lg_worker *w, lg_conn *c, const wsg_ws_header *h, uint8_t *p, uint64_t now)
{
    bool control = h->opcode >= WSG_WS_OP_CLOSE;
    if (control && (!h->fin || h->len > WSG_WS_MAX_CONTROL_PAYLOAD)) {
        lg_conn_drop(w, c, "bad control frame from the server");
        return -1;
    }
    bool first = h->opcode == WSG_WS_OP_TEXT || h->opcode == WSG_WS_OP_BINARY;
    if (h->rsv != 0 && !(h->rsv == 4 && first && w->cfg->deflate)) {
        lg_conn_drop(w, c, "RSV bits the connection did not negotiate");
        return -1;
    }
    switch (h->opcode) {
    case WSG_WS_OP_TEXT:
    case WSG_WS_OP_BINARY:
        if (c->msg != NULL)
            break;
        c->flags = h->rsv ? (uint8_t)(c->flags | LC_F_DEFLATED)
                          : (uint8_t)(c->flags & ~LC_F_DEFLATED);
        if (h->fin) {
            on_payload(w, c, p, (size_t)h->len, now);
            return 0;
        }
        return on_fragment(w, c, h, p, now);
    case WSG_WS_OP_CONT:
        if (c->msg != NULL)
            return on_fragment(w, c, h, p, now);
        break;
    case WSG_WS_OP_PING:
        lg_conn_send_control(w, c, WSG_WS_OP_PONG, p, (size_t)h->len);
        return 0;
    case WSG_WS_OP_PONG:
        on_pong(w, c);
        return 0;
    case WSG_WS_OP_CLOSE:
        lg_conn_drop(w, c, "the server sent a close frame");
        return -1;
    }
    lg_conn_drop(w, c, "unexpected frame from the server");
    return -1;
}

/* Keeps the incomplete frame p[0..n) for the next read; `need` is its whole
 * size when its header is in, so that one allocation takes it. */
static int stash(lg_conn *c, const uint8_t *p, size_t n, size_t need)
{
    size_t cap = need > n ? need : n;
    cap = cap < LG_MIN_STASH ? LG_MIN_STASH : cap;
    if (c->in && c->in->cap >= cap) {
        memmove(c->in->data, p, n);
        c->in->off = 0;
        c->in->len = (uint32_t)n;
        return 0;
    }
    lg_buf *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return -1;
    memcpy(b->data, p, n);
    b->off = 0;
    b->len = (uint32_t)n;
    b->cap = (uint32_t)cap;
    free(c->in);
    c->in = b;
    return 0;
}

static void on_data(lg_worker *w, lg_conn *c, uint8_t *p, size_t n, uint64_t now)
{
    size_t used = 0;
    size_t need = 0;
    while (used < n) {
        wsg_ws_header h;
        int size = wsg_ws_header_parse(p + used, n - used, &h);
        if (size == WSG_WS_AGAIN)
            break;
        if (size < 0 || h.masked || h.len > LG_MSG_MAX + LG_STORED_OVERHEAD(LG_MSG_MAX)) {
            lg_conn_drop(w, c, "protocol error from the server");
            return;
        }
        if (h.len > n - used - (size_t)size) {
            need = (size_t)size + (size_t)h.len;
            break;
        }
        if (on_frame(w, c, &h, p + used + size, now) < 0)
            return;
        used += (size_t)size + (size_t)h.len;
    }
    lg_conn_flush(w);
    if (used == n)
        buf_free(&c->in);
    else if (stash(c, p + used, n - used, need) < 0)
        lg_conn_drop(w, c, "out of memory");
}

static void read_once(lg_worker *w, lg_conn *c, uint64_t now)
{
    uint8_t *dst = w->rx;
    size_t room = LG_RX_SIZE;
    if (c->in) {
        dst = c->in->data + c->in->len;
        room = c->in->cap - c->in->len;
    }
    /* stash() sizes the buffer for the frame it waits for: room > 0. */
    ssize_t r = room ? conn_recv(c, dst, room) : 0;
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        lg_conn_drop(w, c, r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    if (c->in) {
        c->in->len += (uint32_t)r;
        on_data(w, c, c->in->data, c->in->len, now);
    } else {
        on_data(w, c, dst, (size_t)r, now);
    }
}

/* A TLS session may hold decrypted bytes that epoll cannot see; they are
 * read before going back to the loop. One record is at most 16 KiB, so the
 * bound is never what stops a healthy connection. */
static void on_open_readable(lg_worker *w, lg_conn *c, uint64_t now)
{
    read_once(w, c, now);
    for (int i = 0; i < 64 && c->state == LC_OPEN && c->tls && lg_tls_pending(c->tls) > 0; i++)
        read_once(w, c, now);
}

void lg_conn_event(lg_worker *w, lg_conn *c, uint32_t events, uint64_t now)
{
    switch (c->state) {
    case LC_CONNECTING:
        on_connected(w, c);
        break;
    case LC_TLS:
        on_tls_progress(w, c);
        break;
    case LC_HANDSHAKE:
        on_handshake_readable(w, c, now);
        break;
    case LC_OPEN:
        if (events & EPOLLOUT)
            on_writable(w, c);
        if (c->state == LC_OPEN && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            on_open_readable(w, c, now);
        break;
    }
}
