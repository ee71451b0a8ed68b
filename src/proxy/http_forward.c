/* HTTP and Server-Sent Events proxying for /api/:service/... and
 * /sse/:service/...: one request of a keep-alive client connection, streamed
 * to a backend of the service and its answer streamed back.
 *
 *   client ──► (HTTP port reads the head) ──► forwarder ──► backend host:port
 *   client ◄── framing rewritten (Content-Length or chunked) ◄── backend
 *
 * Nothing is buffered whole: each read is passed on, and above
 * WRITE_HIGH_WATER on one side the other side is not read until the queue
 * is half gone (STYLE.md, habit 4). Each request has its own backend
 * connection, sent `Connection: close`, so a backend never sees two
 * clients' requests on one socket. The client's connection belongs to the
 * HTTP port; the forwarder writes to it and switches its reading on and off,
 * and tells the port once how the exchange ended.
 *
 * A response whose end cannot be told to the client as complete (the
 * backend closed mid-body, or stalled) ends the client connection without
 * the final chunk or with fewer bytes than announced, never as a shorter
 * but complete-looking answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* Dials per request before the client gets 502. */
#define MAX_DIALS 3
/* Client bytes kept past the request (a pipelined next request) while the
 * answer streams; past this the client is not read until the end. */
#define MAX_REST ((size_t)64 * 1024)

typedef enum forward_state {
    F_DIALING,   /* TCP connect under way; the request head waits */
    F_WAITING,   /* request sent (its body may still stream); reading the answer head */
    F_STREAMING, /* answer head sent to the client; relaying its body */
} forward_state;

/* The backend connection: allocated apart, so that a failed dial's socket
 * can finish closing while the next one is dialled. */
typedef struct forward_up {
    wsg_sock sock;
    struct wsg_forward *f;
    wsg_fd_budget *fds; /* its descriptor is counted there until it closes */
} forward_up;

struct wsg_forward {
    forward_up *up; /* NULL when no backend connection is open */
    wsg_timer timer;
    wsg_proxy *proxy;
    wsg_forward_client client; /* client.sock is NULL once the port was told */
    wsg_forward **slot;        /* the port's pointer to us, cleared at the end */
    wsg_service *service;
    wsg_backend *backend; /* picked (counted on it) while dialling and after */
    wsg_backend *sticky;  /* the session's backend, a reference; tried first */
    wsg_session *session;
    wsg_buf *head;        /* our request head, until the connect completes */
    wsg_buf *early;       /* client bytes read with the head, until then too */
    wsg_buf *rest;        /* client bytes past the request */
    wsg_buf *answer;      /* the backend's answer head as it arrives */
    wsg_http_reader req;  /* the client's request, past its head */
    wsg_http_reader resp; /* the backend's answer */
    wsg_http_head resp_head;
    uint64_t id;
    uint64_t deadline; /* loop ms; 0: none */
    int status;        /* what the client was answered; 0 before */
    uint8_t state;
    uint8_t dials;
    bool sse;
    bool head_only;     /* HEAD: the answer has no body */
    bool keep;          /* the client connection may serve another request */
    bool client_http10; /* cannot take chunked answers */
    bool req_chunked;   /* the body goes to the backend chunked */
    bool req_done;      /* the whole request body has gone to the backend */
    bool chunk_out;     /* the answer goes to the client chunked */
    bool failed_write;  /* a write inside a body walk failed */
};

static const wsg_config *config_of(const wsg_forward *f)
{
    return f->proxy->gw->cfg;
}

static uint64_t now_of(const wsg_forward *f)
{
    return uv_now(&f->proxy->worker->loop);
}

static wsg_backend_stats *stats_of(const wsg_forward *f)
{
    return &f->backend->stats[f->proxy->worker->index];
}

/* ---- the end ------------------------------------------------------------ */

static void free_up(uv_handle_t *h)
{
    forward_up *u = wsg_container_of(h, forward_up, sock.poll);
    wsg_fd_budget_give(u->fds, 1);
    free(u);
}

