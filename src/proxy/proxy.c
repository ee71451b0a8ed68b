/* A worker's share of the proxy: admitting connections, reacting to the
 * registry, shutting down. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* ---- accepting ---------------------------------------------------------- */

void wsg_proxy_refuse(int fd, const char *message, bool tls)
{
    if (tls) {
        /* Cleartext inside a TLS stream reads as garbage ("wrong version
         * number"), and a handshake costs more than refusing saves: close. */
        close(fd);
        return;
    }
    char answer[512];
    size_t n = wsg_http_error_response(answer, sizeof(answer), 503, "Retry-After: 1\r\n", message);
    ssize_t rc = send(fd, answer, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)rc;
    close(fd);
}

void proxy_backend_failed(wsg_bridge *b, wsg_backend *backend, const char *what,
                          const char *why)
{
    uint64_t now = bridge_now(b);
    bool known = atomic_load_explicit(&backend->suspect_until, memory_order_relaxed) > now;
    wsg_backend_mark_suspect(backend, now, SUSPECT_MS);
    if (!known)
        wsg_log_warn(what, "backend=%s conn=%llu why=\"%s\"", backend->id,
                     (unsigned long long)b->id, why);
}

static void refuse(wsg_proxy *p, int fd, bool tls, const char *why)
{
    uint64_t now = uv_now(&p->worker->loop);
    wsg_count(&p->counters, WSG_C_CONNECTIONS_REFUSED, 1);
    if (now - p->refused_logged_at >= 1000) {
        /* Once a second per worker at most: a flood must not flood the log. */
        p->refused_logged_at = now;
        wsg_log_warn("connection refused", "worker=%u why=\"%s\" clients=%ld",
                     p->worker->index, why,
                     atomic_load_explicit(&p->gw->clients, memory_order_relaxed));
    }
    wsg_proxy_refuse(fd, why, tls);
}

/* Admits one more WebSocket client: its descriptors and its place under
 * the connection limits. Returns the bridge, or NULL after refusing (the
 * descriptor is then closed). */
static wsg_bridge *admit_client(wsg_proxy *p, int fd, const wsg_peer *peer, bool tls)
{
    wsg_gateway *gw = p->gw;
    if (p->closing_all || atomic_load_explicit(&gw->stopping, memory_order_relaxed)) {
        refuse(p, fd, tls, "gateway is shutting down");
        return NULL;
    }
    if (atomic_load_explicit(&gw->draining, memory_order_relaxed)) {
        refuse(p, fd, tls, "gateway is drained: try another instance");
        return NULL;
    }
    if (!wsg_fd_budget_take(&gw->fds, 2)) {
        refuse(p, fd, tls, "gateway is at its file descriptor limit");
        return NULL;
    }
    long before = atomic_fetch_add_explicit(&gw->clients, 1, memory_order_relaxed);
    long pending = atomic_load_explicit(&gw->pending, memory_order_relaxed);
    wsg_bridge *b = NULL;
    const char *why = before >= gw->max_clients ? "gateway is at its connection limit"
                      : pending >= (long)gw->cfg->max_pending
                          ? "too many connections are still upgrading"
                          : NULL;
    if (why || (b = bridge_create(p, fd, peer)) == NULL) {
        atomic_fetch_sub_explicit(&gw->clients, 1, memory_order_relaxed);
        wsg_fd_budget_give(&gw->fds, 2);
        refuse(p, fd, tls, why ? why : "out of memory");
        return NULL;
    }
    return b;
}

void wsg_proxy_accept(wsg_proxy *p, int fd, const struct sockaddr_storage *peer, bool tls)
{
    wsg_peer who;
    wsg_peer_set(&who, peer);
    wsg_bridge *b = admit_client(p, fd, &who, tls);
    if (b && tls && wsg_sock_tls_accept(&b->client, p->gw->tls) < 0)
        bridge_end(b, "cannot start TLS");
}

void wsg_proxy_adopt(wsg_proxy *p, int fd, struct ssl_st *ssl, const wsg_peer *peer,
                     const uint8_t *request, size_t n)
{
    wsg_bridge *b = admit_client(p, fd, peer, ssl != NULL);
    if (b == NULL) {
        wsg_sock_tls_drop(ssl);
        return;
    }
    if (ssl)
        wsg_sock_tls_adopt(&b->client, ssl);
    b->flags |= BF_ROUTED;
    upgrade_take_request(b, request, n);
}

