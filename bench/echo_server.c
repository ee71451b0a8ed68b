/* echo_server: a lean WebSocket echo backend for benchmarks (bench/README.md).
 *
 * One level-triggered epoll loop per process over non-blocking sockets. With
 * --procs N the parent forks N workers that each bind every port with
 * SO_REUSEPORT: the kernel spreads new connections over them, so each worker
 * stays under its own descriptor limit, and the parent only supervises.
 *
 * Memory: a connection is a 24-byte slot in an array indexed by descriptor.
 * It holds a buffer only while a request or frame is incomplete or while the
 * socket refuses our answer. Reads go to one scratch buffer per process and
 * the client's frames become their echoes in place there: an unmasked server
 * frame is 4 bytes shorter than the masked client frame it answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/str.h"
#include "ws/ws.h"

#define ES_MAX_PORTS 1024
#define ES_MAX_PROCS 64
#define ES_SCRATCH (256 * 1024)
#define ES_MIN_STASH 4096
#define ES_MAX_HEAD 8192
#define ES_MAX_FRAME (16u << 20)
#define ES_ACCEPT_BATCH 64
#define ES_EVENTS 512
#define ES_ACCEPT_PAUSE_MS 100

/* What an epoll event refers to, in the top half of its u64. */
enum { ES_TAG_CONN = 0, ES_TAG_LISTEN = 1, ES_TAG_SIGNAL = 2 };

enum { ES_FREE = 0, ES_HANDSHAKE, ES_OPEN, ES_CLOSING };

/* Bytes kept for one connection: data[off..len) are live, cap allocated.
 * An incomplete request or frame always starts at data[0] (off == 0). */
typedef struct es_buf {
    size_t off;
    size_t len;
    size_t cap;
    uint8_t data[];
} es_buf;

typedef struct es_conn {
    uint8_t state;
    bool deflate;    /* permessage-deflate accepted: RSV1 may be set */
    uint32_t events; /* what epoll watches on this descriptor now */
    es_buf *in;      /* an incomplete request or frame; NULL otherwise */
    es_buf *out;     /* what the socket has not taken yet; NULL otherwise */
} es_conn;

typedef struct es_options {
    const char *host;
    uint16_t ports[ES_MAX_PORTS];
    unsigned nports;
    unsigned procs;
    uint64_t stall_after;
    unsigned stall_ms;
    bool log_paths;
} es_options;

typedef struct es_server {
    es_options *opt;
    int ep;
    int sig_fd;
    int listen_fds[ES_MAX_PORTS];
    es_conn *conns; /* indexed by descriptor, max_fd slots */
    size_t max_fd;
    uint8_t *scratch;
    uint64_t echoed; /* data messages echoed by this process */
    uint64_t resume_accept_ms;
    bool accept_paused;
    bool stalled;
    bool stop;
} es_server;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static es_buf *buf_new(size_t cap)
{
    es_buf *b = malloc(sizeof(*b) + cap);
    if (b) {
        b->off = 0;
        b->len = 0;
        b->cap = cap;
    }
    return b;
}

/* Appends n bytes, growing *bp as needed. Returns 0, or -1 when memory runs
 * out: per-connection allocations fail only that connection. */