static void close_up(wsg_forward *f)
{
    wsg_sock_close(&f->up->sock, free_up);
    f->up = NULL;
}

/* Counts the exchange, gives back what it held and frees f (its backend
 * socket goes in two phases). f must not be used after. */
static void release(wsg_forward *f)
{
    wsg_gateway *gw = f->proxy->gw;
    wsg_timer_cancel(f->proxy->worker, &f->timer);
    if (f->status >= 100 && f->status < 600) {
        if (f->backend)
            wsg_backend_count(&stats_of(f)->http_requests[f->status / 100 - 1], 1);
        else
            wsg_count(&f->proxy->counters, WSG_C_HTTP_PROXY_REFUSED, 1);
    }
    if (f->session)
        wsg_sessions_detach(gw->sessions, f->session, now_of(f));
    if (f->sticky)
        wsg_backend_unref(f->sticky);
    if (f->backend)
        wsg_backend_release(f->backend);
    wsg_buf_free(&f->head);
    wsg_buf_free(&f->early);
    wsg_buf_free(&f->rest);
    wsg_buf_free(&f->answer);
    if (f->slot)
        *f->slot = NULL;
    if (f->up)
        close_up(f);
    free(f);
}

/* Tells the port how the exchange ended, then releases f. */
static void finish(wsg_forward *f, wsg_forward_end how)
{
    wsg_forward_client c = f->client;
    wsg_buf *rest = NULL;
    if (how == WSG_FORWARD_KEEP) {
        rest = f->rest;
        f->rest = NULL;
    }
    f->client.sock = NULL;
    release(f);
    if (c.sock)
        c.done(c.ctx, how, rest);
    else
        wsg_buf_free(&rest);
}

/* Answers an error of our own (JSON, as the WebSocket path does) when no
 * byte of an answer has gone out yet; otherwise the client connection just
 * ends. The connection closes after: the request body may be unread. */
static void fail(wsg_forward *f, int status, const char *extra, const char *message)
{
    char answer[512];
    char who[64];
    wsg_peer_format(f->client.peer, who, sizeof(who));
    wsg_log_info("http request failed",
                 "req=%llu client=%s service=%s backend=%s status=%d "
                 "why=\"%s\"",
                 (unsigned long long)f->id, who, f->service ? f->service->name : "-",
                 f->backend ? f->backend->id : "-", f->state == F_STREAMING ? 0 : status, message);
    if (f->state == F_STREAMING || f->client.sock == NULL) {
        finish(f, WSG_FORWARD_ABORT);
        return;
    }
    f->status = status;
    size_t n = wsg_http_error_response(answer, sizeof(answer), status, extra, message);
    uv_buf_t buf = uv_buf_init(answer, (unsigned)n);
    if (wsg_sock_write(f->client.sock, &buf, 1) < 0) {
        finish(f, WSG_FORWARD_ABORT);
        return;
    }
    finish(f, WSG_FORWARD_CLOSE);
}

/* The answer is complete: the client connection goes on when both sides
 * allowed it when the answer's head went out. */
static void complete(wsg_forward *f)
{
    finish(f, f->keep ? WSG_FORWARD_KEEP : WSG_FORWARD_CLOSE);
}

/* ---- flow control ------------------------------------------------------ */

static void touch(wsg_forward *f)
{
    uint64_t limit = config_of(f)->upstream_timeout;
    if (f->state == F_STREAMING && f->sse)
        limit = config_of(f)->idle_timeout; /* an event stream may be quiet for long */
    f->deadline = limit ? now_of(f) + limit : 0;
    if (f->deadline && !wsg_wheel_scheduled(&f->timer.node))
        wsg_timer_schedule(f->proxy->worker, &f->timer, f->deadline);
}

/* Above the high-water mark of one side's queue the other side is not
 * read, until the queue is below half the mark again. */
static bool keep_reading(const wsg_sock *reader, size_t queued, size_t high)
{
    return reader->reading ? queued <= high : queued <= high / 2;
}

