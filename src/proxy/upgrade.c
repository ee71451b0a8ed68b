/* The upgrade: the client's request, the backend's dial and handshake, and
 * every way they can fail before frames flow.
 *
 * wsgate terminates the handshake on both sides. The client's request is
 * checked (RFC 6455 section 4.2.1) and answered with a clear error when
 * wrong; the backend gets a request of our own, with our own key, the
 * client's end-to-end headers and a deflate offer any backend can continue.
 * Only a 101 with the right Sec-WebSocket-Accept switches the connection to
 * frames; any other answer is relayed or mapped to an error, so the socket
 * never becomes a blind tunnel (the WebSocket smuggling class of bugs).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* A backend whose dial failed is avoided for this long. */
#define SUSPECT_MS 2000
/* Dials per session before the client gets 502. */
#define MAX_DIALS 3

struct client_hs {
    wsg_http_reader reader;
    wsg_http_head head;
    wsg_buf *raw;              /* the request as received; head strings point here */
    const wsg_service *service;
    uint64_t deadline;         /* for the backend side, once dialling */
    uint8_t dials;
    bool offered_deflate;
};

struct upstream_hs {
    wsg_http_reader reader;
    wsg_http_head head;
    wsg_buf *raw;              /* the answer as received */
    char key[WSG_WS_KEY_LEN + 1];       /* our Sec-WebSocket-Key */
    char accept[WSG_WS_ACCEPT_LEN + 1]; /* what the backend must answer */
};

static const wsg_config *config_of(const wsg_bridge *b)
{
    return b->proxy->gw->cfg;
}

void upstream_hs_free(wsg_upstream *u)
{
    if (u->hs) {
        wsg_buf_free(&u->hs->raw);
        free(u->hs);
        u->hs = NULL;
    }
}

void upgrade_free(wsg_bridge *b)
{
    if (b->hs) {
        wsg_buf_free(&b->hs->raw);
        free(b->hs);
        b->hs = NULL;
    }
}

void upgrade_answer(wsg_bridge *b, int status, const char *extra_headers, const char *message)
{
    char answer[1024];
    char client[64];
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_log_info("handshake refused", "conn=%llu client=%s status=%d why=\"%s\"",
                 (unsigned long long)b->id, client, status, message);
    wsg_count(&b->proxy->counters,
              status >= 500 ? WSG_C_HANDSHAKES_FAILED : WSG_C_HANDSHAKES_REJECTED, 1);
    bridge_release_upstream(b);
    size_t n = wsg_http_error_response(answer, sizeof(answer), status, extra_headers, message);
    b->flags |= BF_LINGER;
    if (bridge_write_client(b, answer, n) == 0)
        bridge_end(b, message);
}

/* ---- the client's request ---------------------------------------------- */

/* Returns 0 when the request is a WebSocket upgrade we can serve, or the
 * status to answer with (message and extra headers set). */
static int check_request(const wsg_http_head *h, const char **msg, const char **extra)
{
    *extra = "";
    if (h->method != HTTP_GET) {
        *msg = "WebSocket upgrades use GET";
        *extra = "Allow: GET\r\n";
        return 405;
    }
    if (h->major != 1 || h->minor < 1) {
        *msg = "WebSocket needs HTTP/1.1";
        return 400;
    }
    if (h->target.len == 0 || h->target.p[0] != '/') {
        *msg = "the request target must be a path";
        return 400;
    }
    if (!wsg_str_list_has_token(wsg_http_header_get(h, WSG_STR("Upgrade")),
                                WSG_STR("websocket"))) {
        *msg = "this port serves WebSocket upgrades only";
        *extra = "Upgrade: websocket\r\n";
        return 426;
    }
    if (!wsg_str_list_has_token(wsg_http_header_get(h, WSG_STR("Connection")),
                                WSG_STR("upgrade"))) {
        *msg = "the Connection header must contain Upgrade";
        return 400;
    }
    wsg_str version = wsg_http_header_get(h, WSG_STR("Sec-WebSocket-Version"));
    if (wsg_http_header_count(h, WSG_STR("Sec-WebSocket-Version")) != 1 ||
        !wsg_str_eq(version, WSG_STR("13"))) {
        *msg = "unsupported WebSocket version; this gateway speaks version 13";
        *extra = "Sec-WebSocket-Version: 13\r\n";
        return 426;
    }
    if (wsg_http_header_count(h, WSG_STR("Sec-WebSocket-Key")) != 1 ||
        !wsg_ws_key_valid(wsg_http_header_get(h, WSG_STR("Sec-WebSocket-Key")))) {
        *msg = "Sec-WebSocket-Key must be one base64-encoded 16-byte value";
        return 400;
    }
    if (wsg_http_header_count(h, WSG_STR("Host")) != 1) {
        *msg = "exactly one Host header is required";
        return 400;
    }
    return 0;
}

