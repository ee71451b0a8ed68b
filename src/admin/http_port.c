/* Connections on the HTTP port: read a request, route it, answer, and keep
 * the connection for the next one when the client wants that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/log.h"

/* Bodies on the HTTP port are small JSON documents. */
#define MAX_BODY ((size_t)64 * 1024)
/* How long a closing connection drains the client's input. */
#define LINGER_MS 1000

typedef void (*handler_fn)(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

/* Where a route answers. */
enum {
    PUBLIC = 1, /* on WEBSRV_PORT always */
    ADMIN = 2,  /* on WEBSRV_PORT, or only on the ADMIN_BIND listener when set */
};

typedef struct route {
    const char *path;
    handler_fn handler;
    int method; /* HTTP_GET also serves HEAD */
    int where;
} route;

static const route routes[] = {
    {"/healthz", wsg_health_live, HTTP_GET, PUBLIC | ADMIN},
    {"/readyz", wsg_health_ready, HTTP_GET, PUBLIC | ADMIN},
    {"/health", wsg_health_summary, HTTP_GET, PUBLIC | ADMIN},
    {"/_pressure", wsg_pressure, HTTP_GET, PUBLIC | ADMIN},
    {"/register", wsg_api_register, HTTP_POST, PUBLIC},
    {"/heartbeat", wsg_api_heartbeat, HTTP_POST, PUBLIC},
    {"/unregister", wsg_api_unregister, HTTP_POST, PUBLIC},
    {"/metrics", wsg_api_metrics, HTTP_GET, ADMIN},
    {"/", wsg_dashboard_page, HTTP_GET, ADMIN},
    {"/dashboard.js", wsg_dashboard_script, HTTP_GET, ADMIN},
    {"/dashboard.css", wsg_dashboard_style, HTTP_GET, ADMIN},
    {"/api/login", wsg_api_login, HTTP_POST, ADMIN},
    {"/api/logout", wsg_api_logout, HTTP_POST, ADMIN},
    {"/api/stats", wsg_api_stats, HTTP_GET, ADMIN},
    {"/api/history", wsg_api_history, HTTP_GET, ADMIN},
    {"/api/connections", wsg_api_connections, HTTP_GET, ADMIN},
    {"/disconnect", wsg_api_disconnect, HTTP_POST, ADMIN},
    {"/drain", wsg_api_drain, HTTP_POST, ADMIN},
    {"/undrain", wsg_api_undrain, HTTP_POST, ADMIN},
};

struct wsg_http_conn {
    wsg_sock sock;
    wsg_timer timer;
    wsg_list link;
    wsg_admin *admin;
    wsg_buf *in;        /* bytes of the request being read, and any after it */
    wsg_buf *body;      /* decoded body of the request */
    wsg_http_conn **deferred; /* a handler finishing later holds this */
    wsg_forward *fwd;   /* an /api or /sse request being forwarded */
    wsg_peer peer;
    uint64_t deadline;
    size_t used;        /* bytes of `in` the deferred request takes */
    bool keep_alive;    /* of the deferred request */
    bool head_only;
    bool closing;       /* answer queued; close once it is sent */
    bool admin_port;    /* accepted on the ADMIN_BIND listener */
    bool body_too_big;  /* the body passed MAX_BODY (chunked bodies have no length) */
    bool lingering;     /* answered for the last time; draining the client's input */
    bool starting;      /* inside wsg_forward_start: its end is handled by the caller */
    wsg_http_reader reader;
    wsg_http_head head;
};

typedef wsg_http_conn http_conn;

static void process_input(http_conn *c);

/* ---- replies ------------------------------------------------------------ */

void wsg_reply_json(wsg_reply *r, int status, json_t *obj)
{
    r->status = status;
    r->body = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (r->body == NULL) {
        r->status = 500;
        r->body = strdup("{\"error\":\"out of memory\"}");
    }
}

void wsg_reply_error(wsg_reply *r, int status, const char *message)
{
    wsg_reply_json(r, status,
                   json_pack("{s:b, s:s, s:s}", "success", 0, "error", message, "message",
                             message));
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(uv_handle_t *h)
{
    http_conn *c = wsg_container_of(h, http_conn, sock.poll);
    wsg_admin *a = c->admin;
    if (c->deferred)
        *c->deferred = NULL; /* the handler must not answer a closed connection */
    wsg_timer_cancel(a->worker, &c->timer);
    wsg_list_remove(&c->link);
    atomic_store_explicit(&a->live, wsg_admin_live(a) - 1, memory_order_relaxed);
    wsg_buf_free(&c->in);
    wsg_buf_free(&c->body);
    wsg_fd_budget_give(&a->gw->fds, 1);
    free(c);
}

static void conn_close(http_conn *c)
{
    if (c->fwd)
        wsg_forward_abort(c->fwd);
    if (!wsg_sock_is_closing(&c->sock))
        wsg_sock_close(&c->sock, conn_free);
}

static void start_request(http_conn *c)
{
    wsg_http_reader_init(&c->reader, HTTP_REQUEST, c->admin->gw->cfg->max_header_size);
    wsg_buf_free(&c->body);
    c->deadline = uv_now(&c->admin->worker->loop) + c->admin->gw->cfg->handshake_timeout;
    wsg_timer_schedule(c->admin->worker, &c->timer, c->deadline);
}

/* After a last answer: half-close, then read and drop what the client
 * still sends for up to a second, so that a client still writing (a body we
 * refused) reads our answer instead of a reset. */
static void linger(http_conn *c)
{
    if (wsg_sock_ssl(&c->sock) == NULL)
        shutdown(c->sock.fd, SHUT_WR);
    c->lingering = true;
    c->deadline = uv_now(&c->admin->worker->loop) + LINGER_MS;
    wsg_timer_schedule(c->admin->worker, &c->timer, c->deadline);
    wsg_sock_set_reading(&c->sock, true);
}

static void send_reply(http_conn *c, wsg_reply *r, bool keep_alive, bool head_only)
{
    char head[768];
    const char *body = r->body ? r->body : "";
    size_t blen = strlen(body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n"
                     "Referrer-Policy: no-referrer\r\n"
                     "%s"
                     "%s"
                     "\r\n",
                     r->status, wsg_http_reason(r->status),
                     r->content_type ? r->content_type : "application/json", blen,
                     keep_alive ? "" : "Connection: close\r\n",
                     r->extra_headers ? r->extra_headers : "");
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)n),
                        uv_buf_init((char *)body, head_only ? 0 : (unsigned)blen)};
    int rc = wsg_sock_write(&c->sock, bufs, 2);
    free(r->body);
    r->body = NULL;
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (!keep_alive) {
        c->closing = true;
        wsg_buf_free(&c->in);
        if (wsg_sock_pending(&c->sock) == 0)
            linger(c);
    }
}