static void sync_reading(wsg_forward *f)
{
    size_t high = config_of(f)->write_high_water;
    wsg_sock *c = f->client.sock;
    if (f->up && f->state != F_DIALING) {
        bool on = keep_reading(&f->up->sock, wsg_sock_pending(c), high);
        if (on != f->up->sock.reading) {
            if (!on)
                wsg_backend_count(&stats_of(f)->backpressure_pauses, 1);
            wsg_sock_set_reading(&f->up->sock, on);
        }
    }
    /* The client: its body while the backend takes it; after the body,
     * only to notice it leaving (and a next request, bounded). */
    bool on = f->req_done ? wsg_buf_len(f->rest) < MAX_REST
                          : f->up && f->state != F_DIALING &&
                                keep_reading(c, wsg_sock_pending(&f->up->sock), high);
    if (on != c->reading)
        wsg_sock_set_reading(c, on);
}

static int to_client(wsg_forward *f, const char *p, size_t n)
{
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)n);
    return wsg_sock_write(f->client.sock, &buf, 1);
}

static int to_backend(wsg_forward *f, const uv_buf_t *bufs, unsigned n)
{
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += bufs[i].len;
    wsg_backend_count(&stats_of(f)->bytes_out, len);
    return wsg_sock_write(&f->up->sock, bufs, n);
}

/* Writes data as one chunk (RFC 9112 section 7.1), or as it is. */
static int put_chunk(wsg_forward *f, bool to_up, bool chunked, const char *at, size_t len)
{
    char size[24];
    int n = chunked ? snprintf(size, sizeof(size), "%zx\r\n", len) : 0;
    uv_buf_t bufs[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)at, (unsigned)len),
                        uv_buf_init("\r\n", chunked ? 2 : 0)};
    if (to_up)
        return to_backend(f, bufs, 3);
    return wsg_sock_write(f->client.sock, bufs, 3);
}

/* ---- the request body -------------------------------------------------- */

static void request_body(void *ctx, const char *at, size_t len)
{
    wsg_forward *f = ctx;
    if (len > 0 && put_chunk(f, true, f->req_chunked, at, len) < 0)
        f->failed_write = true;
}

/* Walks client bytes: the body to the backend, what follows into `rest`. */
static int take_client_bytes(wsg_forward *f, const uint8_t *p, size_t n)
{
    if (!f->req_done) {
        long used = wsg_http_reader_body(&f->req, (const char *)p, n, request_body, f);
        if (used < 0)
            return -400;
        if (f->failed_write)
            return -502;
        if (f->req.body_done) {
            f->req_done = true;
            if (f->req_chunked) {
                uv_buf_t end = uv_buf_init("0\r\n\r\n", 5);
                if (to_backend(f, &end, 1) < 0)
                    return -502;
            }
        }
        p += used;
        n -= (size_t)used;
    }
    if (n > 0 && wsg_buf_append(&f->rest, p, n) < 0)
        return -503;
    return 0;
}

static void client_bytes(wsg_forward *f, const uint8_t *p, size_t n)
{
    int rc = take_client_bytes(f, p, n);
    if (rc == -400)
        fail(f, 400, "", "malformed request body");
    else if (rc == -502)
        fail(f, 502, "", "backend connection failed while sending the request");
    else if (rc < 0)
        fail(f, 503, "", "out of memory");
    else
        sync_reading(f);
}

void wsg_forward_on_client(wsg_forward *f, int events)
{
    wsg_sock *s = f->client.sock;
    if (events & UV_WRITABLE) {
        if (wsg_sock_flush(s) < 0) {
            finish(f, WSG_FORWARD_ABORT); /* the client is gone: nobody to answer */
            return;
        }
        sync_reading(f);
    }
    if (!(events & UV_READABLE) || !s->reading)
        return;
    uint8_t *buf = f->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(s, buf, WSG_SCRATCH_SIZE);
    if (n == 0)
        return;
    if (n < 0) {
        /* A client that leaves ends its exchange: an event stream's backend
         * learns it from its socket closing. */
        wsg_log_debug("http client left", "req=%llu done=%d", (unsigned long long)f->id,
                      f->req_done);
        finish(f, WSG_FORWARD_ABORT);
        return;
    }
    if (!f->req_done)
        touch(f);
    client_bytes(f, buf, (size_t)n);
}