/* Headers the gateway writes itself, never copied from the client. */
static bool header_is_ours(wsg_str name)
{
    static const wsg_str ours[] = {
        WSG_STR("Host"),
        WSG_STR("Sec-WebSocket-Key"),
        WSG_STR("Sec-WebSocket-Version"),
        WSG_STR("Sec-WebSocket-Extensions"),
        WSG_STR("Sec-WebSocket-Protocol"),
        WSG_STR("Sec-WebSocket-Accept"),
        WSG_STR("X-Forwarded-For"),
        WSG_STR("X-Forwarded-Proto"),
        WSG_STR("X-Real-IP"),
        WSG_STR("X-Wsgate-Migrated-From"),
        WSG_STR("Content-Length"),
    };
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        if (wsg_str_eq_nocase(name, ours[i]))
            return true;
    }
    return false;
}

static bool peer_trusted(const wsg_gateway *gw, int family, const uint8_t *ip)
{
    for (size_t i = 0; i < gw->trusted_count; i++) {
        if (wsg_cidr_match(&gw->trusted[i], family, ip))
            return true;
    }
    return false;
}

/* The client's address as the backend should see it: the peer, or, behind
 * trusted proxies, the last address in X-Forwarded-For that is not one. */
static void real_client_ip(const wsg_bridge *b, wsg_str xff, bool trusted, char *out,
                           size_t outlen)
{
    wsg_peer_format_ip(&b->peer, out, outlen);
    if (!trusted)
        return;
    while (xff.len > 0) {
        size_t cut = xff.len;
        while (cut > 0 && xff.p[cut - 1] != ',')
            cut--;
        wsg_str item = wsg_str_trim(wsg_str_make(xff.p + cut, xff.len - cut));
        xff.len = cut > 0 ? cut - 1 : 0;
        wsg_cidr addr;
        if (wsg_cidr_parse(item.p, item.len, &addr) < 0)
            return;
        if (!peer_trusted(b->proxy->gw, addr.family, addr.ip)) {
            snprintf(out, outlen, "%.*s", (int)item.len, item.p);
            return;
        }
    }
}

static int put(wsg_buf **w, const char *s, size_t n)
{
    return wsg_buf_append(w, s, n);
}

static int put_cstr(wsg_buf **w, const char *s)
{
    return put(w, s, strlen(s));
}

static int put_header(wsg_buf **w, wsg_str name, wsg_str value)
{
    int rc = put(w, name.p, name.len);
    rc |= put(w, ": ", 2);
    rc |= put(w, value.p, value.len);
    rc |= put(w, "\r\n", 2);
    return rc;
}

/* Joins every value of a repeated header with ", " (RFC 9110 section 5.3). */
static int joined_values(const wsg_http_head *h, wsg_str name, char *out, size_t outlen)
{
    size_t n = 0;
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (!wsg_str_eq_nocase(h->headers[i].name, name) || h->headers[i].value.len == 0)
            continue;
        size_t need = (n ? 2 : 0) + h->headers[i].value.len;
        if (n + need + 1 > outlen)
            return -1;
        if (n) {
            memcpy(out + n, ", ", 2);
            n += 2;
        }
        memcpy(out + n, h->headers[i].value.p, h->headers[i].value.len);
        n += h->headers[i].value.len;
    }
    out[n] = '\0';
    return (int)n;
}

/* Writes the upgrade request for the backend, all but the key line and the
 * final CRLF; it is kept so that the session can be dialled again. */