static int buf_append(es_buf **bp, const void *p, size_t n)
{
    es_buf *b = *bp;
    if (b && b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b == NULL || b->cap - b->len < n) {
        size_t live = b ? b->len : 0;
        size_t cap = b ? b->cap : ES_MIN_STASH;
        while (cap < live + n)
            cap *= 2;
        es_buf *nb = realloc(b, sizeof(*nb) + cap);
        if (nb == NULL)
            return -1;
        nb->off = 0;
        nb->len = live;
        nb->cap = cap;
        *bp = b = nb;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* ---- the upgrade request, without sockets ------------------------------- */

typedef struct es_request {
    wsg_str target;
    wsg_str key;
    bool upgrade;
    bool deflate; /* permessage-deflate offered */
} es_request;

/* Splits off the next CRLF-terminated line of a head. */
static wsg_str next_line(wsg_str *rest)
{
    wsg_str line = wsg_str_next_item(rest, '\n');
    if (line.len > 0 && line.p[line.len - 1] == '\r')
        line.len--;
    return line;
}

/* Whether an extension list names permessage-deflate, whatever its
 * parameters: the answer always takes no context takeover both ways, and
 * then echoing a compressed message unchanged is a valid answer to it. */
static bool offers_deflate(wsg_str list)
{
    while (list.len > 0) {
        wsg_str element = wsg_str_next_item(&list, ',');
        if (wsg_str_eq_nocase(wsg_str_trim(wsg_str_next_item(&element, ';')),
                              WSG_STR("permessage-deflate")))
            return true;
    }
    return false;
}

static void request_header(es_request *rq, wsg_str line)
{
    wsg_str value = line;
    wsg_str name = wsg_str_next_item(&value, ':');
    if (wsg_str_eq_nocase(name, WSG_STR("Sec-WebSocket-Key")))
        rq->key = wsg_str_trim(value);
    else if (wsg_str_eq_nocase(name, WSG_STR("Upgrade")))
        rq->upgrade = wsg_str_list_has_token(value, WSG_STR("websocket"));
    else if (wsg_str_eq_nocase(name, WSG_STR("Sec-WebSocket-Extensions")))
        rq->deflate = rq->deflate || offers_deflate(value);
}

/* Reads an upgrade request head from p[0..n). Returns the head length when
 * it is complete and asks for a WebSocket, 0 when more bytes are needed,
 * -1 when it is malformed, too long or not an upgrade (answer 400). */
static long parse_request(const char *p, size_t n, es_request *rq)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (end == NULL)
        return n >= ES_MAX_HEAD ? -1 : 0;
    wsg_str rest = wsg_str_make(p, (size_t)(end - p) + 2);
    wsg_str line = next_line(&rest);
    memset(rq, 0, sizeof(*rq));
    if (!wsg_str_starts_with(line, WSG_STR("GET ")))
        return -1;
    const char *t = line.p + 4;
    const char *sp = memchr(t, ' ', line.len - 4);
    if (sp == NULL || sp == t)
        return -1;
    rq->target = wsg_str_make(t, (size_t)(sp - t));
    while (rest.len > 0)
        request_header(rq, next_line(&rest));
    if (!rq->upgrade || !wsg_ws_key_valid(rq->key))
        return -1;
    return (long)(end - p) + 4;
}

/* ---- frames to echoes, without sockets ---------------------------------- */

enum { ES_GO = 0, ES_PEER_CLOSED, ES_BAD };

typedef struct es_echo {
    size_t used;       /* input bytes consumed */
    size_t out_len;    /* answer bytes, written over the front of the input */
    size_t need;       /* whole size of the incomplete frame at `used`, once known */
    uint64_t messages; /* data messages whose last frame was echoed */
    int verdict;
    uint16_t close_code; /* ES_BAD: what to close the client with */
} es_echo;

/* The checks a server owes a client frame (RFC 6455 section 5). Returns 0
 * or the close code. */
static uint16_t frame_check(const wsg_ws_header *h, bool deflate)
{
    /* With permessage-deflate, RSV1 marks a compressed message: on its
     * first frame only. */
    bool rsv1_ok = deflate && h->rsv == 4 &&
                   (h->opcode == WSG_WS_OP_TEXT || h->opcode == WSG_WS_OP_BINARY);
    if (!h->masked || (h->rsv != 0 && !rsv1_ok))
        return WSG_WS_CLOSE_PROTOCOL;
    switch (h->opcode) {
    case WSG_WS_OP_CONT:
    case WSG_WS_OP_TEXT:
    case WSG_WS_OP_BINARY:
        return h->len > ES_MAX_FRAME ? WSG_WS_CLOSE_TOO_BIG : 0;
    case WSG_WS_OP_CLOSE:
    case WSG_WS_OP_PING:
    case WSG_WS_OP_PONG:
        return h->fin && h->len <= WSG_WS_MAX_CONTROL_PAYLOAD ? 0 : WSG_WS_CLOSE_PROTOCOL;
    default:
        return WSG_WS_CLOSE_PROTOCOL;
    }
}

/* Writes the answer to one whole frame at p + e->out_len. That spot is never
 * past the frame's own start, and the answer's header is 4 bytes shorter than
 * the frame's, so neither write reaches payload bytes not yet moved. */
static void echo_one(uint8_t *p, es_echo *e, const wsg_ws_header *h, uint8_t *payload)
{
    uint8_t opcode = h->opcode;
    size_t len = (size_t)h->len;
    wsg_ws_mask(payload, len, h->mask, 0);
    if (opcode == WSG_WS_OP_PONG)
        return;
    if (opcode == WSG_WS_OP_PING) {
        opcode = WSG_WS_OP_PONG;
    } else if (opcode == WSG_WS_OP_CLOSE) {
        len = len < 2 ? 0 : 2; /* echo the code; the reason is the client's */
        e->verdict = ES_PEER_CLOSED;
    } else if (h->fin) {
        e->messages++;
    }
    uint8_t *out = p + e->out_len;
    /* A compressed message goes back compressed, RSV1 and all. */
    size_t hs = wsg_ws_header_write(out, h->fin, h->rsv, opcode, len, NULL);
    memmove(out + hs, payload, len);
    e->out_len += hs + len;
}

/* Answers the whole frames at the front of p[0..n), in place. Fragmented
 * messages are echoed frame by frame, which keeps their boundaries. */
static void echo_frames(uint8_t *p, size_t n, bool deflate, es_echo *e)
{
    memset(e, 0, sizeof(*e));
    while (e->used < n && e->verdict == ES_GO) {
        wsg_ws_header h;
        uint8_t *f = p + e->used;
        size_t left = n - e->used;
        int size = wsg_ws_header_parse(f, left, &h);
        if (size == WSG_WS_AGAIN)
            return;
        uint16_t code = size < 0 ? WSG_WS_CLOSE_PROTOCOL : frame_check(&h, deflate);
        if (code) {
            e->verdict = ES_BAD;
            e->close_code = code;
            return;
        }
        if (h.len > left - (size_t)size) {
            e->need = (size_t)size + (size_t)h.len;
            return;
        }
        echo_one(p, e, &h, f + size);
        e->used += (size_t)size + (size_t)h.len;
    }
}

/* ---- connections --------------------------------------------------------- */

static void set_events(es_server *s, int fd, uint32_t events)
{
    es_conn *c = &s->conns[fd];
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)fd};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev);
    c->events = events;
}