void wsg_forward_abort(wsg_forward *f)
{
    f->client.sock = NULL;
    release(f);
}

/* ---- the answer -------------------------------------------------------- */

/* Bodies are re-framed both ways, so a transfer coding under the chunked
 * one ("gzip, chunked") would arrive undeclared: only plain chunked, or
 * none, passes. */
static bool chunked_only(const wsg_http_head *h)
{
    wsg_str te = wsg_http_header_get(h, WSG_STR("Transfer-Encoding"));
    return te.p == NULL || (wsg_http_header_count(h, WSG_STR("Transfer-Encoding")) == 1 &&
                            wsg_str_eq_nocase(wsg_str_trim(te), WSG_STR("chunked")));
}

/* Writes the answer's head for the client: the backend's status and
 * end-to-end headers, our own framing. */
static int answer_head(wsg_forward *f, const wsg_http_head *ans, bool body)
{
    char line[96];
    wsg_buf *w = NULL;
    wsg_str connection = wsg_http_header_get(ans, WSG_STR("Connection"));
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", ans->status, wsg_http_reason(ans->status));
    int rc = put_cstr(&w, line);
    for (uint32_t i = 0; i < ans->header_count; i++) {
        const wsg_http_header *hd = &ans->headers[i];
        if (wsg_http_forwardable(hd->name, connection))
            rc |= put_header(&w, hd->name, hd->value);
    }
    bool length = ans->content_length != WSG_HTTP_NO_LENGTH && !ans->chunked;
    if (length && (body || f->head_only)) {
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
                 (unsigned long long)ans->content_length);
        rc |= put_cstr(&w, line);
    } else if (body && !length) {
        /* Chunked is how an HTTP/1.1 client learns where an answer of unknown
         * length ends; an HTTP/1.0 one learns it from the close. */
        f->chunk_out = !f->client_http10;
        f->keep = f->keep && f->chunk_out;
        if (f->chunk_out)
            rc |= put_cstr(&w, "Transfer-Encoding: chunked\r\n");
    } else if (!body && f->status != 204 && f->status != 304 && !f->head_only) {
        rc |= put_cstr(&w, "Content-Length: 0\r\n");
    }
    if (f->sse)
        rc |= put_cstr(&w, "X-Accel-Buffering: no\r\n");
    /* An answer that comes before the whole body was read ends the
     * connection: what is left of the body cannot be told from a request. */
    f->keep = f->keep && f->req_done;
    if (!f->keep)
        rc |= put_cstr(&w, "Connection: close\r\n");
    rc |= put_bytes(&w, "\r\n", 2);
    if (rc == 0)
        rc = to_client(f, (const char *)wsg_buf_begin(w), wsg_buf_len(w));
    wsg_buf_free(&w);
    return rc;
}

static void answer_body(void *ctx, const char *at, size_t len)
{
    wsg_forward *f = ctx;
    if (len > 0 && put_chunk(f, false, f->chunk_out, at, len) < 0)
        f->failed_write = true;
}

/* Relays answer body bytes; completes the exchange at the body's end. */
static void relay_body(wsg_forward *f, const uint8_t *p, size_t n)
{
    long used = wsg_http_reader_body(&f->resp, (const char *)p, n, answer_body, f);
    if (f->failed_write) {
        finish(f, WSG_FORWARD_ABORT);
        return;
    }
    if (used < 0) {
        fail(f, 502, "", "backend sent a malformed body");
        return;
    }
    if (f->resp.body_done) {
        if (f->chunk_out && to_client(f, "0\r\n\r\n", 5) < 0) {
            finish(f, WSG_FORWARD_ABORT);
            return;
        }
        complete(f);
        return;
    }
    sync_reading(f);
}