static char *build_dial_request(wsg_bridge *b, client_hs *hs, const char **why)
{
    const wsg_http_head *h = &hs->head;
    wsg_buf *w = NULL;
    char value[4096];
    char offer[4096];
    char ip[64];
    int rc = 0;
    wsg_str connection = wsg_http_header_get(h, WSG_STR("Connection"));
    wsg_str xff = wsg_http_header_get(h, WSG_STR("X-Forwarded-For"));
    bool trusted = peer_trusted(b->proxy->gw, b->peer.family, b->peer.ip);

    rc |= put(&w, "GET ", 4);
    rc |= put(&w, h->target.p, h->target.len);
    rc |= put_cstr(&w, " HTTP/1.1\r\n");
    rc |= put_header(&w, WSG_STR("Host"), wsg_http_header_get(h, WSG_STR("Host")));
    rc |= put_cstr(&w, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
    int n = joined_values(h, WSG_STR("Sec-WebSocket-Protocol"), value, sizeof(value));
    if (n < 0) {
        *why = "Sec-WebSocket-Protocol is too long";
        goto fail;
    }
    if (n > 0)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Protocol"), wsg_str_make(value, (size_t)n));
    n = joined_values(h, WSG_STR("Sec-WebSocket-Extensions"), value, sizeof(value));
    int offered = n > 0 ? wsg_ws_offer_for_backend(wsg_str_make(value, (size_t)n), offer,
                                                   sizeof(offer))
                        : 0;
    if (n < 0 || offered < 0) {
        *why = "Sec-WebSocket-Extensions is too long";
        goto fail;
    }
    if (offered > 0) {
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Extensions"), wsg_str_make(offer, (size_t)offered));
        hs->offered_deflate = true;
    }
    for (uint32_t i = 0; i < h->header_count; i++) {
        const wsg_http_header *hd = &h->headers[i];
        if (header_is_ours(hd->name) || wsg_http_is_hop_by_hop(hd->name, connection))
            continue;
        rc |= put_header(&w, hd->name, hd->value);
    }
    wsg_peer_format_ip(&b->peer, ip, sizeof(ip));
    rc |= put_cstr(&w, "X-Forwarded-For: ");
    if (trusted && xff.len > 0) {
        /* Behind a proxy we trust, its list continues with its own address. */
        rc |= put(&w, xff.p, xff.len);
        rc |= put(&w, ", ", 2);
    }
    rc |= put_cstr(&w, ip);
    rc |= put_cstr(&w, "\r\n");
    wsg_str proto = wsg_http_header_get(h, WSG_STR("X-Forwarded-Proto"));
    rc |= put_header(&w, WSG_STR("X-Forwarded-Proto"), trusted && proto.len ? proto : WSG_STR("http"));
    real_client_ip(b, xff, trusted, ip, sizeof(ip));
    rc |= put_header(&w, WSG_STR("X-Real-IP"), wsg_str_cstr(ip));
    rc |= put(&w, "", 1);
    if (rc != 0) {
        *why = "out of memory";
        goto fail;
    }
    char *text = strdup((const char *)wsg_buf_begin(w));
    wsg_buf_free(&w);
    if (text == NULL)
        *why = "out of memory";
    return text;
fail:
    wsg_buf_free(&w);
    return NULL;
}

/* ---- dialling ---------------------------------------------------------- */

static void dial_next(wsg_bridge *b, const wsg_backend *avoid);

static int start_dial(wsg_bridge *b, wsg_backend *backend)
{
    wsg_proxy *px = b->proxy;
    wsg_upstream *u = calloc(1, sizeof(*u));
    upstream_hs *uh = calloc(1, sizeof(*uh));
    int fd = -1;
    int rc = u && uh ? wsg_dial((struct sockaddr *)&backend->ws_addr, backend->ws_addrlen, &fd)
                     : UV_ENOMEM;
    if (rc == 0 && (rc = wsg_sock_open(&px->worker->loop, &u->sock, fd,
                                       bridge_on_upstream_event)) < 0)
        close(fd);
    if (rc < 0) {
        free(u);
        free(uh);
        return rc;
    }
    u->bridge = b;
    u->backend = backend;
    u->hs = uh;
    u->state = U_CONNECTING;
    b->up = u;
    b->handles++;
    wsg_http_reader_init(&uh->reader, HTTP_RESPONSE, config_of(b)->max_header_size);
    wsg_ws_make_key(&px->worker->rng, uh->key);
    wsg_ws_accept(wsg_str_make(uh->key, WSG_WS_KEY_LEN), uh->accept);
    wsg_sock_await_connect(&u->sock);
    return 0;
}

/* Sends the upgrade request once the connect has finished. */
static int send_request(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    uv_buf_t parts[4] = {
        uv_buf_init(b->dial_request, (unsigned)strlen(b->dial_request)),
        uv_buf_init("Sec-WebSocket-Key: ", 19),
        uv_buf_init(u->hs->key, WSG_WS_KEY_LEN),
        uv_buf_init("\r\n\r\n", 4),
    };
    return wsg_sock_write(&u->sock, parts, 4);
}

static void dial_failed(wsg_bridge *b, const char *why)
{
    wsg_upstream *u = b->up;
    wsg_backend *failed = u ? u->backend : NULL;
    uint64_t now = bridge_now(b);
    if (failed) {
        wsg_backend_mark_suspect(failed, now, SUSPECT_MS);
        wsg_log_warn("backend unreachable", "backend=%s conn=%llu why=\"%s\"", failed->id,
                     (unsigned long long)b->id, why);
    }
    bridge_release_upstream(b);
    if (b->hs->dials < MAX_DIALS && now < b->hs->deadline) {
        dial_next(b, failed);
        return;
    }
    upgrade_answer(b, 502, "", "backend unreachable");
}

static void dial_next(wsg_bridge *b, const wsg_backend *avoid)
{
    client_hs *hs = b->hs;
    wsg_str key = wsg_http_query_param(hs->head.query, WSG_STR("clientId"));
    while (hs->dials < MAX_DIALS) {
        wsg_backend *backend = wsg_registry_pick(hs->service, key, avoid, bridge_now(b));
        if (backend == NULL) {
            upgrade_answer(b, avoid ? 502 : 503, avoid ? "" : "Retry-After: 1\r\n",
                           avoid ? "backend unreachable" : "NO SERVER AVAILABLE");
            return;
        }
        hs->dials++;
        int rc = start_dial(b, backend);
        if (rc == 0) {
            b->state = B_CONNECTING;
            bridge_sync_reading(b);
            bridge_arm(b, hs->deadline);
            return;
        }
        wsg_backend_release(backend);
        wsg_backend_mark_suspect(backend, bridge_now(b), SUSPECT_MS);
        wsg_log_warn("backend unreachable", "backend=%s conn=%llu why=\"%s\"", backend->id,
                     (unsigned long long)b->id, uv_strerror(rc));
        avoid = backend;
    }
    upgrade_answer(b, 502, "", "backend unreachable");
}

static void request_complete(wsg_bridge *b)
{
    client_hs *hs = b->hs;
    const char *msg;
    const char *extra;
    int status = check_request(&hs->head, &msg, &extra);
    if (status) {
        upgrade_answer(b, status, extra, msg);
        return;
    }
    b->dial_request = build_dial_request(b, hs, &msg);
    if (b->dial_request == NULL) {
        upgrade_answer(b, 431, "", msg);
        return;
    }
    /* Frames the client sent right behind its request wait for the 101. */
    size_t early = wsg_buf_len(hs->raw) - hs->head.head_len;
    if (early && wsg_buf_append(&b->held, wsg_buf_begin(hs->raw) + hs->head.head_len, early) < 0) {
        upgrade_answer(b, 503, "", "out of memory");
        return;
    }
    hs->service = b->proxy->gw->registry->default_service;
    hs->deadline = bridge_now(b) + config_of(b)->upstream_timeout;
    dial_next(b, NULL);
}

void upgrade_on_client_readable(wsg_bridge *b)
{
    const wsg_config *cfg = config_of(b);
    client_hs *hs = b->hs;
    if (hs == NULL) {
        hs = b->hs = calloc(1, sizeof(*hs));
        if (hs == NULL) {
            upgrade_answer(b, 503, "", "out of memory");
            return;
        }
        wsg_http_reader_init(&hs->reader, HTTP_REQUEST, cfg->max_header_size);
    }
    /* Never hold more than one byte past the head limit: that byte is
     * enough to know the head is too large. */
    size_t have = wsg_buf_len(hs->raw);
    size_t room = cfg->max_header_size + 1 - have;
    if (room > WSG_SCRATCH_SIZE)
        room = WSG_SCRATCH_SIZE;
    uint8_t *buf = b->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&b->client, buf, room);
    if (n == 0)
        return;
    if (n < 0) {
        /* Gone before asking anything: nothing to answer, nothing to log
         * above debug. */
        wsg_log_debug("client left during the handshake", "conn=%llu", (unsigned long long)b->id);
        bridge_end(b, "client left during the handshake");
        return;
    }
    b->bytes_in += (uint64_t)n;
    if (wsg_buf_append(&hs->raw, buf, (size_t)n) < 0) {
        upgrade_answer(b, 503, "", "out of memory");
        return;
    }
    int rc = wsg_http_reader_head(&hs->reader, (const char *)wsg_buf_begin(hs->raw),
                                  wsg_buf_len(hs->raw), &hs->head);
    if (rc == 0)
        return;
    if (rc < 0) {
        upgrade_answer(b, -rc, "",
                       rc == -431 ? "request header fields too large" : "malformed HTTP request");
        return;
    }
    request_complete(b);
}