void wsg_proxy_init(wsg_proxy *p, wsg_gateway *gw, wsg_worker *w)
{
    memset(p, 0, sizeof(*p));
    p->worker = w;
    p->gw = gw;
    wsg_list_init(&p->bridges);
    wsg_list_init(&p->dial_queue);
    wsg_pool_init(&p->client_handshakes, sizeof(client_hs));
    wsg_pool_init(&p->backend_handshakes, dial_state_size());
    p->from_client = (wsg_ws_policy){
        .max_message = gw->cfg->max_message_size,
        .from_client = true,
        .remask = true,
        .validate_utf8 = gw->cfg->validate_utf8,
    };
    p->from_backend = (wsg_ws_policy){
        .max_message = gw->cfg->max_message_size,
        .from_client = false,
        .remask = false,
        .validate_utf8 = gw->cfg->validate_utf8,
    };
}

void wsg_proxy_close_all(wsg_proxy *p, bool now)
{
    p->closing_all = true;
    for (wsg_list *it = p->bridges.next; it != &p->bridges; it = it->next)
        bridge_shutdown(wsg_container_of(it, wsg_bridge, link), now);
}

void wsg_proxy_backends_changed(wsg_proxy *p)
{
    const wsg_config *cfg = p->gw->cfg;
    bool finish = strcmp(cfg->drain_mode, "finish") == 0;
    uint64_t mono = wsg_registry_mono_ms();
    for (wsg_list *it = p->bridges.next; it != &p->bridges; it = it->next) {
        wsg_bridge *b = wsg_container_of(it, wsg_bridge, link);
        if (!migrate_possible(b))
            continue;
        wsg_backend *backend = b->up->backend;
        switch (wsg_backend_state_of(backend)) {
        case WSG_BACKEND_DOWN:
            /* Dead or gone: nothing more will come from it, so nothing is
             * waited for (a drain, below, waits for its last answers). */
            migrate_begin(b, "backend out of service", false);
            break;
        case WSG_BACKEND_DRAINING:
            if (finish && !atomic_load_explicit(&backend->unregistered, memory_order_relaxed) &&
                mono < atomic_load_explicit(&backend->drain_since,
                                                      memory_order_relaxed) + cfg->drain_timeout)
                break;
            b->flags |= BF_DRAIN_PENDING;
            migrate_check_drain(b);
            break;
        default:
            break;
        }
    }
}

unsigned wsg_gateway_connections(const wsg_gateway *gw)
{
    unsigned n = 0;
    for (unsigned i = 0; i < gw->proxy_count; i++)
        n += wsg_proxy_live(gw->proxies[i]);
    return n;
}

static const char *state_name(const wsg_bridge *b)
{
    if (b->mig)
        return "moving";
    switch ((bridge_state)b->state) {
    case B_OPEN:
        return "open";
    case B_CLOSING:
    case B_ENDING:
        return "closing";
    default:
        return "handshake";
    }
}

void wsg_proxy_each_connection(wsg_proxy *p,
                               void (*fn)(void *ctx, const wsg_connection_info *info),
                               void *ctx)
{
    uint64_t now = uv_now(&p->worker->loop);
    for (wsg_list *it = p->bridges.next; it != &p->bridges; it = it->next) {
        wsg_bridge *b = wsg_container_of(it, wsg_bridge, link);
        wsg_connection_info info = {
            .id = b->id,
            .client_id = b->session ? b->session->key : "",
            .client_id_len = b->session ? b->session->key_len : 0,
            .backend = b->up && b->up->backend ? b->up->backend->id : "",
            .state = state_name(b),
            .peer = b->peer,
            .age_ms = now - b->opened_at,
            .bytes_in = b->bytes_in,
            .bytes_out = b->bytes_out,
        };
        fn(ctx, &info);
    }
}

unsigned wsg_proxy_disconnect(wsg_proxy *p, wsg_str client_id, uint64_t conn_id, uint16_t code,
                              const char *reason)
{
    unsigned n = 0;
    for (wsg_list *it = p->bridges.next; it != &p->bridges; it = it->next) {
        wsg_bridge *b = wsg_container_of(it, wsg_bridge, link);
        bool match =
            conn_id ? b->id == conn_id
                    : b->session &&
                          wsg_str_eq(client_id, wsg_str_make(b->session->key, b->session->key_len));
        if (!match || b->state == B_ENDING || b->state == B_ANSWERING)
            continue;
        n++;
        if (b->state == B_REQUEST || b->state == B_CONNECTING) {
            /* Not a WebSocket yet: the client can only read HTTP. */
            upgrade_answer(b, 503, "", "connection closed by an operator");
            continue;
        }
        wsg_log_info("connection closed by an operator", "conn=%llu code=%u",
                     (unsigned long long)b->id, code);
        bridge_close_client(b, code, reason);
    }
    return n;
}

void wsg_proxy_deinit(wsg_proxy *p)
{
    wsg_pool_deinit(&p->client_handshakes);
    wsg_pool_deinit(&p->backend_handshakes);
}
