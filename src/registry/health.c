/* Active health checks of configured backends.
 *
 * Registered backends prove they live by heartbeats; configured ones
 * (--backend, UPSTREAMS) cannot, so the gateway checks them every
 * WSGATE_HEALTH_INTERVAL: a TCP connect, or an HTTP GET that must answer
 * 2xx. WSGATE_HEALTH_FALL failures in a row take a backend out (its
 * sessions move), WSGATE_HEALTH_RISE passes bring it back. Runs on the main
 * thread's loop.
 */
#include "registry/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A check that takes longer than this fails, whatever the interval. */
#define CHECK_TIMEOUT_MS 2000

struct wsg_health {
    uv_loop_t *loop;
    uv_timer_t tick;
    wsg_registry *registry;
    const wsg_config *cfg;
    const char *path; /* NULL: TCP connect only */
    unsigned running;   /* checks whose handles are not closed yet */
    bool stopping;
    bool tick_closed;
};

/* The last of the ticker and the checks frees the checker. */
static void maybe_free(wsg_health *h)
{
    if (h->stopping && h->tick_closed && h->running == 0)
        free(h);
}

typedef struct check {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    wsg_health *health;
    wsg_backend *backend;
    uint64_t started;
    char request[512];
    char answer[64];
    size_t got;
    int handles;
    bool done;
} check;

static void check_closed(uv_handle_t *handle)
{
    check *c = handle->data;
    if (--c->handles > 0)
        return;
    wsg_health *h = c->health;
    h->running--;
    wsg_backend_unref(c->backend);
    free(c);
    maybe_free(h);
}

static void finish(check *c, bool ok)
{
    if (c->done)
        return;
    c->done = true;
    if (ok)
        wsg_backend_note_latency(c->backend, (uv_now(c->health->loop) - c->started) * 1000);
    if (!c->health->stopping) {
        const wsg_config *cfg = c->health->cfg;
        wsg_registry_check_result(c->health->registry, c->backend, ok, cfg->health_rise,
                                  cfg->health_fall);
    }
    uv_close((uv_handle_t *)&c->tcp, check_closed);
    uv_close((uv_handle_t *)&c->timer, check_closed);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, false);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    check *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->answer + c->got, (unsigned)(sizeof(c->answer) - 1 - c->got));
}

/* "HTTP/1.1 204 ..." passes; anything else, or nothing, fails. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    check *c = s->data;
    (void)buf;
    if (n < 0) {
        finish(c, false);
        return;
    }
    c->got += (size_t)n;
    c->answer[c->got] = '\0';
    if (c->got < 12 && c->got < sizeof(c->answer) - 1)
        return;
    bool ok = strncmp(c->answer, "HTTP/1.", 7) == 0 && c->answer[9] == '2';
    finish(c, ok);
}

static void on_written(uv_write_t *w, int status)
{
    check *c = w->data;
    if (status < 0)
        finish(c, false);
    else if (!c->done)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connect(uv_connect_t *req, int status)
{
    check *c = req->data;
    /* A wss:// backend speaks TLS on that port: the connect is the check
     * (the HTTP GET would need a TLS session the checker does not make). */
    if (status < 0 || c->health->path == NULL || c->backend->tls) {
        finish(c, status == 0);
        return;
    }
    if (c->done)
        return;
    int n = snprintf(c->request, sizeof(c->request),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsgate-health\r\n"
                     "Connection: close\r\n\r\n",
                     c->health->path, c->backend->host);
    uv_buf_t buf = uv_buf_init(c->request, (unsigned)n);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
        finish(c, false);
}

static void start_check(wsg_health *h, wsg_backend *b)
{
    check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->health = h;
    c->backend = b;
    wsg_backend_ref(b);
    c->started = uv_now(h->loop);
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect.data = c;
    c->handles = 2;
    h->running++;
    uint64_t timeout = h->cfg->health_interval < CHECK_TIMEOUT_MS ? h->cfg->health_interval
                                                                  : CHECK_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_timeout, timeout, 0);
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&b->http_addr,
                       on_connect) < 0)
        finish(c, false);
}

typedef struct collect {
    wsg_backend **list;
    size_t count;
    size_t cap;
} collect;

static void collect_static(void *ctx, const wsg_service *s, const wsg_backend *b)
{
    collect *c = ctx;
    (void)s;
    if (!b->is_static || c->count == c->cap)
        return;
    c->list[c->count++] = (wsg_backend *)b;
    wsg_backend_ref((wsg_backend *)b);
}

static void on_tick(uv_timer_t *t)
{
    wsg_health *h = t->data;
    wsg_backend *list[256];
    collect c = {list, 0, sizeof(list) / sizeof(list[0])};
    wsg_registry_each(h->registry, collect_static, &c);
    for (size_t i = 0; i < c.count; i++) {
        start_check(h, list[i]);
        wsg_backend_unref(list[i]);
    }
}

wsg_health *wsg_health_start(uv_loop_t *loop, wsg_registry *r, const wsg_config *cfg)
{
    if (strcmp(cfg->health_check, "off") == 0)
        return NULL;
    wsg_health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        fputs("wsgate: out of memory starting health checks\n", stderr);
        abort();
    }
    h->loop = loop;
    h->registry = r;
    h->cfg = cfg;
    h->path = strncmp(cfg->health_check, "http:", 5) == 0 ? cfg->health_check + 5 : NULL;
    uv_timer_init(loop, &h->tick);
    h->tick.data = h;
    uv_timer_start(&h->tick, on_tick, cfg->health_interval, cfg->health_interval);
    return h;
}

static void tick_closed(uv_handle_t *handle)
{
    wsg_health *h = handle->data;
    h->tick_closed = true;
    maybe_free(h);
}

void wsg_health_stop(wsg_health *h)
{
    if (h == NULL)
        return;
    h->stopping = true;
    /* Checks under way finish on their own timers; the loop runs until
     * their handles are closed. */
    uv_close((uv_handle_t *)&h->tick, tick_closed);
}