/* ---- the backend's answer ---------------------------------------------- */

/* Checks a 101 against RFC 6455 section 4.1 and what the client offered.
 * Returns NULL when acceptable, else why not. Fills the client's protocol
 * and extension answers. */
static const char *check_switch(wsg_bridge *b, const wsg_http_head *ans, wsg_str *protocol,
                                char *ext, size_t extlen, int *extn)
{
    const client_hs *hs = b->hs;
    if (!wsg_str_list_has_token(wsg_http_header_get(ans, WSG_STR("Upgrade")),
                                WSG_STR("websocket")) ||
        !wsg_str_list_has_token(wsg_http_header_get(ans, WSG_STR("Connection")),
                                WSG_STR("upgrade")))
        return "101 without Upgrade: websocket and Connection: Upgrade";
    wsg_str accept = wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Accept"));
    if (wsg_http_header_count(ans, WSG_STR("Sec-WebSocket-Accept")) != 1 ||
        !wsg_str_eq(accept, wsg_str_cstr(b->up->hs->accept)))
        return "wrong Sec-WebSocket-Accept";
    *protocol = wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Protocol"));
    if (protocol->len > 0) {
        bool offered = false;
        for (uint32_t i = 0; i < hs->head.header_count && !offered; i++) {
            if (wsg_str_eq_nocase(hs->head.headers[i].name, WSG_STR("Sec-WebSocket-Protocol")))
                offered = wsg_str_list_has_token(hs->head.headers[i].value, *protocol);
        }
        if (!offered || wsg_http_header_count(ans, WSG_STR("Sec-WebSocket-Protocol")) != 1)
            return "a subprotocol the client did not offer";
    }
    wsg_str extensions = wsg_http_header_get(ans, WSG_STR("Sec-WebSocket-Extensions"));
    *extn = 0;
    if (extensions.len > 0) {
        if (!hs->offered_deflate)
            return "an extension that was not offered";
        *extn = wsg_ws_answer_for_client(extensions, ext, extlen);
        if (*extn < 0)
            return "an extension answer that is not permessage-deflate";
    }
    return NULL;
}

