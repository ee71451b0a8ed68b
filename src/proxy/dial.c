/* The backend's side of the handshake: dial, send our own upgrade request,
 * read the answer, and decide.
 *
 * The request is the client's (kept in bridge.request) with our own
 * Sec-WebSocket-Key and offers: on the first dial the client's subprotocols
 * and its deflate offer made movable; on a later dial (a session moving)
 * exactly what the session already runs with. Only a 101 with the right
 * Sec-WebSocket-Accept and acceptable choices switches to frames. Any other
 * answer is relayed to a client still waiting (its status and body), or
 * makes a moving session try another backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

struct upstream_hs {
    wsg_http_reader reader;
    wsg_http_head head;
    wsg_buf *raw;            /* the answer as received */
    uint64_t started;        /* loop ms when the dial began: latency */
    uint64_t deadline;       /* the answer must be complete by then */
    char key[WSG_WS_KEY_LEN + 1];
    char accept[WSG_WS_ACCEPT_LEN + 1]; /* what the backend must answer */
    char migrated_from[64];  /* "" on a first dial */
};

static const wsg_config *config_of(const wsg_bridge *b)
{
    return b->proxy->gw->cfg;
}

size_t dial_state_size(void)
{
    return sizeof(upstream_hs);
}

void dial_free(wsg_upstream *u)
{
    if (u->hs) {
        wsg_buf_free(&u->hs->raw);
        wsg_pool_put(&u->bridge->proxy->backend_handshakes, u->hs);
        u->hs = NULL;
    }
}

uint64_t dial_deadline(const wsg_upstream *u)
{
    return u->hs ? u->hs->deadline : 0;
}

int dial_start(wsg_bridge *b, wsg_backend *backend, const char *migrated_from)
{
    wsg_proxy *px = b->proxy;
    wsg_upstream *u = calloc(1, sizeof(*u));
    upstream_hs *uh = wsg_pool_get(&px->backend_handshakes);
    int fd = -1;
    int rc = u && uh ? wsg_dial((struct sockaddr *)&backend->ws_addr, backend->ws_addrlen, &fd)
                     : UV_ENOMEM;
    if (rc == 0 && (rc = wsg_sock_open(&px->worker->loop, &u->sock, fd,
                                       bridge_on_upstream_event)) < 0)
        close(fd);
    if (rc < 0) {
        free(u);
        wsg_pool_put(&px->backend_handshakes, uh);
        return rc;
    }
    uint64_t now = bridge_now(b);
    u->bridge = b;
    u->backend = backend;
    u->hs = uh;
    u->state = U_CONNECTING;
    b->up = u;
    b->handles++;
    uh->started = now;
    uh->deadline = now + config_of(b)->upstream_timeout;
    snprintf(uh->migrated_from, sizeof(uh->migrated_from), "%s",
             migrated_from ? migrated_from : "");
    wsg_http_reader_init(&uh->reader, HTTP_RESPONSE, config_of(b)->max_header_size);
    wsg_ws_make_key(&px->worker->rng, uh->key);
    wsg_ws_accept(wsg_str_make(uh->key, WSG_WS_KEY_LEN), uh->accept);
    wsg_sock_await_connect(&u->sock);
    return 0;
}

/* The offers of this dial: the client's on the first, the session's own
 * choices on a later one. */
static void offers(const wsg_bridge *b, wsg_str *protocols, wsg_str *extensions, char *buf,
                   size_t buflen)
{
    *protocols = wsg_str_make(NULL, 0);
    *extensions = wsg_str_make(NULL, 0);
    if (b->hs) {
        *protocols = wsg_str_cstr(b->hs->protocols);
        *extensions = wsg_str_cstr(b->hs->extensions);
        return;
    }
    if (b->agreed == NULL)
        return;
    const char *nl = strchr(b->agreed, '\n');
    *protocols = wsg_str_make(b->agreed, (size_t)(nl - b->agreed));
    int n = wsg_ws_offer_for_backend(wsg_str_cstr(nl + 1), buf, buflen);
    if (n > 0)
        *extensions = wsg_str_make(buf, (size_t)n);
}