/* The answer head is complete: a 100 Continue passes and the next head is
 * read (returns true: f goes on waiting); a final answer starts streaming
 * (returns false: f may be gone). */
static bool answer_ready(wsg_forward *f)
{
    const wsg_http_head *ans = &f->resp_head;
    size_t head_len = ans->head_len;
    if (ans->status == 100 || (ans->status > 101 && ans->status < 200)) {
        if (ans->status == 100 && to_client(f, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0) {
            finish(f, WSG_FORWARD_ABORT);
            return false;
        }
        wsg_buf_consume(&f->answer, head_len);
        wsg_http_reader_init(&f->resp, HTTP_RESPONSE, config_of(f)->max_header_size);
        return f->answer != NULL;
    }
    if (ans->status == 101 || !chunked_only(ans)) {
        fail(f, 502, "",
             ans->status == 101 ? "backend switched protocols on an HTTP request"
                                : "backend used a transfer coding other than chunked");
        return false;
    }
    f->status = ans->status;
    bool body = !f->head_only && f->status != 204 && f->status != 304 &&
                wsg_http_head_has_body(ans, HTTP_RESPONSE);
    if (f->session)
        wsg_sessions_assign(f->proxy->gw->sessions, f->session, f->backend);
    if (answer_head(f, ans, body) < 0) {
        finish(f, WSG_FORWARD_ABORT);
        return false;
    }
    f->state = F_STREAMING;
    touch(f);
    if (!body) {
        complete(f);
        return false;
    }
    /* Body bytes that came with the head. The head's strings point into
     * `answer`, which is no longer needed once the head is written. */
    wsg_buf *raw = f->answer;
    f->answer = NULL;
    if (wsg_buf_len(raw) > head_len)
        relay_body(f, wsg_buf_begin(raw) + head_len, wsg_buf_len(raw) - head_len);
    else
        sync_reading(f);
    wsg_buf_free(&raw);
    return false;
}

static void read_answer_head(wsg_forward *f)
{
    size_t have = wsg_buf_len(f->answer);
    size_t room = config_of(f)->max_header_size + 1 - have;
    if (room > WSG_SCRATCH_SIZE)
        room = WSG_SCRATCH_SIZE;
    uint8_t *buf = f->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&f->up->sock, buf, room);
    if (n == 0)
        return;
    if (n < 0) {
        fail(f, 502, "", "backend closed the connection without an answer");
        return;
    }
    wsg_backend_count(&stats_of(f)->bytes_in, (uint64_t)n);
    touch(f);
    if (wsg_buf_append(&f->answer, buf, (size_t)n) < 0) {
        fail(f, 503, "", "out of memory");
        return;
    }
    /* Several heads may have come at once (100 Continue, then the answer). */
    for (;;) {
        int rc = wsg_http_reader_head(&f->resp, (const char *)wsg_buf_begin(f->answer),
                                      wsg_buf_len(f->answer), &f->resp_head);
        if (rc == 0)
            return;
        if (rc < 0) {
            wsg_backend_mark_suspect(f->backend, now_of(f), SUSPECT_MS);
            fail(f, 502, "", "backend sent a malformed answer");
            return;
        }
        if (!answer_ready(f))
            return;
    }
}

static void read_answer_body(wsg_forward *f)
{
    uint8_t *buf = f->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&f->up->sock, buf, WSG_SCRATCH_SIZE);
    if (n == 0)
        return;
    if (n > 0) {
        wsg_backend_count(&stats_of(f)->bytes_in, (uint64_t)n);
        touch(f);
        relay_body(f, buf, (size_t)n);
        return;
    }
    if (wsg_http_reader_eof(&f->resp) < 0) {
        fail(f, 502, "", "backend closed the connection in the middle of the body");
        return;
    }
    /* A body delimited by the close is complete now. */
    if (f->chunk_out && to_client(f, "0\r\n\r\n", 5) < 0) {
        finish(f, WSG_FORWARD_ABORT);
        return;
    }
    complete(f);
}