/* Sends the client its 101 with the backend's choices and its other
 * end-to-end headers (a Set-Cookie, say). */
static int write_switch(wsg_bridge *b, const wsg_http_head *ans, wsg_str protocol,
                        const char *ext, int extn)
{
    const client_hs *hs = b->hs;
    char accept[WSG_WS_ACCEPT_LEN + 1];
    wsg_buf *w = NULL;
    int rc = 0;
    wsg_str connection = wsg_http_header_get(ans, WSG_STR("Connection"));
    wsg_ws_accept(wsg_http_header_get(&hs->head, WSG_STR("Sec-WebSocket-Key")), accept);
    rc |= put_cstr(&w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    rc |= put_cstr(&w, accept);
    rc |= put(&w, "\r\n", 2);
    if (protocol.len)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Protocol"), protocol);
    if (extn > 0)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Extensions"), wsg_str_make(ext, (size_t)extn));
    for (uint32_t i = 0; i < ans->header_count; i++) {
        const wsg_http_header *hd = &ans->headers[i];
        if (wsg_str_starts_with(hd->name, WSG_STR("Sec-WebSocket-")) ||
            wsg_str_starts_with(hd->name, WSG_STR("sec-websocket-")) ||
            wsg_http_is_hop_by_hop(hd->name, connection) ||
            wsg_str_eq_nocase(hd->name, WSG_STR("Content-Length")))
            continue;
        rc |= put_header(&w, hd->name, hd->value);
    }
    rc |= put(&w, "\r\n", 2);
    if (rc != 0) {
        wsg_buf_free(&w);
        return -1;
    }
    rc = bridge_write_client(b, wsg_buf_begin(w), wsg_buf_len(w));
    wsg_buf_free(&w);
    return rc;
}

static void switch_to_frames(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    upstream_hs *uh = u->hs;
    const wsg_http_head *ans = &uh->head;
    wsg_str protocol;
    char ext[1024];
    int extn;
    const char *bad = check_switch(b, ans, &protocol, ext, sizeof(ext), &extn);
    if (bad) {
        wsg_log_warn("backend answered the upgrade wrongly", "backend=%s conn=%llu why=\"%s\"",
                     u->backend->id, (unsigned long long)b->id, bad);
        upgrade_answer(b, 502, "", "backend answered the upgrade wrongly");
        return;
    }
    if (write_switch(b, ans, protocol, ext, extn) < 0)
        return;
    if (extn > 0) {
        b->rx.flags |= WSG_WS_S_DEFLATE;
        u->rx.flags |= WSG_WS_S_DEFLATE;
    }
    /* Frames the backend sent right behind its 101. */
    wsg_buf *raw = uh->raw;
    size_t head_len = ans->head_len;
    uh->raw = NULL;
    upstream_hs_free(u);
    upgrade_free(b);
    u->state = U_OPEN;
    bridge_open(b);
    if (raw && wsg_buf_len(raw) > head_len && b->up == u)
        bridge_relay_from_backend(b, wsg_buf_begin(raw) + head_len, wsg_buf_len(raw) - head_len);
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
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", ans->status, wsg_http_reason(ans->status));
    rc |= put_cstr(&w, line);
    for (uint32_t i = 0; i < ans->header_count; i++) {
        const wsg_http_header *hd = &ans->headers[i];
        if (wsg_http_is_hop_by_hop(hd->name, connection))
            continue;
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
    const wsg_config *cfg = config_of(b);
    size_t have = wsg_buf_len(uh->raw);
    size_t room = cfg->max_header_size + 1 - have;
    if (room > WSG_SCRATCH_SIZE)
        room = WSG_SCRATCH_SIZE;
    uint8_t *buf = b->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&u->sock, buf, room);
    if (n == 0)
        return;
    if (n < 0) {
        wsg_log_warn("backend closed during the handshake", "backend=%s conn=%llu",
                     u->backend->id, (unsigned long long)b->id);
        upgrade_answer(b, 502, "", "backend closed the connection during the handshake");
        return;
    }
    u->rx_at = bridge_now(b);
    if (wsg_buf_append(&uh->raw, buf, (size_t)n) < 0) {
        upgrade_answer(b, 503, "", "out of memory");
        return;
    }
    int rc = wsg_http_reader_head(&uh->reader, (const char *)wsg_buf_begin(uh->raw),
                                  wsg_buf_len(uh->raw), &uh->head);
    if (rc == 0)
        return;
    if (rc < 0) {
        wsg_log_warn("backend answered the upgrade wrongly", "backend=%s conn=%llu why=\"%s\"",
                     u->backend->id, (unsigned long long)b->id, "malformed HTTP answer");
        upgrade_answer(b, 502, "", "backend answered the upgrade wrongly");
        return;
    }
    if (uh->head.status == 101)
        switch_to_frames(b);
    else if (uh->head.status >= 200)
        relay_answer(b);
    else
        upgrade_answer(b, 502, "", "backend answered the upgrade wrongly");
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

void upgrade_on_upstream_event(wsg_upstream *u, int events)
{
    wsg_bridge *b = u->bridge;
    if (events < 0) {
        if (u->state == U_CONNECTING)
            dial_failed(b, "poll error");
        else
            upgrade_answer(b, 502, "", "backend connection failed");
        return;
    }
    if (u->state == U_CONNECTING) {
        if (!(events & UV_WRITABLE))
            return;
        int rc = wsg_sock_connect_result(&u->sock);
        if (rc == 0)
            rc = send_request(b);
        if (rc < 0) {
            dial_failed(b, uv_strerror(rc));
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
                dial_failed(b, uv_strerror(rc));
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

void upgrade_timeout(wsg_bridge *b)
{
    uint64_t now = bridge_now(b);
    if (b->state == B_REQUEST) {
        if (now < b->opened_at + config_of(b)->handshake_timeout) {
            bridge_arm(b, b->opened_at + config_of(b)->handshake_timeout);
            return;
        }
        upgrade_answer(b, 408, "", "the upgrade request did not arrive in time");
        return;
    }
    if (now < b->hs->deadline) {
        bridge_arm(b, b->hs->deadline);
        return;
    }
    if (b->state == B_CONNECTING) {
        if (b->up) {
            wsg_backend_mark_suspect(b->up->backend, now, SUSPECT_MS);
            wsg_log_warn("backend did not answer the upgrade in time", "backend=%s conn=%llu",
                         b->up->backend->id, (unsigned long long)b->id);
        }
        upgrade_answer(b, 504, "", "backend did not answer in time");
        return;
    }
    bridge_end(b, "backend's answer did not finish in time");
}