static void conn_close(es_server *s, int fd)
{
    es_conn *c = &s->conns[fd];
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof(*c));
    close(fd); /* also leaves the epoll set: nothing else holds the socket */
}

/* Writes first and queues only what the socket will not take (STYLE.md,
 * habit 4). While anything is queued the connection stops reading, so a
 * client that does not read cannot make us hold more than one read's worth.
 * Returns 0, or -1 when the connection must close. */
static int send_bytes(es_server *s, int fd, const uint8_t *p, size_t n)
{
    es_conn *c = &s->conns[fd];
    if (c->out == NULL) {
        while (n > 0) {
            ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno != EAGAIN)
                return -1;
            if (w < 0)
                break;
            p += w;
            n -= (size_t)w;
        }
    }
    if (n == 0)
        return 0;
    if (buf_append(&c->out, p, n) < 0)
        return -1;
    set_events(s, fd, EPOLLOUT);
    return 0;
}

static void on_writable(es_server *s, int fd)
{
    es_conn *c = &s->conns[fd];
    es_buf *out = c->out;
    while (out && out->off < out->len) {
        ssize_t w = send(fd, out->data + out->off, out->len - out->off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        if (w < 0) {
            conn_close(s, fd);
            return;
        }
        out->off += (size_t)w;
    }
    free(c->out);
    c->out = NULL;
    if (c->state == ES_CLOSING)
        conn_close(s, fd);
    else
        set_events(s, fd, EPOLLIN);
}

/* Sends a final frame or response, then closes once it has left. */
static void finish(es_server *s, int fd, const void *p, size_t n)
{
    es_conn *c = &s->conns[fd];
    c->state = ES_CLOSING;
    if (send_bytes(s, fd, p, n) < 0 || c->out == NULL)
        conn_close(s, fd);
}

/* Keeps the unconsumed tail p[0..n) for the next read. `need` is the size of
 * the frame it starts, when known, so that one allocation takes it whole. */
static int stash(es_conn *c, const uint8_t *p, size_t n, size_t need)
{
    size_t cap = need > n ? need : n;
    cap = cap < ES_MIN_STASH ? ES_MIN_STASH : cap;
    if (c->in && c->in->cap >= cap) {
        memmove(c->in->data, p, n);
        c->in->len = n;
        return 0;
    }
    es_buf *b = buf_new(cap);
    if (b == NULL)
        return -1;
    memcpy(b->data, p, n);
    b->len = n;
    free(c->in);
    c->in = b;
    return 0;
}

static void forget_stash(es_conn *c)
{
    free(c->in);
    c->in = NULL;
}

static void on_frames(es_server *s, int fd, uint8_t *p, size_t n)
{
    es_conn *c = &s->conns[fd];
    es_echo e;
    echo_frames(p, n, c->deflate, &e);
    s->echoed += e.messages;
    if (e.out_len > 0 && send_bytes(s, fd, p, e.out_len) < 0) {
        conn_close(s, fd);
        return;
    }
    if (e.verdict == ES_PEER_CLOSED) {
        finish(s, fd, NULL, 0);
        return;
    }
    if (e.verdict == ES_BAD) {
        uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
        finish(s, fd, frame, wsg_ws_close_frame(frame, e.close_code, "echo_server", NULL));
        return;
    }
    if (e.used == n)
        forget_stash(c);
    else if (stash(c, p + e.used, n - e.used, e.need) < 0)
        conn_close(s, fd);
}

static void on_request(es_server *s, int fd, uint8_t *p, size_t n)
{
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                              "Content-Length: 0\r\n\r\n";
    es_request rq;
    long head = parse_request((const char *)p, n, &rq);
    if (head < 0) {
        finish(s, fd, bad, sizeof(bad) - 1);
        return;
    }
    if (head == 0) {
        if (stash(&s->conns[fd], p, n, ES_MAX_HEAD) < 0)
            conn_close(s, fd);
        return;
    }
    char accept[WSG_WS_ACCEPT_LEN + 1];
    char reply[256];
    wsg_ws_accept(rq.key, accept);
    int len = snprintf(reply, sizeof(reply),
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                       accept,
                       rq.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                    "server_no_context_takeover; client_no_context_takeover\r\n"
                                  : "");
    s->conns[fd].deflate = rq.deflate;
    if (s->opt->log_paths)
        fprintf(stderr, "path %.*s\n", (int)rq.target.len, rq.target.p);
    s->conns[fd].state = ES_OPEN;
    if (send_bytes(s, fd, (const uint8_t *)reply, (size_t)len) < 0) {
        conn_close(s, fd);
        return;
    }
    /* A client may send frames right behind its request. */
    if ((size_t)head < n)
        on_frames(s, fd, p + head, n - (size_t)head);
    else
        forget_stash(&s->conns[fd]);
}

static void on_readable(es_server *s, int fd)
{
    es_conn *c = &s->conns[fd];
    uint8_t *dst = s->scratch;
    size_t room = ES_SCRATCH;
    if (c->in) {
        dst = c->in->data + c->in->len;
        room = c->in->cap - c->in->len;
    }
    /* stash() sizes the buffer for the frame it waits for, so room is never
     * 0; if it were, the frame could not complete. */
    ssize_t r = room ? recv(fd, dst, room, 0) : 0;
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(s, fd);
        return;
    }
    uint8_t *p = dst;
    size_t n = (size_t)r;
    if (c->in) {
        c->in->len += n;
        p = c->in->data;
        n = c->in->len;
    }
    if (c->state == ES_HANDSHAKE)
        on_request(s, fd, p, n);
    else
        on_frames(s, fd, p, n);
}