static void route_request(http_conn *c, wsg_reply *reply)
{
    const wsg_http_head *h = &c->head;
    wsg_request req = {
        .head = h,
        .body = c->body ? (const char *)wsg_buf_begin(c->body) : "",
        .body_len = wsg_buf_len(c->body),
        .peer = &c->peer,
        .tls = wsg_sock_ssl(&c->sock) != NULL,
        .conn = c,
    };
    const char *allowed = NULL; /* the Allow header of a known path */
    bool separate = c->admin->gw->cfg->admin_bind[0] != '\0';
    int here = !separate ? PUBLIC | ADMIN : c->admin_port ? ADMIN : PUBLIC;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!wsg_str_eq(h->path, wsg_str_cstr(routes[i].path)) || !(routes[i].where & here))
            continue;
        allowed = routes[i].method == HTTP_GET ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n";
        bool get = routes[i].method == HTTP_GET;
        if (h->method == routes[i].method || (get && h->method == HTTP_HEAD)) {
            routes[i].handler(c->admin, &req, reply);
            return;
        }
    }
    if (allowed) {
        wsg_reply_error(reply, 405, "method not allowed on this path");
        reply->extra_headers = allowed;
        return;
    }
    wsg_reply_error(reply, 404, "not found");
}

static void collect_body(void *ctx, const char *at, size_t len)
{
    http_conn *c = ctx;
    /* Too big, or out of memory: refused the same way. */
    if (wsg_buf_len(c->body) + len > MAX_BODY || wsg_buf_append(&c->body, at, len) < 0)
        c->body_too_big = true;
}

