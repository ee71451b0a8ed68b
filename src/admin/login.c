/* Dashboard logins (seed 000's API) and the history the dashboard charts.
 *
 *   POST /api/login  {"authKey": KEY} -> {"success": true, "sessionToken": T}
 *                    and cookie dashboard_session=T (HttpOnly, SameSite=Strict,
 *                    Secure over TLS, DASHBOARD_SESSION_TTL); wrong key -> 401; too many tries
 *                    from one address -> 429 with Retry-After
 *   POST /api/logout -> {"success": true}; the session ends
 *   GET /api/history -> connections and messages per second, one point every
 *                    few seconds over the last minutes
 */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "core/log.h"

#define TOKEN_BYTES 32

void wsg_admin_shared_init(wsg_admin_shared *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
}

void wsg_admin_shared_deinit(wsg_admin_shared *s)
{
    OPENSSL_cleanse(s->logins, sizeof(s->logins));
    pthread_mutex_destroy(&s->lock);
}

/* ---- history ---------------------------------------------------------------- */

void wsg_admin_sample(wsg_admin_shared *s, const wsg_gateway *gw)
{
    uint64_t messages = 0;
    for (unsigned w = 0; w < gw->proxy_count; w++) {
        messages += wsg_counter_read(&gw->proxies[w]->counters, WSG_C_MESSAGES_FROM_CLIENTS);
        messages += wsg_counter_read(&gw->proxies[w]->counters, WSG_C_MESSAGES_FROM_BACKENDS);
    }
    uint64_t mono = wsg_registry_mono_ms();
    pthread_mutex_lock(&gw->registry->lock);
    uint32_t backends = (uint32_t)gw->registry->default_service->count;
    pthread_mutex_unlock(&gw->registry->lock);
    pthread_mutex_lock(&s->lock);
    wsg_history_point *p = &s->history[s->history_next % WSG_HISTORY_POINTS];
    p->timestamp_ms = wsg_registry_wall_ms();
    p->connections = wsg_gateway_connections(gw);
    p->backends = backends;
    p->messages_per_second = s->last_sample_ms && mono > s->last_sample_ms
                                 ? (double)(messages - s->last_messages) * 1000.0 /
                                       (double)(mono - s->last_sample_ms)
                                 : 0;
    s->last_messages = messages;
    s->last_sample_ms = mono;
    s->history_next++;
    pthread_mutex_unlock(&s->lock);
}

void wsg_api_history(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    if (!wsg_admin_authorized(a, req, NULL)) {
        wsg_reply_error(reply, 401, "Invalid authentication key");
        return;
    }
    wsg_admin_shared *s = a->shared;
    json_t *points = json_array();
    pthread_mutex_lock(&s->lock);
    size_t have = s->history_next < WSG_HISTORY_POINTS ? s->history_next : WSG_HISTORY_POINTS;
    for (size_t i = have; i > 0; i--) {
        const wsg_history_point *p = &s->history[(s->history_next - i) % WSG_HISTORY_POINTS];
        json_array_append_new(points, json_pack("{s:I, s:I, s:I, s:f}", "timestamp",
                                                (json_int_t)p->timestamp_ms, "connections",
                                                (json_int_t)p->connections, "backends",
                                                (json_int_t)p->backends, "messagesPerSecond",
                                                p->messages_per_second));
    }
    pthread_mutex_unlock(&s->lock);
    wsg_reply_json(reply, 200, json_pack("{s:o}", "points", points));
}

/* ---- sessions --------------------------------------------------------------- */

static wsg_str cookie_token(const wsg_request *req)
{
    const wsg_http_head *h = req->head;
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (!wsg_str_eq_nocase(h->headers[i].name, WSG_STR("Cookie")))
            continue;
        wsg_str rest = h->headers[i].value;
        while (rest.len > 0) {
            wsg_str value = wsg_str_next_item(&rest, ';');
            wsg_str key = wsg_str_next_item(&value, '=');
            if (wsg_str_eq(key, WSG_STR("dashboard_session")))
                return value;
        }
    }
    return wsg_str_make(NULL, 0);
}

/* The slot of a live session with this token, or NULL. Lock held. */
static wsg_login *find_login(wsg_admin_shared *s, wsg_str token, uint64_t now)
{
    if (token.len != TOKEN_BYTES * 2)
        return NULL;
    for (size_t i = 0; i < WSG_LOGIN_SESSIONS; i++) {
        wsg_login *l = &s->logins[i];
        if (l->token[0] && l->expires_ms > now && CRYPTO_memcmp(l->token, token.p, token.len) == 0)
            return l;
    }
    return NULL;
}

bool wsg_login_valid(wsg_admin *a, const wsg_request *req)
{
    wsg_str token = cookie_token(req);
    if (token.len == 0)
        return false;
    pthread_mutex_lock(&a->shared->lock);
    bool ok = find_login(a->shared, token, wsg_registry_mono_ms()) != NULL;
    pthread_mutex_unlock(&a->shared->lock);
    return ok;
}

