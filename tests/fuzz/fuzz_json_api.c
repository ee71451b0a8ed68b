/* The JSON API handlers of the HTTP port (src/admin): registration,
 * heartbeats, unregistration, drains, dashboard logins and the stats page
 * that shows what was registered.
 *
 * Input layout: requests separated by NUL bytes (JSON text never holds a
 * raw NUL), at most MAX_REQUESTS. Each request is a selector byte and a
 * body:
 *
 *   bits 0-2  handler: 0 /register, 1 /heartbeat, 2 /unregister, 3 /drain,
 *             4 /undrain, 5 /api/login, 6 /api/logout, 7 /api/stats
 *   bits 3-4  Authorization: 0 none, 1 "Bearer <key>", 2 "Bearer <wrong>",
 *             3 "bearer   <key>  " (case and spaces)
 *   bit 5     a dashboard_session cookie: the token of the last login of
 *             this input, or a made-up one before any
 *   bit 6     the peer is ::1 rather than 127.0.0.1 (login throttling is
 *             per address)
 *   bit 7     ignored; the seeds set it so that no selector is a NUL
 *
 * The requests of one input run in order against one registry, so a
 * heartbeat can find the backend an earlier request registered. Every
 * input starts from a fresh registry and fresh login state, so runs
 * repeat and memory stays bounded. The gateway key is KEY below; seeds
 * carry it so the fuzzer gets past authentication.
 *
 * /register looks host names up with uv_getaddrinfo and answers later. A
 * harness must not wait on DNS, so a /register whose body names a host
 * that is not an IP literal is skipped (its 400 answers for bad
 * characters still run). /api/connections and /disconnect gather from
 * workers through their loops and are left out.
 *
 * Every answer must be immediate, a JSON object, "success" true exactly
 * for 200, with extra headers that are whole header lines.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/log.h"
#include "registry/registry.h"
#include "registry/sessions.h"

#include "fuzz_check.h"

#define KEY "0123456789abcdef0123"
#define MAX_REQUESTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef void (*handler_fn)(wsg_admin *a, const wsg_request *req, wsg_reply *reply);

static const struct {
    const char *path;
    handler_fn fn;
} handlers[8] = {
    {"/register", wsg_api_register},     {"/heartbeat", wsg_api_heartbeat},
    {"/unregister", wsg_api_unregister}, {"/drain", wsg_api_drain},
    {"/undrain", wsg_api_undrain},       {"/api/login", wsg_api_login},
    {"/api/logout", wsg_api_logout},     {"/api/stats", wsg_api_stats},
};

/* Built once: what main() would build, minus sockets and threads. */
static struct {
    bool ready;
    wsg_config cfg;
    wsg_sessions sessions;
    wsg_worker worker;
    wsg_counters counters;
    wsg_registry registry;
    wsg_gateway gw;
    wsg_admin_shared shared;
    wsg_admin admin;
    int devnull;
} h;

static void setup_once(void)
{
    if (h.ready)
        return;
    /* --env-file= (empty): no ./.env.gateway is read, wherever the fuzzer
     * runs. */
    char *argv[] = {"wsgate", "--gateway-auth-key", KEY, "--threads", "1", "--login-attempts",
                    "3",      "--env-file=",        NULL};
    char *envp[] = {NULL};
    char err[256];
    FILE *out = fopen("/dev/null", "w");
    CHECK(out != NULL);
    CHECK(wsg_config_load(&h.cfg, 8, argv, envp, out, err, sizeof(err)) == WSG_CONFIG_OK);
    fclose(out);
    wsg_sessions_init(&h.sessions, h.cfg.session_max);
    CHECK(uv_loop_init(&h.worker.loop) == 0);
    /* Log lines are formatted (they quote peer data) and thrown away. */
    h.devnull = open("/dev/null", O_WRONLY);
    CHECK(h.devnull >= 0);
    wsg_log_setup(WSG_LOG_DEBUG, WSG_LOG_TEXT, h.devnull);
    h.ready = true;
}

/* The state one input works on, fresh each time. */
static void state_begin(void)
{
    char err[256];
    CHECK(wsg_registry_init(&h.registry, &h.cfg, 1, err, sizeof(err)) == 0);
    memset(&h.gw, 0, sizeof(h.gw));
    h.gw.cfg = &h.cfg;
    h.gw.registry = &h.registry;
    h.gw.sessions = &h.sessions;
    h.gw.proxy_count = 0;
    h.gw.fds.limit = 1024;
    wsg_admin_shared_init(&h.shared);
    wsg_admin_init(&h.admin, &h.gw, &h.shared, &h.worker, &h.counters);
}

static void state_end(void)
{
    wsg_admin_shared_deinit(&h.shared);
    wsg_registry_deinit(&h.registry);
}