static void on_conn_event(es_server *s, int fd, uint32_t events)
{
    if (events & EPOLLERR) {
        conn_close(s, fd);
        return;
    }
    if (events & EPOLLOUT)
        on_writable(s, fd);
    uint8_t state = s->conns[fd].state;
    if (state == ES_CLOSING && (events & EPOLLHUP))
        conn_close(s, fd);
    else if (state != ES_FREE && state != ES_CLOSING && (events & (EPOLLIN | EPOLLHUP)))
        on_readable(s, fd);
}

/* ---- listening ----------------------------------------------------------- */

static void set_accepting(es_server *s, bool on)
{
    for (unsigned i = 0; i < s->opt->nports; i++) {
        struct epoll_event ev = {.events = on ? EPOLLIN : 0,
                                 .data.u64 = (uint64_t)ES_TAG_LISTEN << 32 | i};
        epoll_ctl(s->ep, EPOLL_CTL_MOD, s->listen_fds[i], &ev);
    }
    s->accept_paused = !on;
}

/* Out of descriptors: a level-triggered listener would fire in a loop, so
 * listeners sleep for a while and connections wait in the backlog. */
static void pause_accepting(es_server *s)
{
    if (!s->accept_paused)
        fprintf(stderr, "echo_server[%d]: out of descriptors, pausing accept for %d ms\n",
                (int)getpid(), ES_ACCEPT_PAUSE_MS);
    set_accepting(s, false);
    s->resume_accept_ms = now_ms() + ES_ACCEPT_PAUSE_MS;
}