/* ---- the backend connection ------------------------------------------- */

static void dial_next(wsg_forward *f, wsg_backend *failed);

/* The connect completed: our request head goes out. Returns 0, or a
 * negative errno when this backend cannot be used (nothing of the client's
 * body was taken yet, so another may be tried). */
static int connected(wsg_forward *f)
{
    int rc = wsg_sock_connect_result(&f->up->sock);
    if (rc == 0 && f->backend->tls)
        rc = wsg_sock_tls_connect(&f->up->sock, f->proxy->gw->tls_client, f->backend->host);
    if (rc < 0)
        return rc;
    uv_buf_t head = uv_buf_init((char *)wsg_buf_begin(f->head), (unsigned)wsg_buf_len(f->head));
    if ((rc = to_backend(f, &head, 1)) < 0)
        return rc;
    wsg_buf_free(&f->head);
    f->state = F_WAITING;
    wsg_sock_set_reading(&f->up->sock, true);
    return 0;
}

/* A connect that failed: the backend is avoided for a while (and said so
 * once while it stays suspect, as for WebSocket dials) and the next one is
 * tried. */
static void connect_failed(wsg_forward *f, int rc)
{
    uint64_t now = now_of(f);
    bool known = atomic_load_explicit(&f->backend->suspect_until, memory_order_relaxed) > now;
    wsg_backend_mark_suspect(f->backend, now, SUSPECT_MS);
    if (!known)
        wsg_log_warn("backend unreachable", "backend=%s req=%llu why=\"%s\"", f->backend->id,
                     (unsigned long long)f->id, uv_strerror(rc));
    dial_next(f, f->backend);
}

static void on_up_event(wsg_sock *s, int status, int events)
{
    wsg_forward *f = wsg_container_of(s, forward_up, sock)->f;
    if (f->state == F_DIALING) {
        if (status == 0 && !(events & UV_WRITABLE))
            return;
        /* A refused connect shows as a poll error; SO_ERROR says why. */
        int rc = status < 0 ? wsg_sock_connect_result(&f->up->sock) : connected(f);
        if (status < 0 && rc == 0)
            rc = status;
        if (rc < 0) {
            connect_failed(f, rc);
            return;
        }
        touch(f);
        /* The body bytes that came with the head follow it. */
        wsg_buf *early = f->early;
        f->early = NULL;
        if (early)
            client_bytes(f, wsg_buf_begin(early), wsg_buf_len(early));
        else
            sync_reading(f);
        wsg_buf_free(&early);
        return;
    }
    if (status < 0) {
        fail(f, 502, "", "backend connection failed");
        return;
    }
    if (events & UV_WRITABLE) {
        if (wsg_sock_flush(s) < 0) {
            fail(f, 502, "", "backend connection failed");
            return;
        }
        sync_reading(f);
    }
    if (!(events & UV_READABLE) || !s->reading)
        return;
    if (f->state == F_WAITING)
        read_answer_head(f);
    else
        read_answer_body(f);
}

/* Starts a connect to the backend's HTTP address. Returns 0, UV_EMFILE
 * when the gateway has no descriptor to spare (the client connection took
 * one, not two as a WebSocket client does), or another negative errno. */
static int dial(wsg_forward *f, wsg_backend *backend)
{
    wsg_fd_budget *fds = &f->proxy->gw->fds;
    if (!wsg_fd_budget_take(fds, 1))
        return UV_EMFILE;
    int fd = -1;
    forward_up *u = calloc(1, sizeof(*u));
    int rc = u ? wsg_dial((const struct sockaddr *)&backend->http_addr, backend->http_addrlen, &fd)
               : UV_ENOMEM;
    if (rc == 0 && (rc = wsg_sock_open(&f->proxy->worker->loop, &u->sock, fd, on_up_event)) < 0)
        close(fd);
    if (rc < 0) {
        free(u);
        wsg_fd_budget_give(fds, 1);
        return rc;
    }
    u->f = f;
    u->fds = fds;
    f->up = u;
    f->backend = backend;
    f->state = F_DIALING;
    wsg_sock_await_connect(&u->sock);
    return 0;
}