/* Sends the upgrade request once the connect has finished. */
static int send_request(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    upstream_hs *uh = u->hs;
    wsg_buf *w = NULL;
    char offer[1024];
    wsg_str protocols;
    wsg_str extensions;
    offers(b, &protocols, &extensions, offer, sizeof(offer));
    int rc = upgrade_render_request(b, &w);
    rc |= put_header(&w, WSG_STR("Sec-WebSocket-Key"), wsg_str_cstr(uh->key));
    if (protocols.len)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Protocol"), protocols);
    if (extensions.len)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Extensions"), extensions);
    if (uh->migrated_from[0])
        rc |= put_header(&w, WSG_STR("X-Wsgate-Migrated-From"), wsg_str_cstr(uh->migrated_from));
    rc |= put_bytes(&w, "\r\n", 2);
    if (rc == 0) {
        uv_buf_t buf = uv_buf_init((char *)wsg_buf_begin(w), (unsigned)wsg_buf_len(w));
        rc = wsg_sock_write(&u->sock, &buf, 1);
    }
    wsg_buf_free(&w);
    return rc < 0 ? rc : 0;
}

/* A dial or handshake that did not work out. */
static wsg_backend_stats *stats_of(const wsg_bridge *b)
{
    return &b->up->backend->stats[b->proxy->worker->index];
}

static void failed(wsg_bridge *b, const char *why)
{
    wsg_backend_count(&stats_of(b)->handshakes_failed, 1);
    if (b->mig) {
        migrate_dial_failed(b, why);
        return;
    }
    wsg_backend *backend = b->up->backend;
    proxy_backend_failed(b, backend, "backend unreachable", why);
    wsg_backend_ref(backend);
    bridge_release_upstream(b);
    upgrade_dial_failed(b, backend);
    wsg_backend_unref(backend);
}

/* An answer that is no proper 101. A client still waiting gets 502. */
static void wrong_answer(wsg_bridge *b, const char *why)
{
    wsg_backend_count(&stats_of(b)->handshakes_failed, 1);
    proxy_backend_failed(b, b->up->backend, "backend answered the upgrade wrongly", why);
    if (b->mig) {
        migrate_dial_failed(b, why);
        return;
    }
    upgrade_answer(b, 502, "", "backend answered the upgrade wrongly");
}

/* Checks a 101 against RFC 6455 section 4.1 and against what was offered.
 * Returns NULL when acceptable, else why not. */
static const char *check_switch(const wsg_bridge *b, const wsg_http_head *ans, wsg_str *protocol,
                                wsg_str *extensions)
{
    char offer[1024];
    wsg_str offered_protocols;
    wsg_str offered_extensions;
    offers(b, &offered_protocols, &offered_extensions, offer, sizeof(offer));
    if (!wsg_str_list_has_token(wsg_http_header_get(ans, WSG_STR("Upgrade")),
                                WSG_STR("websocket")) ||
        !wsg_str_list_has_token(wsg_http_header_get(ans, WSG_STR("Connection")),
                                WSG_STR("upgrade")))
        return "101 without Upgrade: websocket and Connection: Upgrade";
    if (wsg_http_header_count(ans, WSG_STR("Sec-WebSocket-Accept")) != 1 ||
        !wsg_str_eq(wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Accept")),
                    wsg_str_cstr(b->up->hs->accept)))
        return "wrong Sec-WebSocket-Accept";
    *protocol = wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Protocol"));
    if (protocol->len > 0 &&
        (wsg_http_header_count(ans, WSG_STR("Sec-WebSocket-Protocol")) != 1 ||
         !wsg_str_list_has_token(offered_protocols, *protocol)))
        return "a subprotocol that was not offered";
    *extensions = wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Extensions"));
    if (extensions->len > 0) {
        char normal[1024];
        if (offered_extensions.len == 0)
            return "an extension that was not offered";
        if (wsg_ws_answer_for_client(*extensions, normal, sizeof(normal)) < 0)
            return "an extension answer that is not permessage-deflate";
    }
    return NULL;
}