/* Token bucket per client address: `per_minute` tries, refilled evenly.
 * Returns 0 when allowed, else the seconds to wait. Lock held. */
static unsigned login_throttle(wsg_admin_shared *s, const wsg_peer *who, unsigned per_minute,
                               uint64_t now)
{
    wsg_login_limit *slot = NULL;
    wsg_login_limit *oldest = &s->limits[0];
    for (size_t i = 0; i < WSG_LOGIN_LIMITS && slot == NULL; i++) {
        wsg_login_limit *l = &s->limits[i];
        if (l->at_ms && l->who.family == who->family && memcmp(l->who.ip, who->ip, 16) == 0)
            slot = l;
        else if (l->at_ms < oldest->at_ms)
            oldest = l;
    }
    if (slot == NULL) {
        slot = oldest;
        slot->who = *who;
        slot->tokens = per_minute;
        slot->at_ms = now;
    }
    double rate = per_minute / 60000.0;
    slot->tokens += (double)(now - slot->at_ms) * rate;
    if (slot->tokens > per_minute)
        slot->tokens = per_minute;
    slot->at_ms = now ? now : 1;
    if (slot->tokens >= 1) {
        slot->tokens -= 1;
        return 0;
    }
    return (unsigned)((1 - slot->tokens) / rate / 1000) + 1;
}

static void new_token(char out[TOKEN_BYTES * 2 + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort();
    for (int i = 0; i < TOKEN_BYTES; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[TOKEN_BYTES * 2] = '\0';
}

/* Stores a new session, replacing the one that expires first when full.
 * Lock held. */
static void store_login(wsg_admin_shared *s, const char *token, uint64_t expires)
{
    wsg_login *slot = &s->logins[0];
    for (size_t i = 0; i < WSG_LOGIN_SESSIONS; i++) {
        if (s->logins[i].expires_ms < slot->expires_ms)
            slot = &s->logins[i];
    }
    snprintf(slot->token, sizeof(slot->token), "%s", token);
    slot->expires_ms = expires;
}

void wsg_api_login(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    static __thread char cookie[256];
    char token[TOKEN_BYTES * 2 + 1];
    char client[64];
    uint64_t now = wsg_registry_mono_ms();
    const wsg_config *cfg = a->gw->cfg;
    pthread_mutex_lock(&a->shared->lock);
    unsigned wait = login_throttle(a->shared, req->peer, cfg->login_attempts, now);
    pthread_mutex_unlock(&a->shared->lock);
    wsg_peer_format(req->peer, client, sizeof(client));
    if (wait) {
        static __thread char retry[48];
        snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", wait);
        wsg_log_warn("dashboard login throttled", "client=%s retry_s=%u", client, wait);
        wsg_reply_error(reply, 429, "too many login attempts; try again later");
        reply->extra_headers = retry;
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    json_t *key = body ? json_object_get(body, "authKey") : NULL;
    bool ok = json_is_string(key) &&
              wsg_admin_key_matches(a, json_string_value(key), json_string_length(key));
    json_decref(body);
    if (!ok) {
        wsg_log_warn("dashboard login refused", "client=%s", client);
        wsg_reply_json(reply, 401, json_pack("{s:b, s:s, s:s}", "success", 0, "error",
                                             "Invalid authentication key", "message",
                                             "Invalid authentication key"));
        return;
    }
    new_token(token);
    pthread_mutex_lock(&a->shared->lock);
    store_login(a->shared, token, now + cfg->dashboard_session_ttl);
    pthread_mutex_unlock(&a->shared->lock);
    wsg_log_info("dashboard login", "client=%s", client);
    snprintf(cookie, sizeof(cookie),
             "Set-Cookie: dashboard_session=%s; Path=/; Max-Age=%llu; HttpOnly; "
             "SameSite=Strict%s\r\n",
             token, (unsigned long long)(cfg->dashboard_session_ttl / 1000),
             req->tls ? "; Secure" : "");
    wsg_reply_json(reply, 200, json_pack("{s:b, s:s}", "success", 1, "sessionToken", token));
    reply->extra_headers = cookie;
    OPENSSL_cleanse(token, sizeof(token));
}

void wsg_api_logout(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    wsg_str token = cookie_token(req);
    pthread_mutex_lock(&a->shared->lock);
    wsg_login *l = find_login(a->shared, token, wsg_registry_mono_ms());
    if (l)
        memset(l, 0, sizeof(*l));
    pthread_mutex_unlock(&a->shared->lock);
    wsg_reply_json(reply, 200, json_pack("{s:b, s:s}", "success", 1, "message", "Logged out"));
    reply->extra_headers = req->tls ? "Set-Cookie: dashboard_session=; Path=/; Max-Age=0; "
                                      "HttpOnly; SameSite=Strict; Secure\r\n"
                                    : "Set-Cookie: dashboard_session=; Path=/; Max-Age=0; "
                                      "HttpOnly; SameSite=Strict\r\n";
}