static void on_accept(es_server *s, int lfd)
{
    for (int i = 0; i < ES_ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == ECONNABORTED || errno == EINTR))
            continue;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
            pause_accepting(s);
        if (fd < 0)
            return;
        int one = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if ((size_t)fd >= s->max_fd || epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
        s->conns[fd] = (es_conn){.state = ES_HANDSHAKE, .events = EPOLLIN};
    }
}

/* Binds host:*port (0 picks one, written back). SO_REUSEPORT only with
 * several workers: alone, a second server on the same port should fail
 * loudly instead of quietly taking half of the connections. */
static int open_listener(const es_options *o, uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    socklen_t alen = sizeof(a);
    int one = 1;
    inet_pton(AF_INET, o->host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (o->procs > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail_fd;
    /* The kernel caps the backlog at net.core.somaxconn. */
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 65535) < 0)
        goto fail_fd;
    if (getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        *port = ntohs(a.sin_port);
    return fd;
fail_fd:
    close(fd);
fail:
    fprintf(stderr, "echo_server: cannot listen on %s:%u: %s\n", o->host, *port, strerror(errno));
    return -1;
}

/* ---- one serving process -------------------------------------------------- */

static int server_add(es_server *s, int fd, uint64_t tag, uint32_t id)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag << 32 | id};
    return epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void server_deinit(es_server *s)
{
    for (size_t fd = 0; s->conns && fd < s->max_fd; fd++) {
        if (s->conns[fd].state != ES_FREE)
            conn_close(s, (int)fd);
    }
    for (unsigned i = 0; i < s->opt->nports; i++) {
        if (s->listen_fds[i] >= 0)
            close(s->listen_fds[i]);
    }
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    if (s->ep >= 0)
        close(s->ep);
    free(s->conns);
    free(s->scratch);
}

/* Sets up the loop; on failure what was made is left for server_deinit. */
static int server_init(es_server *s, es_options *o)
{
    struct rlimit rl;
    sigset_t set;
    memset(s, 0, sizeof(*s));
    s->opt = o;
    s->ep = -1;
    s->sig_fd = -1;
    for (unsigned i = 0; i < o->nports; i++)
        s->listen_fds[i] = -1;
    getrlimit(RLIMIT_NOFILE, &rl);
    s->max_fd = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
    s->conns = calloc(s->max_fd, sizeof(*s->conns));
    s->scratch = malloc(ES_SCRATCH);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->conns == NULL || s->scratch == NULL || s->ep < 0)
        goto fail;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sig_fd < 0 || server_add(s, s->sig_fd, ES_TAG_SIGNAL, 0) < 0)
        goto fail;
    for (unsigned i = 0; i < o->nports; i++) {
        s->listen_fds[i] = open_listener(o, &o->ports[i]);
        if (s->listen_fds[i] < 0)
            return -1; /* open_listener said why */
        if (server_add(s, s->listen_fds[i], ES_TAG_LISTEN, i) < 0)
            goto fail;
    }
    return 0;
fail:
    perror("echo_server: setup");
    return -1;
}

/* The test hook: stop serving once, for stall_ms, after stall_after echoed
 * messages. Sleeping in the loop is the point: nothing is read, answered
 * or accepted meanwhile, as when a backend stops in a long GC pause. */
static void maybe_stall(es_server *s)
{
    if (s->opt->stall_ms == 0 || s->stalled || s->echoed < s->opt->stall_after)
        return;
    fprintf(stderr, "echo_server[%d]: stalling %u ms after %" PRIu64 " messages\n", (int)getpid(),
            s->opt->stall_ms, s->echoed);
    sleep_ms(s->opt->stall_ms);
    s->stalled = true;
}