/* Picks a backend of the service (the sticky one first) and dials it. A
 * backend whose connect fails is avoided for a while and the next one is
 * tried, MAX_DIALS in all, within the upstream timeout. Nothing of the
 * request has reached a backend when this runs, so trying again is safe
 * for every method. */
static void dial_next(wsg_forward *f, wsg_backend *failed)
{
    wsg_gateway *gw = f->proxy->gw;
    wsg_str key =
        f->session ? wsg_str_make(f->session->key, f->session->key_len) : wsg_str_make(NULL, 0);
    wsg_backend *avoid = failed;
    if (failed) {
        /* Kept alive while compared against; its session count goes now. */
        wsg_backend_count(&stats_of(f)->handshakes_failed, 1);
        close_up(f);
        wsg_backend_ref(failed);
        wsg_backend_release(failed);
        f->backend = NULL;
    }
    while (f->dials < MAX_DIALS && now_of(f) < f->deadline) {
        wsg_backend *b =
            wsg_registry_pick(gw->registry, f->service, key, f->sticky, avoid, now_of(f));
        if (b == NULL)
            break;
        f->dials++;
        int rc = dial(f, b);
        if (rc == 0) {
            if (failed)
                wsg_backend_unref(failed);
            return;
        }
        if (rc == UV_EMFILE || rc == UV_ENOMEM) {
            /* Our own limit, not the backend's fault. */
            wsg_backend_release(b);
            if (failed)
                wsg_backend_unref(failed);
            fail(f, 503, "Retry-After: 1\r\n",
                 rc == UV_EMFILE ? "gateway is at its file descriptor limit" : "out of memory");
            return;
        }
        wsg_backend_mark_suspect(b, now_of(f), SUSPECT_MS);
        wsg_backend_release(b);
        avoid = b;
    }
    if (failed)
        wsg_backend_unref(failed);
    if (f->dials == 0)
        fail(f, 503, "Retry-After: 1\r\n", "NO SERVER AVAILABLE");
    else
        fail(f, 502, "", "backend unreachable");
}

static void on_timer(wsg_timer *t)
{
    wsg_forward *f = wsg_container_of(t, wsg_forward, timer);
    uint64_t now = now_of(f);
    if (f->deadline == 0)
        return;
    if (now < f->deadline) {
        wsg_timer_schedule(f->proxy->worker, &f->timer, f->deadline);
        return;
    }
    if (f->backend && f->state != F_STREAMING)
        wsg_backend_mark_suspect(f->backend, now, SUSPECT_MS);
    fail(f, 504, "",
         f->state == F_STREAMING ? "backend stalled in the middle of the body"
                                 : "backend did not answer in time");
}

/* ---- the request ------------------------------------------------------- */

/* Writes our request head for the backend: the client's method, the target
 * without the route prefix, Host as the client sent it, its end-to-end
 * headers, our forwarding headers and framing, and Connection: close. */
static int render_request(wsg_forward *f, const wsg_http_head *h, wsg_str target)
{
    wsg_buf **w = &f->head;
    wsg_str connection = wsg_http_header_get(h, WSG_STR("Connection"));
    wsg_str host = wsg_http_header_get(h, WSG_STR("Host"));
    int rc = put_cstr(w, http_method_str((enum http_method)h->method)) | put_bytes(w, " ", 1);
    rc |= put_bytes(w, target.p, target.len) | put_cstr(w, " HTTP/1.1\r\n");
    if (host.p)
        rc |= put_header(w, WSG_STR("Host"), host);
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (wsg_http_forwardable(h->headers[i].name, connection))
            rc |= put_header(w, h->headers[i].name, h->headers[i].value);
    }
    rc |= proxy_put_forwarded(f->proxy->gw, f->client.peer, f->client.tls,
                              wsg_http_header_get(h, WSG_STR("X-Forwarded-For")),
                              wsg_http_header_get(h, WSG_STR("X-Forwarded-Proto")), w);
    if (h->chunked) {
        rc |= put_cstr(w, "Transfer-Encoding: chunked\r\n");
    } else if (h->content_length != WSG_HTTP_NO_LENGTH) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
                 (unsigned long long)h->content_length);
        rc |= put_cstr(w, line);
    }
    rc |= put_cstr(w, "Connection: close\r\n\r\n");
    return rc;
}

