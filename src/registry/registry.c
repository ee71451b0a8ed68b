#include "registry/registry.h"

#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Enough for every real service; more are chosen from a heap copy. */
#define PICK_STACK 64

static const char *const reserved_names[] = {"login", "logout", "stats", "connections"};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        fputs("wsgate: out of memory building the backend registry\n", stderr);
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) {
        fputs("wsgate: out of memory building the backend registry\n", stderr);
        abort();
    }
    return d;
}

bool wsg_registry_name_reserved(wsg_str name)
{
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++) {
        if (wsg_str_eq(name, wsg_str_cstr(reserved_names[i])))
            return true;
    }
    return false;
}

static bool name_valid(const char *name)
{
    if (*name == '\0')
        return false;
    for (const char *c = name; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.';
        if (!ok)
            return false;
    }
    return true;
}

static wsg_service *add_service(wsg_registry *r, const char *name)
{
    wsg_service *s = xcalloc(1, sizeof(*s));
    s->name = xstrdup(name);
    s->balancer = &wsg_balance_round_robin;
    s->balancer_state = s->balancer->create();
    wsg_service **grown = realloc(r->services, (r->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        fputs("wsgate: out of memory building the backend registry\n", stderr);
        abort();
    }
    r->services = grown;
    r->services[r->count++] = s;
    return s;
}

static wsg_service *find_or_add(wsg_registry *r, const char *name)
{
    wsg_service *s = wsg_registry_service(r, wsg_str_cstr(name));
    return s ? s : add_service(r, name);
}

/* Splits "host:port" or "[v6]:port" and resolves host (start-up only, so a
 * blocking lookup is fine). */
static int resolve(const char *hostport, char *host, size_t hostlen, uint16_t *port,
                   struct sockaddr_storage *addr, socklen_t *addrlen, char *why, size_t whylen)
{
    const char *colon = strrchr(hostport, ':');
    const char *h = hostport;
    size_t hlen;
    if (colon == NULL) {
        snprintf(why, whylen, "expected HOST:PORT");
        return -1;
    }
    hlen = (size_t)(colon - hostport);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (hlen == 0 || hlen >= hostlen || *end != '\0' || p < 1 || p > 65535) {
        snprintf(why, whylen, "expected HOST:PORT with a port from 1 to 65535");
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(why, whylen, "cannot resolve host \"%.100s\": %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int add_backend(wsg_service *svc, const char *hostport, char *why, size_t whylen)
{
    char host[128];
    wsg_backend *b = xcalloc(1, sizeof(*b));
    uint16_t port;
    if (resolve(hostport, host, sizeof(host), &port, &b->ws_addr, &b->ws_addrlen, why, whylen) <
        0) {
        free(b);
        return -1;
    }
    b->id = xstrdup(hostport);
    b->host = xstrdup(host);
    b->ws_port = port;
    b->http_port = port;
    atomic_init(&b->active, 0);
    atomic_init(&b->suspect_until, 0);
    wsg_backend **grown = realloc(svc->backends, (svc->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        fputs("wsgate: out of memory building the backend registry\n", stderr);
        abort();
    }
    svc->backends = grown;
    svc->backends[svc->count++] = b;
    return 0;
}

/* Turns "ws://host:port" or "http://host:port/" into "host:port". */
static int url_hostport(const char *url, char *out, size_t outlen, char *why, size_t whylen)
{
    static const char *const plain[] = {"ws://", "http://"};
    static const char *const tls[] = {"wss://", "https://"};
    const char *rest = NULL;
    for (size_t i = 0; i < 2; i++) {
        if (strncmp(url, tls[i], strlen(tls[i])) == 0) {
            snprintf(why, whylen, "TLS toward backends (%s) is not supported yet; use %s",
                     tls[i], plain[i]);
            return -1;
        }
        if (strncmp(url, plain[i], strlen(plain[i])) == 0)
            rest = url + strlen(plain[i]);
    }
    if (rest == NULL) {
        snprintf(why, whylen, "expected a ws:// or http:// URL");
        return -1;
    }
    size_t n = strcspn(rest, "/");
    if (rest[n] == '/' && rest[n + 1] != '\0') {
        snprintf(why, whylen, "a path in a backend URL is not supported");
        return -1;
    }
    if (n == 0 || n >= outlen) {
        snprintf(why, whylen, "expected a host and port after the scheme");
        return -1;
    }
    memcpy(out, rest, n);
    out[n] = '\0';
    return 0;
}

static int load_upstreams(wsg_registry *r, const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    const char *name;
    json_t *list;
    int rc = -1;
    if (root == NULL) {
        snprintf(err, errlen, "UPSTREAMS (--upstreams) is not valid JSON: %s at line %d column %d",
                 jerr.text, jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "UPSTREAMS (--upstreams) must be a JSON object like "
                 "{\"chat\":[\"ws://127.0.0.1:3001\"]}");
        goto out;
    }
    json_object_foreach(root, name, list) {
        size_t i;
        json_t *url;
        if (!name_valid(name) || wsg_registry_name_reserved(wsg_str_cstr(name))) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): \"%s\" cannot be a service name "
                     "(letters, digits, '-', '_', '.'; not login, logout, stats, connections)",
                     name);
            goto out;
        }
        if (!json_is_array(list)) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" must map to a list "
                     "of URLs", name);
            goto out;
        }
        wsg_service *svc = find_or_add(r, name);
        json_array_foreach(list, i, url) {
            char hostport[300];
            char why[200];
            if (!json_is_string(url)) {
                snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" entry %zu is not "
                         "a string", name, i);
                goto out;
            }
            if (url_hostport(json_string_value(url), hostport, sizeof(hostport), why,
                             sizeof(why)) < 0 ||
                add_backend(svc, hostport, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" entry \"%s\": %s",
                         name, json_string_value(url), why);
                goto out;
            }
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int wsg_registry_init(wsg_registry *r, const wsg_config *cfg, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (!name_valid(cfg->default_service) ||
        wsg_registry_name_reserved(wsg_str_cstr(cfg->default_service))) {
        snprintf(err, errlen, "WSGATE_DEFAULT_SERVICE (--default-service): \"%s\" cannot be a "
                 "service name", cfg->default_service);
        return -1;
    }
    r->default_service = add_service(r, cfg->default_service);
    for (size_t i = 0; i < cfg->backend_count; i++) {
        char why[200];
        if (add_backend(r->default_service, cfg->backends[i], why, sizeof(why)) < 0) {
            snprintf(err, errlen, "WSGATE_BACKENDS (--backend) \"%s\": %s", cfg->backends[i],
                     why);
            return -1;
        }
    }
    if (cfg->upstreams && cfg->upstreams[0] && load_upstreams(r, cfg->upstreams, err, errlen) < 0)
        return -1;
    return 0;
}

void wsg_registry_deinit(wsg_registry *r)
{
    for (size_t i = 0; i < r->count; i++) {
        wsg_service *s = r->services[i];
        for (size_t j = 0; j < s->count; j++) {
            free(s->backends[j]->id);
            free(s->backends[j]->host);
            free(s->backends[j]);
        }
        free(s->backends);
        s->balancer->destroy(s->balancer_state);
        free(s->name);
        free(s);
    }
    free(r->services);
    memset(r, 0, sizeof(*r));
}

wsg_service *wsg_registry_service(const wsg_registry *r, wsg_str name)
{
    for (size_t i = 0; i < r->count; i++) {
        if (wsg_str_eq(name, wsg_str_cstr(r->services[i]->name)))
            return r->services[i];
    }
    return NULL;
}

/* Counts a session on b unless that would pass its limit. */
static bool try_acquire(wsg_backend *b)
{
    unsigned before = atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
    if (b->max_connections == 0 || before < b->max_connections)
        return true;
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
    return false;
}

static bool eligible(wsg_backend *b, const wsg_backend *avoid, uint64_t now, bool allow_suspect)
{
    if (b == avoid)
        return false;
    if (!allow_suspect && atomic_load_explicit(&b->suspect_until, memory_order_relaxed) > now)
        return false;
    return b->max_connections == 0 ||
           atomic_load_explicit(&b->active, memory_order_relaxed) < b->max_connections;
}

/* Another worker may fill a backend's last slot between the check and the
 * count, so a few rounds are tried with what is left. */
static wsg_backend *pick_among(const wsg_service *svc, wsg_backend **list, wsg_str key,
                               const wsg_backend *avoid, uint64_t now, bool allow_suspect)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        size_t n = 0;
        for (size_t i = 0; i < svc->count; i++) {
            if (eligible(svc->backends[i], avoid, now, allow_suspect))
                list[n++] = svc->backends[i];
        }
        if (n == 0)
            return NULL;
        wsg_backend *b = list[svc->balancer->pick(svc->balancer_state, list, n, key)];
        if (try_acquire(b))
            return b;
    }
    return NULL;
}

wsg_backend *wsg_registry_pick(const wsg_service *svc, wsg_str key, const wsg_backend *avoid,
                               uint64_t now)
{
    wsg_backend *stack[PICK_STACK];
    wsg_backend **list = svc->count <= PICK_STACK ? stack : malloc(svc->count * sizeof(*list));
    if (list == NULL)
        return NULL;
    /* Suspect backends are the last resort, so that one failed dial does
     * not turn every client away. */
    wsg_backend *chosen = pick_among(svc, list, key, avoid, now, false);
    if (chosen == NULL)
        chosen = pick_among(svc, list, key, avoid, now, true);
    if (list != stack)
        free(list);
    return chosen;
}

void wsg_backend_release(wsg_backend *b)
{
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
}

void wsg_backend_mark_suspect(wsg_backend *b, uint64_t now, uint64_t for_ms)
{
    atomic_store_explicit(&b->suspect_until, now + for_ms, memory_order_relaxed);
}