static void dispatch(es_server *s, const struct epoll_event *ev)
{
    uint32_t tag = (uint32_t)(ev->data.u64 >> 32);
    uint32_t id = (uint32_t)ev->data.u64;
    struct signalfd_siginfo si;
    if (tag == ES_TAG_LISTEN) {
        on_accept(s, s->listen_fds[id]);
    } else if (tag == ES_TAG_SIGNAL) {
        while (read(s->sig_fd, &si, sizeof(si)) == sizeof(si))
            s->stop = true;
    } else {
        on_conn_event(s, (int)id, ev->events);
    }
}

static void serve(es_server *s)
{
    struct epoll_event evs[ES_EVENTS];
    while (!s->stop) {
        int timeout = -1;
        if (s->accept_paused) {
            uint64_t now = now_ms();
            timeout = s->resume_accept_ms > now ? (int)(s->resume_accept_ms - now) : 0;
        }
        int n = epoll_wait(s->ep, evs, ES_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror("echo_server: epoll_wait");
            return;
        }
        for (int i = 0; i < n; i++)
            dispatch(s, &evs[i]);
        if (s->accept_paused && now_ms() >= s->resume_accept_ms)
            set_accepting(s, true);
        maybe_stall(s);
    }
}

static void print_listening(const es_options *o)
{
    printf("listening %s ports ", o->host);
    for (unsigned i = 0; i < o->nports;) {
        unsigned j = i;
        while (j + 1 < o->nports && o->ports[j + 1] == o->ports[j] + 1)
            j++;
        printf(j > i ? "%s%u-%u" : "%s%u", i ? "," : "", o->ports[i], o->ports[j]);
        i = j + 1;
    }
    printf(" procs %u\n", o->procs);
    fflush(stdout);
}

/* Serves until SIGTERM or SIGINT. ready_fd < 0: alone, so announce the
 * ports; else tell the parent 'R' (ready) or 'E' (failed) through it. */
static int run_worker(es_options *o, int ready_fd)
{
    es_server s;
    int rc = server_init(&s, o);
    if (ready_fd >= 0) {
        ssize_t w = write(ready_fd, rc < 0 ? "E" : "R", 1);
        (void)w; /* a parent that is gone learns nothing either way */
        close(ready_fd);
    } else if (rc == 0) {
        print_listening(o);
    }
    if (rc == 0)
        serve(&s);
    server_deinit(&s);
    return rc == 0 ? 0 : 1;
}

/* ---- several processes ---------------------------------------------------- */

static unsigned count_ready(int fd, unsigned expected)
{
    unsigned ready = 0;
    char c;
    for (unsigned got = 0; got < expected;) {
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* every worker has written or died */
        got++;
        ready += c == 'R';
    }
    return ready;
}

/* Returns 0 on SIGTERM/SIGINT, 1 when a worker died on its own. */
static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGTERM || sig == SIGINT)
            return 0;
        if (sig == SIGCHLD) {
            fputs("echo_server: a worker exited; stopping the others\n", stderr);
            return 1;
        }
    }
}