/* The service, the backend target and our request head. Returns 0 or
 * fails the request. */
static int prepare(wsg_forward *f, const wsg_forward_request *r)
{
    static __thread char unknown[160];
    char target[4096];
    wsg_registry *reg = f->proxy->gw->registry;
    const wsg_http_head *h = r->head;
    f->service =
        wsg_registry_name_reserved(r->service) ? NULL : wsg_registry_service(reg, r->service);
    if (f->service == NULL) {
        /* Only a valid name is repeated: the text goes to the log too. */
        if (wsg_registry_name_valid(r->service) && r->service.len < 100)
            snprintf(unknown, sizeof(unknown), "unknown service: %.*s", (int)r->service.len,
                     r->service.p);
        else
            snprintf(unknown, sizeof(unknown), "unknown service");
        fail(f, 404, "", unknown);
        return -1;
    }
    if (!chunked_only(h)) {
        fail(f, 501, "", "only the chunked transfer coding is supported");
        return -1;
    }
    int n = wsg_http_route_strip(h->target, r->prefix_len, target, sizeof(target));
    if (n < 0) {
        fail(f, h->target.len > 0 && h->target.p[0] == '/' ? 414 : 400, "",
             "the request target must be a path of at most 4 KiB");
        return -1;
    }
    if (render_request(f, h, wsg_str_make(target, (size_t)n)) != 0 ||
        (r->after_len && wsg_buf_append(&f->early, r->after, r->after_len) < 0)) {
        fail(f, 503, "", "out of memory");
        return -1;
    }
    return 0;
}

void wsg_forward_start(wsg_proxy *p, const wsg_forward_client *client, const wsg_forward_request *r,
                       wsg_forward **slot)
{
    const wsg_config *cfg = p->gw->cfg;
    wsg_forward *f = calloc(1, sizeof(*f));
    *slot = f;
    if (f == NULL) {
        client->done(client->ctx, WSG_FORWARD_ABORT, NULL);
        return;
    }
    uint64_t now = uv_now(&p->worker->loop);
    f->proxy = p;
    f->client = *client;
    f->slot = slot;
    f->id = ++p->next_seq << 8 | (p->worker->index & 0xff);
    f->timer.fire = on_timer;
    f->sse = r->kind == WSG_ROUTE_SSE;
    f->deadline = now + cfg->upstream_timeout;
    f->head_only = r->head->method == HTTP_HEAD;
    f->client_http10 = r->head->major == 1 && r->head->minor == 0;
    f->keep = r->keep_alive;
    f->req = *r->reader;
    f->req.parser.data = &f->req; /* the copy answers its own callbacks */
    f->req_chunked = r->head->chunked;
    f->req_done = !wsg_http_head_has_body(r->head, HTTP_REQUEST);
    wsg_http_reader_init(&f->resp, HTTP_RESPONSE, cfg->max_header_size);
    wsg_timer_schedule(p->worker, &f->timer, f->deadline);
    wsg_sock_set_reading(client->sock, false);
    if (prepare(f, r) < 0)
        return;
    wsg_str key = proxy_sticky_key(cfg, r->head);
    if (key.len > 0)
        f->session = wsg_sessions_attach(p->gw->sessions, key, now, &f->sticky);
    dial_next(f, NULL);
}