/* True when /register would look the body's host up in the DNS: a string
 * host of allowed characters that wsg_addr_parse does not take. */
static bool needs_dns(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *host = j ? json_object_get(j, "host") : NULL;
    bool dns = false;
    if (json_is_string(host)) {
        const char *s = json_string_value(host);
        size_t n = json_string_length(host);
        bool chars_ok = n > 0 && n <= 253 && strlen(s) == n;
        for (size_t i = 0; chars_ok && i < n; i++) {
            char c = s[i];
            chars_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '-' || c == ':' || c == '_';
        }
        if (chars_ok) {
            char literal[260];
            struct sockaddr_storage addr;
            socklen_t addrlen;
            snprintf(literal, sizeof(literal), strchr(s, ':') ? "[%s]" : "%s", s);
            dns = wsg_addr_parse(literal, 1, &addr, &addrlen) != 0;
        }
    }
    json_decref(j);
    return dns;
}

static bool is_header_lines(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 2] != '\r' || s[n - 1] != '\n')
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] == '\r' && s[i + 1] != '\n') || (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')))
            return false;
    }
    return true;
}

static void check_reply(unsigned which, const wsg_reply *r, char *token, size_t token_cap)
{
    CHECK(r->status != 0); /* nothing here may defer */
    CHECK(r->status >= 200 && r->status <= 599);
    CHECK(r->body != NULL);
    CHECK(r->content_type == NULL);
    CHECK(r->extra_headers == NULL || is_header_lines(r->extra_headers));
    json_error_t jerr;
    json_t *j = json_loads(r->body, 0, &jerr);
    CHECK(j != NULL && json_is_object(j));
    json_t *success = json_object_get(j, "success");
    if (which == 7 && r->status == 200) {
        /* The stats page lists every backend it counts. */
        json_t *servers = json_object_get(j, "servers");
        CHECK(json_is_array(servers));
        CHECK((json_int_t)json_array_size(servers) ==
              json_integer_value(json_object_get(j, "totalServers")));
    } else {
        CHECK(json_is_boolean(success));
        CHECK(json_is_true(success) == (r->status == 200));
    }
    if (r->status != 200)
        CHECK(json_is_string(json_object_get(j, "error")));
    if (which == 5 && r->status == 200) {
        const char *t = json_string_value(json_object_get(j, "sessionToken"));
        CHECK(t != NULL && strlen(t) < token_cap);
        snprintf(token, token_cap, "%s", t);
    }
    json_decref(j);
}

static void run_request(uint8_t sel, const uint8_t *body, size_t len, char *token, size_t token_cap)
{
    unsigned which = sel & 7;
    if (which == 0 && needs_dns((const char *)body, len))
        return;
    static const char *const auth[4] = {NULL, "Bearer " KEY, "Bearer 0123456789abcdef0124",
                                        "bearer   " KEY "  "};
    char cookie[128];
    wsg_http_head head;
    memset(&head, 0, sizeof(head));
    head.method = which == 7 ? HTTP_GET : HTTP_POST;
    head.major = 1;
    head.minor = 1;
    head.keep_alive = true;
    head.target = head.path = wsg_str_cstr(handlers[which].path);
    head.content_length = len;
    head.headers[head.header_count++] =
        (wsg_http_header){WSG_STR("Content-Type"), WSG_STR("application/json")};
    if (auth[(sel >> 3) & 3]) {
        head.headers[head.header_count++] =
            (wsg_http_header){WSG_STR("Authorization"), wsg_str_cstr(auth[(sel >> 3) & 3])};
    }
    if (sel & 32) {
        snprintf(cookie, sizeof(cookie), "theme=dark; dashboard_session=%s",
                 token[0] ? token
                          : "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
        head.headers[head.header_count++] =
            (wsg_http_header){WSG_STR("Cookie"), wsg_str_cstr(cookie)};
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (sel & 64) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(40000);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons(40000);
    }
    wsg_peer peer;
    wsg_peer_set(&peer, &ss);

    /* The body in a buffer of its own size: no NUL after it. */
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    if (len)
        memcpy(copy, body, len);
    wsg_request req = {.head = &head, .body = copy, .body_len = len, .peer = &peer, .conn = NULL};
    wsg_reply reply = {0};
    handlers[which].fn(&h.admin, &req, &reply);
    check_reply(which, &reply, token, token_cap);
    free(reply.body);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char token[80] = "";
    setup_once();
    state_begin();
    size_t start = 0;
    int count = 0;
    for (size_t i = 0; i <= size && count < MAX_REQUESTS; i++) {
        if (i < size && data[i] != 0)
            continue;
        if (i > start) {
            run_request(data[start], data + start + 1, i - start - 1, token, sizeof(token));
            count++;
        }
        start = i + 1;
    }
    state_end();
    return 0;
}