/* Reads the body of the request whose head is parsed. Returns the bytes it
 * took after the head, 0 when more must come, or -1 after answering an
 * error. */
static long read_body(http_conn *c, const char *data, size_t len)
{
    wsg_reply reply = {0};
    size_t head = c->head.head_len;
    if (!wsg_http_head_has_body(&c->head, HTTP_REQUEST))
        return (long)head;
    if (c->head.content_length != WSG_HTTP_NO_LENGTH && c->head.content_length > MAX_BODY) {
        wsg_reply_error(&reply, 413, "request body too large (64 KiB at most)");
        send_reply(c, &reply, false, false);
        return -1;
    }
    c->body_too_big = false;
    long n = wsg_http_reader_body(&c->reader, data + head, len - head, collect_body, c);
    if (n < 0 || c->body_too_big) {
        wsg_reply_error(&reply, n < 0 ? 400 : 413,
                        n < 0 ? "malformed request body"
                              : "request body too large (64 KiB at most)");
        send_reply(c, &reply, false, false);
        return -1;
    }
    if (c->reader.body_done)
        return (long)head + n;
    /* Wait for the rest. The head is parsed again from the start then, so
     * all bytes stay; bodies are small. */
    wsg_buf_free(&c->body);
    wsg_http_reader_init(&c->reader, HTTP_REQUEST, c->admin->gw->cfg->max_header_size);
    if (len > c->admin->gw->cfg->max_header_size + MAX_BODY) {
        wsg_reply_error(&reply, 413, "request body too large (64 KiB at most)");
        send_reply(c, &reply, false, false);
        return -1;
    }
    return 0;
}

/* The per-address request rate: over it, 429 with Retry-After, and the
 * connection stays for the next try. */
static bool admitted(http_conn *c, bool can_keep)
{
    uint32_t wait_ms = 0;
    wsg_admin *a = c->admin;
    if (wsg_clients_admit_request(a->gw->addresses, c->peer.family, c->peer.ip,
                                  uv_now(&a->worker->loop), &wait_ms) == WSG_ADMIT_OK)
        return true;
    char retry[48];
    wsg_reply reply = {0};
    snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", (wait_ms + 999) / 1000);
    wsg_count(a->counters, WSG_C_RATE_LIMITED, 1);
    wsg_reply_error(&reply, 429, "too many requests from your address; slow down");
    reply.extra_headers = retry;
    send_reply(c, &reply, can_keep && c->head.keep_alive && !a->closing_all,
               c->head.method == HTTP_HEAD);
    if (!c->closing)
        start_request(c);
    return false;
}

/* ---- routing by service ------------------------------------------------ */

static bool is_admin_path(wsg_str path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (wsg_str_eq(path, wsg_str_cstr(routes[i].path)))
            return true;
    }
    return false;
}

static wsg_proxy *proxy_of(const http_conn *c)
{
    return c->admin->gw->proxies[c->admin->worker->index];
}

/* /ws/:service: the connection becomes a WebSocket bridge, which reads the
 * request again from the bytes we hold, exactly as on WS_PORT. */
static void hand_over(http_conn *c)
{
    if (wsg_sock_pending(&c->sock) > 0) {
        /* An earlier answer is still queued: a pipelined upgrade is rare
         * enough to refuse rather than wait for. */
        wsg_reply reply = {0};
        wsg_reply_error(&reply, 503, "an upgrade cannot follow unsent answers; retry");
        send_reply(c, &reply, false, false);
        return;
    }
    struct ssl_st *ssl;
    wsg_buf *in = c->in;
    c->in = NULL;
    c->closing = true;
    int fd = wsg_sock_detach(&c->sock, conn_free, &ssl);
    wsg_proxy_adopt(proxy_of(c), fd, ssl, &c->peer, wsg_buf_begin(in), wsg_buf_len(in));
    wsg_buf_free(&in);
}