/* A moving session continues only with exactly what it runs with. */
static bool same_choices(const wsg_bridge *b, wsg_str protocol, wsg_str extensions)
{
    char was[1024];
    char now[1024];
    wsg_str old_protocol = wsg_str_make(NULL, 0);
    wsg_str old_extensions = wsg_str_make(NULL, 0);
    if (b->agreed) {
        const char *nl = strchr(b->agreed, '\n');
        old_protocol = wsg_str_make(b->agreed, (size_t)(nl - b->agreed));
        old_extensions = wsg_str_cstr(nl + 1);
    }
    if (!wsg_str_eq(protocol, old_protocol))
        return false;
    if (old_extensions.len == 0 || extensions.len == 0)
        return old_extensions.len == extensions.len;
    int a = wsg_ws_answer_for_client(old_extensions, was, sizeof(was));
    int c = wsg_ws_answer_for_client(extensions, now, sizeof(now));
    return a >= 0 && a == c && memcmp(was, now, (size_t)a) == 0;
}

static bool relaying_ok(const wsg_bridge *b)
{
    return b->state == B_OPEN || b->state == B_CLOSING;
}

static void switched(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    upstream_hs *uh = u->hs;
    const wsg_http_head *ans = &uh->head;
    wsg_str protocol;
    wsg_str extensions;
    const char *bad = check_switch(b, ans, &protocol, &extensions);
    if (bad) {
        wrong_answer(b, bad);
        return;
    }
    wsg_backend_note_latency(u->backend, (bridge_now(b) - uh->started) * 1000);
    wsg_backend_count(&stats_of(b)->handshakes_ok, 1);
    if (extensions.len) {
        b->rx.flags |= WSG_WS_S_DEFLATE;
        u->rx.flags |= WSG_WS_S_DEFLATE;
    }
    /* Frames the backend sent right behind its 101 follow the head in the
     * same buffer; the head's strings point into it, so it is freed last. */
    wsg_buf *raw = uh->raw;
    size_t head_len = ans->head_len;
    uh->raw = NULL;
    if (b->mig) {
        if (!same_choices(b, protocol, extensions)) {
            migrate_give_up(b, WSG_WS_CLOSE_INTERNAL,
                            "new backend chose another subprotocol or deflate parameters");
            wsg_buf_free(&raw);
            return;
        }
        dial_free(u);
        u->state = U_OPEN;
        size_t early = raw && wsg_buf_len(raw) > head_len ? wsg_buf_len(raw) - head_len : 0;
        migrate_switched(b, early ? wsg_buf_begin(raw) + head_len : NULL, early);
        wsg_buf_free(&raw);
        return;
    } else {
        u->state = U_OPEN;
        int rc = upgrade_accept(b, ans, protocol, extensions);
        dial_free(u);
        if (rc < 0) {
            wsg_buf_free(&raw);
            return;
        }
    }
    if (raw && wsg_buf_len(raw) > head_len && b->up == u && relaying_ok(b))
        bridge_relay_from_backend(b, u, wsg_buf_begin(raw) + head_len,
                                  wsg_buf_len(raw) - head_len);
    wsg_buf_free(&raw);
}

/* Body bytes of a non-101 answer go to the client as they come. */
static void relay_body(void *ctx, const char *at, size_t len)
{
    wsg_bridge *b = ctx;
    if (b->state == B_ANSWERING)
        bridge_write_client(b, at, len);
}

static void relay_body_bytes(wsg_bridge *b, const uint8_t *p, size_t n)
{
    upstream_hs *uh = b->up->hs;
    if (n == 0)
        return;
    long used = wsg_http_reader_body(&uh->reader, (const char *)p, n, relay_body, b);
    if (b->state != B_ANSWERING)
        return;
    if (used < 0 || uh->reader.body_done)
        bridge_end(b, "relayed the backend's answer");
}

/* Relays a backend's refusal (401, 403, 404, ...) with its status and
 * body, so that the application's answer reaches the client. */