static void stop_workers(const pid_t *pids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    for (unsigned i = 0; i < n; i++) {
        while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

static int supervise(es_options *o)
{
    pid_t pids[ES_MAX_PROCS];
    pid_t parent = getpid();
    unsigned started = 0;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        perror("echo_server: pipe");
        return 1;
    }
    for (; started < o->procs; started++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            close(ready[0]);
            /* Workers must not outlive a parent killed without a chance to
             * stop them. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            _exit(run_worker(o, ready[1]));
        }
        pids[started] = pid;
    }
    close(ready[1]);
    unsigned ok = count_ready(ready[0], started);
    close(ready[0]);
    int rc = 1;
    if (started == o->procs && ok == started) {
        print_listening(o);
        rc = wait_for_signal();
    } else {
        fprintf(stderr, "echo_server: %u of %u workers started\n", ok, o->procs);
    }
    stop_workers(pids, started);
    return rc;
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: echo_server [options]\n"
          "A WebSocket echo backend for benchmarks: completes the RFC 6455 handshake\n"
          "on any path, echoes text and binary frames unmasked, answers pings, and\n"
          "answers a close with a close.\n"
          "\n"
          "  --host ADDR         IPv4 address to listen on (default 127.0.0.1)\n"
          "  --port P            a port to listen on; repeatable; 0 picks a free one\n"
          "                      (with --procs 1 only)\n"
          "  --ports A-B         every port from A to B; one client address reaches one\n"
          "                      ip:port through ~28,000 ephemeral ports, so 100,000\n"
          "                      connections need 4 or more ports\n"
          "  --procs N           N worker processes sharing the ports with SO_REUSEPORT\n"
          "                      (default 1); each holds under its descriptor limit\n"
          "  --stall-after N     test hook: after N echoed messages a process stops\n"
          "  --stall-ms M        serving for M ms, once (per process)\n"
          "  --log-paths         print \"path <target>\" on stderr for each handshake\n"
          "  --help              this text\n"
          "\n"
          "Prints \"listening <host> ports <list> procs <N>\" on stdout when ready and\n"
          "exits with status 0 on SIGTERM or SIGINT.\n",
          f);
}

static int add_port(es_options *o, uint64_t port)
{
    for (unsigned i = 0; i < o->nports; i++) {
        if (o->ports[i] == port && port != 0) {
            fprintf(stderr, "echo_server: port %u given twice\n", (unsigned)port);
            return -1;
        }
    }
    if (o->nports == ES_MAX_PORTS) {
        fprintf(stderr, "echo_server: at most %d ports\n", ES_MAX_PORTS);
        return -1;
    }
    o->ports[o->nports++] = (uint16_t)port;
    return 0;
}

static int add_port_range(es_options *o, const char *arg)
{
    char first[16];
    uint64_t a, b;
    const char *dash = strchr(arg, '-');
    size_t flen = dash ? (size_t)(dash - arg) : 0;
    if (dash == NULL || flen >= sizeof(first))
        return -1;
    memcpy(first, arg, flen);
    first[flen] = '\0';
    if (parse_u64(first, 65535, &a) < 0 || parse_u64(dash + 1, 65535, &b) < 0 || a == 0 || a > b)
        return -1;
    for (uint64_t p = a; p <= b; p++) {
        if (add_port(o, p) < 0)
            return -1;
    }
    return 0;
}

static int check_options(const es_options *o)
{
    struct in_addr addr;
    if (inet_pton(AF_INET, o->host, &addr) != 1) {
        fprintf(stderr, "echo_server: --host wants an IPv4 address, not %s\n", o->host);
        return -1;
    }
    if (o->nports == 0) {
        fputs("echo_server: give --port or --ports\n", stderr);
        return -1;
    }
    for (unsigned i = 0; i < o->nports; i++) {
        if (o->ports[i] == 0 && (o->procs > 1 || o->nports > 1)) {
            fputs("echo_server: --port 0 needs --procs 1 and no other port\n", stderr);
            return -1;
        }
    }
    return 0;
}

/* Returns 0 to run, 1 when --help was shown, -1 on bad options. */
static int parse_options(int argc, char **argv, es_options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"ports", required_argument, NULL, 'P'},
        {"procs", required_argument, NULL, 'n'},
        {"stall-after", required_argument, NULL, 'a'},
        {"stall-ms", required_argument, NULL, 'm'},
        {"log-paths", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v = 0;
    int opt;
    int idx = 0;
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->procs = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            bad = parse_u64(optarg, 65535, &v) < 0 || add_port(o, v) < 0;
            break;
        case 'P':
            bad = add_port_range(o, optarg) < 0;
            break;
        case 'n':
            bad = parse_u64(optarg, ES_MAX_PROCS, &v) < 0 || v == 0;
            o->procs = (unsigned)v;
            break;
        case 'a':
            bad = parse_u64(optarg, UINT64_MAX, &o->stall_after) < 0;
            break;
        case 'm':
            bad = parse_u64(optarg, 3600 * 1000, &v) < 0;
            o->stall_ms = (unsigned)v;
            break;
        case 'l':
            o->log_paths = true;
            break;
        case 'H':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "echo_server: bad value for --%s: %s\n", longopts[idx].name, optarg);
            return -1;
        }
    }
    return check_options(o);
}

/* The hard limit is what this process may use; the soft one is only where
 * it starts. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    es_options o;
    sigset_t set;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    raise_nofile();
    /* Blocked for good: workers take SIGTERM/SIGINT through a signalfd, the
     * parent through sigwaitinfo, so no handler races the loop. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return o.procs > 1 ? supervise(&o) : run_worker(&o, -1);
}