static void forward_done(void *ctx, wsg_forward_end how, wsg_buf *rest)
{
    http_conn *c = ctx;
    if (how == WSG_FORWARD_ABORT) {
        conn_close(c);
        return;
    }
    if (how == WSG_FORWARD_CLOSE) {
        wsg_buf_free(&rest);
        c->closing = true;
        if (wsg_sock_pending(&c->sock) == 0)
            linger(c);
        return;
    }
    c->in = rest;
    start_request(c);
    wsg_sock_set_reading(&c->sock, true);
    if (!c->starting)
        process_input(c);
}

static void forward(http_conn *c, wsg_route_kind kind, wsg_str service, size_t prefix)
{
    wsg_buf *in = c->in;
    size_t head = c->head.head_len;
    wsg_forward_client client = {
        .sock = &c->sock,
        .peer = &c->peer,
        .tls = wsg_sock_ssl(&c->sock) != NULL,
        .done = forward_done,
        .ctx = c,
    };
    wsg_forward_request req = {
        .head = &c->head,
        .reader = &c->reader,
        .kind = kind,
        .service = service,
        .prefix_len = prefix,
        .after = wsg_buf_begin(in) + head,
        .after_len = wsg_buf_len(in) - head,
        .keep_alive = c->head.keep_alive && !c->admin->closing_all,
    };
    /* The head's strings point into `in`: it goes once the forwarder has
     * taken what it needs; later bytes are the forwarder's. */
    c->in = NULL;
    c->starting = true;
    wsg_forward_start(proxy_of(c), &client, &req, &c->fwd);
    c->starting = false;
    wsg_buf_free(&in);
}

/* Takes requests for /ws/:service, /api/:service/... and /sse/:service/...
 * on WEBSRV_PORT (the admin paths keep their meaning). Returns true when
 * the request was taken. */
static bool service_route(http_conn *c)
{
    wsg_str service;
    size_t prefix;
    wsg_route_kind kind = wsg_http_route(c->head.path, &service, &prefix);
    bool separate = c->admin->gw->cfg->admin_bind[0] != '\0';
    if (kind == WSG_ROUTE_NONE || (separate && c->admin_port) || is_admin_path(c->head.path))
        return false;
    if (kind == WSG_ROUTE_WS) {
        /* The upgrade applies its own limits, as on WS_PORT. */
        hand_over(c);
        return true;
    }
    wsg_count(c->admin->counters, WSG_C_HTTP_REQUESTS, 1);
    if (!admitted(c, !wsg_http_head_has_body(&c->head, HTTP_REQUEST))) {
        if (!c->closing)
            wsg_buf_consume(&c->in, c->head.head_len);
        return true;
    }
    forward(c, kind, service, prefix);
    return true;
}

/* Handles every complete request in c->in; returns when more input is
 * needed, a reply is deferred, or the connection is closing. */
static void process_input(http_conn *c)
{
    while (!c->closing && !c->deferred && !c->fwd && c->in) {
        wsg_reply reply = {0};
        const char *data = (const char *)wsg_buf_begin(c->in);
        size_t len = wsg_buf_len(c->in);
        int rc = wsg_http_reader_head(&c->reader, data, len, &c->head);
        if (rc == 0)
            return;
        if (rc < 0) {
            wsg_reply_error(&reply, -rc, rc == -431 ? "request header fields too large"
                                                    : "malformed HTTP request");
            send_reply(c, &reply, false, false);
            return;
        }
        if (service_route(c))
            continue;
        long used = read_body(c, data, len);
        if (used <= 0)
            return;
        wsg_count(c->admin->counters, WSG_C_HTTP_REQUESTS, 1);
        if (!admitted(c, true)) {
            wsg_buf_consume(&c->in, (size_t)used);
            continue;
        }
        c->used = (size_t)used;
        c->keep_alive = c->head.keep_alive && !c->admin->closing_all;
        c->head_only = c->head.method == HTTP_HEAD;
        route_request(c, &reply);
        if (reply.status == 0) {
            /* Deferred: reading stops until wsg_admin_finish. */
            wsg_sock_set_reading(&c->sock, false);
            return;
        }
        send_reply(c, &reply, c->keep_alive, c->head_only);
        wsg_buf_consume(&c->in, c->used);
        if (c->keep_alive && !c->closing)
            start_request(c);
    }
}