static void relay_answer(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    upstream_hs *uh = u->hs;
    const wsg_http_head *ans = &uh->head;
    char line[96];
    char client[64];
    wsg_buf *w = NULL;
    int rc = 0;
    wsg_str connection = wsg_http_header_get(ans, WSG_STR("Connection"));
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_log_info("handshake refused by the backend", "conn=%llu client=%s backend=%s status=%d",
                 (unsigned long long)b->id, client, u->backend->id, ans->status);
    wsg_count(&b->proxy->counters, WSG_C_HANDSHAKES_REJECTED, 1);
    wsg_backend_count(&stats_of(b)->handshakes_refused, 1);
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", ans->status, wsg_http_reason(ans->status));
    rc |= put_cstr(&w, line);
    for (uint32_t i = 0; i < ans->header_count; i++) {
        const wsg_http_header *hd = &ans->headers[i];
        if (!wsg_http_is_hop_by_hop(hd->name, connection))
            rc |= put_header(&w, hd->name, hd->value);
    }
    rc |= put_cstr(&w, "Connection: close\r\n\r\n");
    b->flags |= BF_LINGER;
    b->state = B_ANSWERING;
    u->state = U_RELAYING;
    if (rc != 0 || bridge_write_client(b, wsg_buf_begin(w), wsg_buf_len(w)) < 0) {
        wsg_buf_free(&w);
        if (b->state == B_ANSWERING)
            bridge_end(b, "out of memory");
        return;
    }
    wsg_buf_free(&w);
    if (!wsg_http_head_has_body(ans, HTTP_RESPONSE)) {
        bridge_end(b, "relayed the backend's answer");
        return;
    }
    bridge_sync_reading(b);
    relay_body_bytes(b, wsg_buf_begin(uh->raw) + ans->head_len,
                     wsg_buf_len(uh->raw) - ans->head_len);
}

static void answer_head_read(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    upstream_hs *uh = u->hs;
    size_t have = wsg_buf_len(uh->raw);
    size_t room = config_of(b)->max_header_size + 1 - have;
    if (room > WSG_SCRATCH_SIZE)
        room = WSG_SCRATCH_SIZE;
    uint8_t *buf = b->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&u->sock, buf, room);
    if (n == 0)
        return;
    if (n < 0) {
        failed(b, "backend closed the connection during the handshake");
        return;
    }
    u->rx_at = stamp(bridge_now(b));
    if (wsg_buf_append(&uh->raw, buf, (size_t)n) < 0) {
        failed(b, "out of memory");
        return;
    }
    int rc = wsg_http_reader_head(&uh->reader, (const char *)wsg_buf_begin(uh->raw),
                                  wsg_buf_len(uh->raw), &uh->head);
    if (rc == 0)
        return;
    if (rc < 0)
        wrong_answer(b, "malformed HTTP answer");
    else if (uh->head.status == 101)
        switched(b);
    else if (uh->head.status >= 200 && b->mig == NULL)
        relay_answer(b);
    else
        wrong_answer(b, b->mig ? "refused a moving session" : "an interim answer");
}

static void answer_body_read(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    uint8_t *buf = b->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&u->sock, buf, WSG_SCRATCH_SIZE);
    if (n == 0)
        return;
    if (n < 0) {
        wsg_http_reader_eof(&u->hs->reader);
        bridge_end(b, "relayed the backend's answer");
        return;
    }
    relay_body_bytes(b, buf, (size_t)n);
}

void dial_on_event(wsg_upstream *u, int events)
{
    wsg_bridge *b = u->bridge;
    if (events < 0) {
        failed(b, "connection error");
        return;
    }
    if (u->state == U_CONNECTING) {
        if (!(events & UV_WRITABLE))
            return;
        int rc = wsg_sock_connect_result(&u->sock);
        if (rc == 0 && u->backend->tls)
            rc = wsg_sock_tls_connect(&u->sock, b->proxy->gw->tls_client, u->backend->host);
        if (rc == 0)
            rc = send_request(b);
        if (rc < 0) {
            failed(b, uv_strerror(rc));
            return;
        }
        u->state = U_HANDSHAKE;
        bridge_sync_reading(b);
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = wsg_sock_flush(&u->sock);
        if (rc < 0) {
            if (u->state == U_HANDSHAKE)
                failed(b, uv_strerror(rc));
            else
                bridge_end(b, "backend connection failed");
            return;
        }
    }
    if (!(events & UV_READABLE) || b->up != u || wsg_sock_is_closing(&u->sock))
        return;
    if (u->state == U_HANDSHAKE)
        answer_head_read(b);
    else if (u->state == U_RELAYING)
        answer_body_read(b);
}
