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
#include <stdlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* Dials per session before the client gets 502. */
#define MAX_DIALS 3

static const wsg_config *config_of(const wsg_bridge *b)
{
    return b->proxy->gw->cfg;
}

void upgrade_free(wsg_bridge *b)
{
    client_hs *hs = b->hs;
    if (hs == NULL)
        return;
    wsg_buf_free(&hs->raw);
    free(hs->protocols);
    free(hs->extensions);
    if (hs->sticky)
        wsg_backend_unref(hs->sticky);
    wsg_pool_put(&b->proxy->client_handshakes, hs);
    b->hs = NULL;
}

void upgrade_answer(wsg_bridge *b, int status, const char *extra_headers, const char *message)
{
    char answer[1024];
    char client[64];
    wsg_proxy *px = b->proxy;
    uint64_t now = bridge_now(b);
    wsg_peer_format(&b->peer, client, sizeof(client));
    /* A flood of refusals (rate limits) is told once a second, not per
     * connection. */
    if (status != 429 || now - px->refused_logged_at >= 1000) {
        if (status == 429)
            px->refused_logged_at = now;
        wsg_log_info("handshake refused", "conn=%llu client=%s status=%d why=\"%s\"",
                     (unsigned long long)b->id, client, status, message);
    }
    wsg_count(&b->proxy->counters,
              status >= 500 ? WSG_C_HANDSHAKES_FAILED : WSG_C_HANDSHAKES_REJECTED, 1);
    bridge_release_upstream(b);
    if (b->client.tls_handshaking) {
        /* No TLS session to answer in yet (a TLS slowloris): just close. */
        bridge_end(b, message);
        return;
    }
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

/* Keeps the client's subprotocol and deflate offers for the first dial. */
static int keep_offers(client_hs *hs, const char **why)
{
    const wsg_http_head *h = &hs->head;
    char value[4096];
    char offer[4096];
    int n = joined_values(h, WSG_STR("Sec-WebSocket-Protocol"), value, sizeof(value));
    if (n < 0) {
        *why = "Sec-WebSocket-Protocol is too long";
        return -1;
    }
    if (n > 0 && (hs->protocols = strdup(value)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    n = joined_values(h, WSG_STR("Sec-WebSocket-Extensions"), value, sizeof(value));
    int offered = n > 0 ? wsg_ws_offer_for_backend(wsg_str_make(value, (size_t)n), offer,
                                                   sizeof(offer))
                        : 0;
    if (n < 0 || offered < 0) {
        *why = "Sec-WebSocket-Extensions is too long";
        return -1;
    }
    if (offered > 0 && (hs->extensions = strdup(offer)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

/* Keeps what the backend request needs from the client's, compactly, for
 * the first dial and any later one:
 *
 *   target \0 host \0 header lines \0
 *
 * The target is the client's, or for /ws/:service?path=P the path P and
 * the other parameters.
 * The header lines are the client's end-to-end headers, plus its
 * X-Forwarded-For and X-Forwarded-Proto when the peer is a trusted proxy.
 * The fixed lines and our forwarding headers are written at dial time
 * (upgrade_render_request), so an idle session keeps only this. */
static char *keep_request(wsg_bridge *b, client_hs *hs, wsg_str target, const char **why)
{
    const wsg_http_head *h = &hs->head;
    wsg_buf *w = NULL;
    wsg_str connection = wsg_http_header_get(h, WSG_STR("Connection"));
    wsg_str host = wsg_http_header_get(h, WSG_STR("Host"));
    bool trusted = proxy_peer_trusted(b->proxy->gw, b->peer.family, b->peer.ip);
    int rc = put_bytes(&w, target.p, target.len) | put_bytes(&w, "", 1);
    rc |= put_bytes(&w, host.p, host.len) | put_bytes(&w, "", 1);
    for (uint32_t i = 0; i < h->header_count; i++) {
        const wsg_http_header *hd = &h->headers[i];
        bool forwarding = wsg_str_eq_nocase(hd->name, WSG_STR("X-Forwarded-For")) ||
                          wsg_str_eq_nocase(hd->name, WSG_STR("X-Forwarded-Proto"));
        if ((forwarding && !trusted) || (!forwarding && header_is_ours(hd->name)) ||
            wsg_http_is_hop_by_hop(hd->name, connection))
            continue;
        rc |= put_header(&w, hd->name, hd->value);
    }
    rc |= put_bytes(&w, "", 1);
    if (rc != 0) {
        *why = "out of memory";
        wsg_buf_free(&w);
        return NULL;
    }
    /* never 0 bytes: the request ends with its NUL at least. */
    // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
    char *kept = malloc(wsg_buf_len(w));
    if (kept)
        memcpy(kept, wsg_buf_begin(w), wsg_buf_len(w));
    else
        *why = "out of memory";
    wsg_buf_free(&w);
    return kept;
}

wsg_str upgrade_target(const wsg_bridge *b)
{
    return wsg_str_cstr(b->request);
}

int upgrade_render_request(const wsg_bridge *b, wsg_buf **w)
{
    const char *target = b->request;
    const char *host = target + strlen(target) + 1;
    wsg_str lines = wsg_str_cstr(host + strlen(host) + 1);
    wsg_str xff = wsg_str_make(NULL, 0);
    wsg_str proto = wsg_str_make(NULL, 0);
    bool trusted = proxy_peer_trusted(b->proxy->gw, b->peer.family, b->peer.ip);
    int rc = put_cstr(w, "GET ") | put_cstr(w, target) | put_cstr(w, " HTTP/1.1\r\n");
    rc |= put_header(w, WSG_STR("Host"), wsg_str_cstr(host));
    rc |= put_cstr(w, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
    while (lines.len > 0) {
        const char *end = memchr(lines.p, '\n', lines.len);
        size_t n = end ? (size_t)(end - lines.p) + 1 : lines.len;
        wsg_str line = wsg_str_make(lines.p, n);
        lines = wsg_str_make(lines.p + n, lines.len - n);
        /* Only a trusted proxy's forwarding headers were kept: take them
         * apart, they are rewritten below. */
        wsg_str value = line;
        wsg_str name = wsg_str_next_item(&value, ':');
        value = wsg_str_make(value.p, value.len >= 2 ? value.len - 2 : 0);
        if (trusted && wsg_str_eq_nocase(name, WSG_STR("X-Forwarded-For")))
            xff = wsg_str_trim(value);
        else if (trusted && wsg_str_eq_nocase(name, WSG_STR("X-Forwarded-Proto")))
            proto = wsg_str_trim(value);
        else
            rc |= put_bytes(w, line.p, line.len);
    }
    rc |= proxy_put_forwarded(b->proxy->gw, &b->peer, wsg_sock_ssl(&b->client) != NULL, xff,
                              proto, w);
    return rc;
}

/* ---- dialling ---------------------------------------------------------- */

static void dial_next(wsg_bridge *b, const wsg_backend *avoid)
{
    client_hs *hs = b->hs;
    wsg_registry *r = b->proxy->gw->registry;
    wsg_str key = b->session ? wsg_str_make(b->session->key, b->session->key_len)
                             : wsg_str_make(NULL, 0);
    while (hs->dials < MAX_DIALS) {
        wsg_backend *backend = wsg_registry_pick(r, hs->service, key, hs->sticky, avoid,
                                                 bridge_now(b));
        if (backend == NULL) {
            upgrade_answer(b, avoid ? 502 : 503, avoid ? "" : "Retry-After: 1\r\n",
                           avoid ? "backend unreachable" : "NO SERVER AVAILABLE");
            return;
        }
        hs->dials++;
        int rc = dial_start(b, backend, NULL);
        if (rc == 0) {
            b->state = B_CONNECTING;
            bridge_sync_reading(b);
            bridge_arm(b, hs->deadline);
            return;
        }
        proxy_backend_failed(b, backend, "backend unreachable", uv_strerror(rc));
        wsg_backend_release(backend);
        avoid = backend;
    }
    upgrade_answer(b, 502, "", "backend unreachable");
}

void upgrade_dial_failed(wsg_bridge *b, wsg_backend *failed)
{
    if (b->hs->dials < MAX_DIALS && bridge_now(b) < b->hs->deadline) {
        dial_next(b, failed);
        return;
    }
    upgrade_answer(b, 502, "", "backend unreachable");
}

/* True when the comma-separated list is empty or holds value (ASCII case
 * ignored). */
static bool allowed_by(const char *list, wsg_str value)
{
    return list[0] == '\0' || wsg_str_list_has_token(wsg_str_cstr(list), value);
}

/* Origin and Host checks: cross-site WebSocket hijacking is a browser
 * opening a socket from another site's page with the user's cookies. */
static int check_origin_and_host(const wsg_bridge *b, const wsg_http_head *h, const char **msg)
{
    const wsg_config *cfg = config_of(b);
    wsg_str origin = wsg_http_header_get(h, WSG_STR("Origin"));
    if (origin.p && !allowed_by(cfg->allowed_origins, origin)) {
        *msg = "origin not allowed";
        return 403;
    }
    if (!allowed_by(cfg->allowed_hosts, wsg_http_header_get(h, WSG_STR("Host")))) {
        *msg = "host not allowed";
        return 403;
    }
    return 0;
}

/* The address limits apply to: the peer, or behind a trusted proxy the
 * client it names. */
static void limited_address(const wsg_bridge *b, const wsg_http_head *h, wsg_cidr *out)
{
    char ip[64];
    bool trusted = proxy_peer_trusted(b->proxy->gw, b->peer.family, b->peer.ip);
    proxy_real_client_ip(b->proxy->gw, &b->peer, wsg_http_header_get(h, WSG_STR("X-Forwarded-For")),
                         trusted, ip, sizeof(ip));
    if (wsg_cidr_parse(ip, strlen(ip), out) < 0) {
        memset(out, 0, sizeof(*out));
        out->family = b->peer.family;
        memcpy(out->ip, b->peer.ip, sizeof(b->peer.ip));
    }
}

/* Rate and per-address limits. Returns 0 when admitted. */
static int admit(wsg_bridge *b, const wsg_http_head *h, const char **msg, const char **extra)
{
    static __thread char retry[48];
    wsg_cidr who;
    uint32_t wait_ms = 0;
    limited_address(b, h, &who);
    wsg_admit verdict = wsg_clients_admit_upgrade(b->proxy->gw->addresses, who.family, who.ip,
                                                  bridge_now(b), &b->counted, &wait_ms);
    if (verdict == WSG_ADMIT_OK)
        return 0;
    if (verdict == WSG_ADMIT_FULL) {
        *msg = "too many connections from your address";
        return 503;
    }
    wsg_count(&b->proxy->counters, WSG_C_RATE_LIMITED, 1);
    snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", (wait_ms + 999) / 1000);
    *extra = retry;
    *msg = "too many upgrades from your address; slow down";
    return 429;
}

/* The service and backend target of the request: on WS_PORT the default
 * service and the client's target unchanged; from the HTTP port
 * (/ws/:service?path=P) the service named and path P with the other query
 * parameters, written in *routed (malloc'd; the caller frees it). Returns
 * 0, or the status to answer. */
static int route(wsg_bridge *b, wsg_str *target, char **routed, const char **msg)
{
    static __thread char unknown[160];
    client_hs *hs = b->hs;
    wsg_registry *r = b->proxy->gw->registry;
    const wsg_http_head *h = &hs->head;
    wsg_str name;
    size_t prefix;
    if (!(b->flags & BF_ROUTED)) {
        *target = h->target;
        hs->service = r->default_service;
        return 0;
    }
    /* The path and the other parameters take no more than the query, plus
     * a '/', a '?' and the NUL. */
    size_t cap = h->query.len + 3;
    if ((*routed = malloc(cap)) == NULL) {
        *msg = "out of memory";
        return 503;
    }
    int n = wsg_http_route(h->path, &name, &prefix) == WSG_ROUTE_WS
                ? wsg_http_route_ws_target(h->query, *routed, cap)
                : -1;
    if (n < 0) {
        *msg = "the path parameter must be an absolute path (/ws/:service?path=/p)";
        return 400;
    }
    *target = wsg_str_make(*routed, (size_t)n);
    hs->service = wsg_registry_name_reserved(name) ? NULL : wsg_registry_service(r, name);
    if (hs->service == NULL) {
        /* Only a valid name is repeated: the text goes to the log too. */
        if (wsg_registry_name_valid(name) && name.len < 100)
            snprintf(unknown, sizeof(unknown), "unknown service: %.*s", (int)name.len, name.p);
        else
            snprintf(unknown, sizeof(unknown), "unknown service");
        *msg = unknown;
        return 404;
    }
    return 0;
}

static void request_complete(wsg_bridge *b)
{
    client_hs *hs = b->hs;
    wsg_gateway *gw = b->proxy->gw;
    const char *msg;
    const char *extra = "";
    int status = check_request(&hs->head, &msg, &extra);
    if (status == 0)
        status = check_origin_and_host(b, &hs->head, &msg);
    if (status == 0)
        status = admit(b, &hs->head, &msg, &extra);
    if (status) {
        upgrade_answer(b, status, extra, msg);
        return;
    }
    wsg_str target;
    char *routed = NULL;
    status = route(b, &target, &routed, &msg);
    if (status == 0 && (keep_offers(hs, &msg) < 0 ||
                        (b->request = keep_request(b, hs, target, &msg)) == NULL))
        status = 431;
    free(routed);
    if (status) {
        upgrade_answer(b, status, "", msg);
        return;
    }
    /* Frames the client sent right behind its request wait for the 101. */
    size_t early = wsg_buf_len(hs->raw) - hs->head.head_len;
    if (early && wsg_buf_append(&b->held, wsg_buf_begin(hs->raw) + hs->head.head_len, early) < 0) {
        upgrade_answer(b, 503, "", "out of memory");
        return;
    }
    wsg_str key = proxy_sticky_key(config_of(b), &hs->head);
    if (key.len > 0)
        b->session = wsg_sessions_attach(gw->sessions, key, bridge_now(b), &hs->sticky);
    hs->deadline = bridge_now(b) + config_of(b)->upstream_timeout;
    dial_next(b, NULL);
}

/* Adds bytes of the request; reads the head once it is complete. */
static void take_bytes(wsg_bridge *b, const uint8_t *buf, size_t n)
{
    client_hs *hs = b->hs;
    b->bytes_in += (uint64_t)n;
    if (wsg_buf_append(&hs->raw, buf, n) < 0) {
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

static client_hs *start_handshake(wsg_bridge *b)
{
    client_hs *hs = b->hs = wsg_pool_get(&b->proxy->client_handshakes);
    if (hs == NULL) {
        upgrade_answer(b, 503, "", "out of memory");
        return NULL;
    }
    wsg_http_reader_init(&hs->reader, HTTP_REQUEST, config_of(b)->max_header_size);
    return hs;
}

void upgrade_take_request(wsg_bridge *b, const uint8_t *bytes, size_t n)
{
    if (start_handshake(b))
        take_bytes(b, bytes, n);
}

void upgrade_on_client_readable(wsg_bridge *b)
{
    const wsg_config *cfg = config_of(b);
    client_hs *hs = b->hs;
    if (hs == NULL && (hs = start_handshake(b)) == NULL)
        return;
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
    take_bytes(b, buf, (size_t)n);
}

/* ---- the switch ---------------------------------------------------------- */

/* Tells the client which backend serves it, as the seed gateway did, for
 * clients that rely on it (WSGATE_SERVER_ASSIGNMENT). */
static void send_assignment(wsg_bridge *b, const wsg_backend *backend)
{
    char host[256];
    char quoted_id[160];
    char quoted_host[300];
    char json[600];
    uint8_t header[WSG_WS_MAX_HEADER];
    wsg_registry_public_host(b->proxy->gw->registry, backend, host, sizeof(host));
    if (wsg_json_quote(quoted_id, sizeof(quoted_id), backend->id, strlen(backend->id)) == 0 ||
        wsg_json_quote(quoted_host, sizeof(quoted_host), host, strlen(host)) == 0)
        return;
    int n = snprintf(json, sizeof(json),
                     "{\"type\":\"server_assignment\",\"serverId\":%s,\"publicHost\":%s,"
                     "\"port\":%u,\"wsPort\":%u}",
                     quoted_id, quoted_host, backend->http_port, backend->ws_port);
    size_t h = wsg_ws_header_write(header, true, 0, WSG_WS_OP_TEXT, (uint64_t)n, NULL);
    if (bridge_write_client(b, header, h) == 0)
        bridge_write_client(b, json, (size_t)n);
}

/* Remembers the backend's choices, so that a later backend is held to
 * them. Nothing is kept when there were none (the usual case). */
static int keep_choices(wsg_bridge *b, wsg_str protocol, wsg_str extensions)
{
    if (protocol.len == 0 && extensions.len == 0)
        return 0;
    b->agreed = malloc(protocol.len + extensions.len + 2);
    if (b->agreed == NULL)
        return -1;
    if (protocol.len)
        memcpy(b->agreed, protocol.p, protocol.len);
    b->agreed[protocol.len] = '\n';
    if (extensions.len)
        memcpy(b->agreed + protocol.len + 1, extensions.p, extensions.len);
    b->agreed[protocol.len + 1 + extensions.len] = '\0';
    return 0;
}

int upgrade_accept(wsg_bridge *b, const wsg_http_head *ans, wsg_str protocol, wsg_str extensions)
{
    client_hs *hs = b->hs;
    wsg_backend *backend = b->up->backend;
    char accept[WSG_WS_ACCEPT_LEN + 1];
    char ext[1024];
    int extn = extensions.len ? wsg_ws_answer_for_client(extensions, ext, sizeof(ext)) : 0;
    wsg_buf *w = NULL;
    int rc = keep_choices(b, protocol, extensions);
    wsg_str connection = wsg_http_header_get(ans, WSG_STR("Connection"));
    wsg_ws_accept(wsg_http_header_get(&hs->head, WSG_STR("Sec-WebSocket-Key")), accept);
    rc |= put_cstr(&w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n");
    rc |= put_header(&w, WSG_STR("Sec-WebSocket-Accept"), wsg_str_cstr(accept));
    if (protocol.len)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Protocol"), protocol);
    if (extn > 0)
        rc |= put_header(&w, WSG_STR("Sec-WebSocket-Extensions"), wsg_str_make(ext, (size_t)extn));
    /* The backend's other end-to-end headers (a Set-Cookie, say). */
    for (uint32_t i = 0; i < ans->header_count; i++) {
        const wsg_http_header *hd = &ans->headers[i];
        if (wsg_str_eq_nocase(wsg_str_make(hd->name.p, hd->name.len < 14 ? hd->name.len : 14),
                              WSG_STR("Sec-WebSocket-")) ||
            wsg_http_is_hop_by_hop(hd->name, connection) ||
            wsg_str_eq_nocase(hd->name, WSG_STR("Content-Length")))
            continue;
        rc |= put_header(&w, hd->name, hd->value);
    }
    rc |= put_bytes(&w, "\r\n", 2);
    if (rc != 0) {
        wsg_buf_free(&w);
        upgrade_answer(b, 503, "", "out of memory");
        return -1;
    }
    rc = bridge_write_client(b, wsg_buf_begin(w), wsg_buf_len(w));
    wsg_buf_free(&w);
    if (rc < 0)
        return -1;
    if (b->session)
        wsg_sessions_assign(b->proxy->gw->sessions, b->session, backend);
    if (config_of(b)->server_assignment)
        send_assignment(b, backend);
    upgrade_free(b);
    bridge_open(b);
    return 0;
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
    uint64_t deadline = b->hs ? b->hs->deadline : b->opened_at;
    if (now < deadline) {
        bridge_arm(b, deadline);
        return;
    }
    if (b->state == B_CONNECTING) {
        if (b->up)
            proxy_backend_failed(b, b->up->backend, "backend did not answer the upgrade in time",
                                 "upstream timeout");
        upgrade_answer(b, 504, "", "backend did not answer in time");
        return;
    }
    bridge_end(b, "backend's answer did not finish in time");
}