void wsg_admin_defer(wsg_http_conn *c, wsg_http_conn **slot)
{
    c->deferred = slot;
    *slot = c;
}

void wsg_admin_finish(wsg_http_conn *c, wsg_reply *reply)
{
    c->deferred = NULL;
    send_reply(c, reply, c->keep_alive, c->head_only);
    if (c->closing || wsg_sock_is_closing(&c->sock))
        return;
    wsg_buf_consume(&c->in, c->used);
    start_request(c);
    wsg_sock_set_reading(&c->sock, true);
    process_input(c);
}

static void on_event(wsg_sock *s, int status, int events)
{
    http_conn *c = wsg_container_of(s, http_conn, sock);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->fwd) {
        wsg_forward_on_client(c->fwd, events);
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = wsg_sock_flush(s);
        if (rc < 0) {
            conn_close(c);
            return;
        }
        if (rc == 1 && c->closing && !c->lingering)
            linger(c);
    }
    if (!(events & UV_READABLE) || c->deferred || wsg_sock_is_closing(s))
        return;
    uint8_t *buf = c->admin->worker->scratch;
    long n = wsg_sock_read(s, buf, WSG_SCRATCH_SIZE);
    if (c->closing) {
        if (n < 0)
            conn_close(c); /* the client has read our answer and closed */
        return;
    }
    if (n == 0)
        return;
    if (n < 0 || wsg_buf_append(&c->in, buf, (size_t)n) < 0) {
        conn_close(c);
        return;
    }
    process_input(c);
}

static void on_timer(wsg_timer *t)
{
    http_conn *c = wsg_container_of(t, http_conn, timer);
    /* A deferred answer or a forwarded request keeps its own time. */
    bool busy = c->deferred || c->fwd;
    if (busy || uv_now(&c->admin->worker->loop) < c->deadline) {
        wsg_timer_schedule(c->admin->worker, &c->timer,
                           busy ? uv_now(&c->admin->worker->loop) + 1000 : c->deadline);
        return;
    }
    conn_close(c);
}

void wsg_admin_accept(wsg_admin *a, int fd, const struct sockaddr_storage *peer, bool admin_port,
                      bool tls)
{
    if (a->closing_all || !wsg_fd_budget_take(&a->gw->fds, 1)) {
        wsg_proxy_refuse(fd, a->closing_all ? "gateway is shutting down"
                                            : "gateway is at its file descriptor limit",
                          tls);
        return;
    }
    http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL || wsg_sock_open(&a->worker->loop, &c->sock, fd, on_event) < 0) {
        free(c);
        wsg_fd_budget_give(&a->gw->fds, 1);
        close(fd);
        return;
    }
    c->admin = a;
    c->admin_port = admin_port;
    c->timer.fire = on_timer;
    wsg_peer_set(&c->peer, peer);
    wsg_list_insert_tail(&a->conns, &c->link);
    atomic_store_explicit(&a->live, wsg_admin_live(a) + 1, memory_order_relaxed);
    start_request(c);
    wsg_sock_set_reading(&c->sock, true);
    if (tls && wsg_sock_tls_accept(&c->sock, a->gw->tls) < 0)
        conn_close(c);
}

void wsg_admin_init(wsg_admin *a, wsg_gateway *gw, wsg_admin_shared *shared, wsg_worker *w,
                    wsg_counters *counters)
{
    memset(a, 0, sizeof(*a));
    a->worker = w;
    a->gw = gw;
    a->shared = shared;
    a->counters = counters;
    wsg_list_init(&a->conns);
}

void wsg_admin_close_all(wsg_admin *a)
{
    a->closing_all = true;
    for (wsg_list *it = a->conns.next; it != &a->conns; it = it->next)
        conn_close(wsg_container_of(it, http_conn, link));
}
