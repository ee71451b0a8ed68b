#include "registry/registry.h"

#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "core/log.h"

/* Enough for every real service; more are chosen from a heap copy. */
#define PICK_STACK 64

static const char *const reserved_names[] = {"login", "logout", "stats", "connections",
                                             "history"};

static _Noreturn void oom(void)
{
    fputs("wsgate: out of memory in the backend registry\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        oom();
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL)
        oom();
    return d;
}

uint64_t wsg_registry_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t wsg_registry_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool wsg_registry_name_reserved(wsg_str name)
{
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++) {
        if (wsg_str_eq(name, wsg_str_cstr(reserved_names[i])))
            return true;
    }
    return false;
}

bool wsg_registry_name_valid(wsg_str name)
{
    if (name.len == 0 || name.len > 63)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

/* ---- backends ------------------------------------------------------------ */

void wsg_backend_ref(wsg_backend *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void wsg_backend_unref(wsg_backend *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(b->id);
    free(b->host);
    free(b->service);
    free(b->group);
    free(b->public_host);
    free(b->stats);
    free(b);
}

void wsg_backend_release(wsg_backend *b)
{
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
    wsg_backend_unref(b);
}

void wsg_backend_mark_suspect(wsg_backend *b, uint64_t now, uint64_t for_ms)
{
    atomic_store_explicit(&b->suspect_until, now + for_ms, memory_order_relaxed);
}

void wsg_backend_note_latency(wsg_backend *b, uint64_t us)
{
    /* Exponential smoothing, 1/8 weight for the newest sample: stable
     * enough to show, quick enough to notice a slow backend. */
    unsigned old = atomic_load_explicit(&b->latency_us, memory_order_relaxed);
    unsigned now = old ? (unsigned)((old * 7 + us) / 8) : (unsigned)us;
    atomic_store_explicit(&b->latency_us, now, memory_order_relaxed);
}

bool wsg_backend_eligible(wsg_backend *b, uint64_t now)
{
    if (wsg_backend_state_of(b) != WSG_BACKEND_UP)
        return false;
    if (atomic_load_explicit(&b->suspect_until, memory_order_relaxed) > now)
        return false;
    return b->max_connections == 0 ||
           atomic_load_explicit(&b->active, memory_order_relaxed) < b->max_connections;
}

static wsg_backend *backend_new(wsg_registry *r, const wsg_backend_spec *spec,
                                const struct sockaddr_storage *addr, socklen_t addrlen,
                                bool is_static)
{
    wsg_backend *b = xcalloc(1, sizeof(*b));
    b->stats = aligned_alloc(64, (r->workers ? r->workers : 1) * sizeof(*b->stats));
    if (b->stats == NULL)
        oom();
    memset(b->stats, 0, (r->workers ? r->workers : 1) * sizeof(*b->stats));
    atomic_init(&b->sticky, 0);
    atomic_init(&b->refs, 1);
    atomic_init(&b->state, WSG_BACKEND_UP);
    atomic_init(&b->unregistered, false);
    atomic_init(&b->active, 0);
    atomic_init(&b->suspect_until, 0);
    atomic_init(&b->latency_us, 0);
    atomic_init(&b->migrations_in, 0);
    atomic_init(&b->migrations_out, 0);
    atomic_init(&b->drain_since, 0);
    b->id = xstrdup(spec->id);
    b->host = xstrdup(spec->host);
    b->service = xstrdup(spec->service);
    b->group = xstrdup(spec->group);
    b->public_host = xstrdup(spec->public_host ? spec->public_host : spec->host);
    b->ws_port = spec->ws_port;
    b->http_port = spec->port;
    b->weight = spec->weight ? spec->weight : 1;
    b->tls = spec->tls;
    b->max_connections = spec->max_connections;
    b->is_static = is_static;
    b->ws_addr = *addr;
    b->ws_addrlen = addrlen;
    b->http_addr = *addr;
    b->http_addrlen = addrlen;
    if (addr->ss_family == AF_INET)
        ((struct sockaddr_in *)&b->http_addr)->sin_port = htons(spec->port);
    else if (addr->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&b->http_addr)->sin6_port = htons(spec->port);
    b->registered_ms = wsg_registry_wall_ms();
    b->heartbeat_ms = b->registered_ms;
    b->heartbeat_mono = wsg_registry_mono_ms();
    b->cpu_usage = -1;
    b->ram_usage = -1;
    b->ram_total = -1;
    return b;
}

/* ---- services ------------------------------------------------------------ */

static void rebuild_policy(wsg_service *s)
{
    wsg_balance_node stack[PICK_STACK];
    memset(stack, 0, sizeof(stack));
    wsg_balance_node *nodes = s->count <= PICK_STACK ? stack : xcalloc(s->count, sizeof(*nodes));
    for (size_t i = 0; i < s->count; i++) {
        nodes[i] = (wsg_balance_node){
            .id = wsg_str_cstr(s->backends[i]->id),
            .index = (uint32_t)i,
            .weight = s->backends[i]->weight,
        };
    }
    s->balancer->rebuild(s->balancer_state, nodes, s->count);
    if (nodes != stack)
        free(nodes);
}

static wsg_service *add_service(wsg_registry *r, const char *name)
{
    wsg_balance_params params = {.load_factor = r->cfg->load_factor};
    wsg_service *s = xcalloc(1, sizeof(*s));
    s->name = xstrdup(name);
    s->balancer = r->default_balancer;
    s->balancer_state = s->balancer->create(&params);
    wsg_service **grown = realloc(r->services, (r->count + 1) * sizeof(*grown));
    if (grown == NULL)
        oom();
    r->services = grown;
    r->services[r->count++] = s;
    return s;
}

static wsg_service *find_service(const wsg_registry *r, wsg_str name)
{
    for (size_t i = 0; i < r->count; i++) {
        if (wsg_str_eq(name, wsg_str_cstr(r->services[i]->name)))
            return r->services[i];
    }
    return NULL;
}

static wsg_service *find_or_add(wsg_registry *r, const char *name)
{
    wsg_service *s = find_service(r, wsg_str_cstr(name));
    return s ? s : add_service(r, name);
}

static void service_add(wsg_service *s, wsg_backend *b)
{
    wsg_backend **grown = realloc(s->backends, (s->count + 1) * sizeof(*grown));
    if (grown == NULL)
        oom();
    s->backends = grown;
    s->backends[s->count++] = b;
    rebuild_policy(s);
}

/* Takes b off its service's list and drops the list's reference. */
static void service_remove(wsg_service *s, wsg_backend *b)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->backends[i] != b)
            continue;
        memmove(&s->backends[i], &s->backends[i + 1], (s->count - i - 1) * sizeof(*s->backends));
        s->count--;
        rebuild_policy(s);
        wsg_backend_unref(b);
        return;
    }
}

static wsg_backend *find_backend(const wsg_registry *r, const char *id, wsg_service **svc)
{
    for (size_t i = 0; i < r->count; i++) {
        wsg_service *s = r->services[i];
        for (size_t j = 0; j < s->count; j++) {
            if (strcmp(s->backends[j]->id, id) == 0) {
                if (svc)
                    *svc = s;
                return s->backends[j];
            }
        }
    }
    return NULL;
}

wsg_service *wsg_registry_service(wsg_registry *r, wsg_str name)
{
    pthread_mutex_lock(&r->lock);
    wsg_service *s = find_service(r, name);
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* ---- configuration --------------------------------------------------------- */

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

static int add_static(wsg_registry *r, wsg_service *svc, const char *hostport, bool tls,
                      char *why, size_t whylen)
{
    char host[128];
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (resolve(hostport, host, sizeof(host), &port, &addr, &addrlen, why, whylen) < 0)
        return -1;
    if (find_backend(r, hostport, NULL)) {
        snprintf(why, whylen, "listed twice");
        return -1;
    }
    wsg_backend_spec spec = {
        .id = hostport,
        .host = host,
        .port = port,
        .ws_port = port,
        .service = svc->name,
        .tls = tls,
    };
    service_add(svc, backend_new(r, &spec, &addr, addrlen, true));
    return 0;
}

/* Turns "ws://host:port", "wss://host:port" or "http(s)://host:port/"
 * into "host:port"; *tls tells whether the scheme is a TLS one. */
static int url_hostport(const char *url, char *out, size_t outlen, bool *tls, char *why,
                        size_t whylen)
{
    static const struct {
        const char *prefix;
        bool tls;
    } schemes[] = {{"ws://", false}, {"http://", false}, {"wss://", true}, {"https://", true}};
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0) {
            rest = url + strlen(schemes[i].prefix);
            *tls = schemes[i].tls;
        }
    }
    if (rest == NULL) {
        snprintf(why, whylen, "expected a ws://, wss://, http:// or https:// URL");
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

/* UPSTREAMS is seed 002's {"service": ["url", ...]}; a service may also be
 * {"backends": [...], "balance": "least-connections"} to choose its policy. */
static int load_service(wsg_registry *r, const char *name, json_t *value, char *err,
                        size_t errlen)
{
    json_t *list = value;
    if (json_is_object(value)) {
        list = json_object_get(value, "backends");
        json_t *policy = json_object_get(value, "balance");
        if (policy && (!json_is_string(policy) || !wsg_balance_find(json_string_value(policy)))) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\": \"balance\" must "
                     "be one of %s", name, wsg_balance_names());
            return -1;
        }
        wsg_service *svc = find_or_add(r, name);
        if (policy) {
            wsg_balance_params params = {.load_factor = r->cfg->load_factor};
            svc->balancer->destroy(svc->balancer_state);
            svc->balancer = wsg_balance_find(json_string_value(policy));
            svc->balancer_state = svc->balancer->create(&params);
        }
    }
    if (!json_is_array(list)) {
        snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" must map to a list of "
                 "URLs", name);
        return -1;
    }
    wsg_service *svc = find_or_add(r, name);
    size_t i;
    json_t *url;
    json_array_foreach(list, i, url) {
        char hostport[300];
        char why[200];
        bool tls = false;
        if (!json_is_string(url)) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" entry %zu is not a "
                     "string", name, i);
            return -1;
        }
        if (url_hostport(json_string_value(url), hostport, sizeof(hostport), &tls, why,
                         sizeof(why)) < 0 ||
            add_static(r, svc, hostport, tls, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): service \"%s\" entry \"%s\": %s",
                     name, json_string_value(url), why);
            return -1;
        }
    }
    rebuild_policy(svc);
    return 0;
}

static int load_upstreams(wsg_registry *r, const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    const char *name;
    json_t *value;
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
    json_object_foreach(root, name, value) {
        if (!wsg_registry_name_valid(wsg_str_cstr(name)) ||
            wsg_registry_name_reserved(wsg_str_cstr(name))) {
            snprintf(err, errlen, "UPSTREAMS (--upstreams): \"%s\" cannot be a service name "
                     "(letters, digits, '-', '_', '.'; not login, logout, stats, connections, "
                     "history)",
                     name);
            goto out;
        }
        if (load_service(r, name, value, err, errlen) < 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int wsg_registry_init(wsg_registry *r, const wsg_config *cfg, unsigned workers, char *err,
                      size_t errlen)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->cfg = cfg;
    r->workers = workers;
    r->rnd = wsg_registry_mono_ms() | 1;
    r->default_balancer = wsg_balance_find(cfg->balance);
    if (r->default_balancer == NULL) {
        snprintf(err, errlen, "invalid value \"%s\" for WSGATE_BALANCE (--balance): expected "
                 "one of %s", cfg->balance, wsg_balance_names());
        return -1;
    }
    if (!wsg_registry_name_valid(wsg_str_cstr(cfg->default_service)) ||
        wsg_registry_name_reserved(wsg_str_cstr(cfg->default_service))) {
        snprintf(err, errlen, "WSGATE_DEFAULT_SERVICE (--default-service): \"%s\" cannot be a "
                 "service name", cfg->default_service);
        return -1;
    }
    r->default_service = add_service(r, cfg->default_service);
    for (size_t i = 0; i < cfg->backend_count; i++) {
        char why[200];
        char hostport[300];
        bool tls = false;
        const char *entry = cfg->backends[i];
        /* A bare HOST:PORT, or a ws:// or wss:// URL. */
        if (strstr(entry, "://")) {
            if (url_hostport(entry, hostport, sizeof(hostport), &tls, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "WSGATE_BACKENDS (--backend) \"%s\": %s", entry, why);
                return -1;
            }
            entry = hostport;
        }
        if (add_static(r, r->default_service, entry, tls, why, sizeof(why)) < 0) {
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
        for (size_t j = 0; j < s->count; j++)
            wsg_backend_unref(s->backends[j]);
        free(s->backends);
        s->balancer->destroy(s->balancer_state);
        free(s->name);
        free(s);
    }
    free(r->services);
    pthread_mutex_destroy(&r->lock);
    memset(r, 0, sizeof(*r));
}

void wsg_registry_on_change(wsg_registry *r, wsg_registry_changed_cb cb, void *ctx)
{
    r->changed = cb;
    r->changed_ctx = ctx;
}

static void notify(wsg_registry *r)
{
    if (r->changed)
        r->changed(r->changed_ctx);
}

/* ---- registration ---------------------------------------------------------- */

static bool same_address(const wsg_backend *b, const wsg_backend_spec *spec)
{
    return strcmp(b->host, spec->host) == 0 && b->ws_port == spec->ws_port &&
           b->http_port == spec->port && strcmp(b->group, spec->group ? spec->group : "") == 0 &&
           b->weight == (spec->weight ? spec->weight : 1);
}

/* Takes b out of service: new sessions avoid it and connections on it move.
 * Caller holds the lock. */
static void take_down(wsg_service *s, wsg_backend *b)
{
    atomic_store_explicit(&b->state, WSG_BACKEND_DOWN, memory_order_release);
    service_remove(s, b);
}

int wsg_registry_register(wsg_registry *r, const wsg_backend_spec *spec,
                          const struct sockaddr_storage *addr, socklen_t addrlen, char *err,
                          size_t errlen)
{
    const char *service = spec->service && spec->service[0] ? spec->service
                                                            : r->cfg->default_service;
    bool replaced = false;
    if (wsg_registry_name_reserved(wsg_str_cstr(service))) {
        snprintf(err, errlen, "\"%s\" is reserved and cannot be a service name", service);
        return -1;
    }
    pthread_mutex_lock(&r->lock);
    wsg_service *old_svc = NULL;
    wsg_backend *old = find_backend(r, spec->id, &old_svc);
    if (old && old->is_static) {
        pthread_mutex_unlock(&r->lock);
        snprintf(err, errlen, "id: \"%s\" is a configured backend (--backend or UPSTREAMS); "
                 "register under another id", spec->id);
        return WSG_REGISTER_CONFLICT;
    }
    if (old && strcmp(old_svc->name, service) == 0 &&
        same_address(old, spec)) {
        /* The same backend again (a restart, or a retry): refresh it. */
        free(old->public_host);
        old->public_host = xstrdup(spec->public_host ? spec->public_host : spec->host);
        old->max_connections = spec->max_connections;
        old->heartbeat_ms = wsg_registry_wall_ms();
        old->heartbeat_mono = wsg_registry_mono_ms();
        old->heartbeat_late = false;
        pthread_mutex_unlock(&r->lock);
        wsg_log_info("backend registered again", "backend=%s service=%s", spec->id, service);
        return 0;
    }
    if (old) {
        /* Moved or changed: the new description replaces the old backend,
         * whose sessions move (most likely onto the new one). */
        take_down(old_svc, old);
        replaced = true;
    }
    wsg_backend_spec copy = *spec;
    copy.service = service;
    service_add(find_or_add(r, service), backend_new(r, &copy, addr, addrlen, false));
    pthread_mutex_unlock(&r->lock);
    wsg_log_info(replaced ? "backend re-registered with a new address" : "backend registered",
                 "backend=%s service=%s host=%s port=%u ws_port=%u max_connections=%u",
                 spec->id, service, spec->host, spec->port, spec->ws_port, spec->max_connections);
    if (replaced)
        notify(r);
    return replaced ? 0 : 1;
}

int wsg_registry_heartbeat(wsg_registry *r, const char *id, const wsg_heartbeat *hb)
{
    pthread_mutex_lock(&r->lock);
    wsg_backend *b = find_backend(r, id, NULL);
    if (b == NULL || b->is_static) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    b->heartbeat_ms = wsg_registry_wall_ms();
    b->heartbeat_mono = wsg_registry_mono_ms();
    b->heartbeat_late = false;
    b->reported_connections = hb->active_connections;
    if (hb->cpu_usage >= 0)
        b->cpu_usage = hb->cpu_usage;
    if (hb->ram_usage >= 0)
        b->ram_usage = hb->ram_usage;
    if (hb->ram_total >= 0)
        b->ram_total = hb->ram_total;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int wsg_registry_unregister(wsg_registry *r, const char *id)
{
    pthread_mutex_lock(&r->lock);
    wsg_service *s;
    wsg_backend *b = find_backend(r, id, &s);
    unsigned sessions = 0;
    if (b) {
        /* A backend that unregisters is still alive: its sessions retire
         * from it as from a drained one, so its last answers are not lost. */
        sessions = atomic_load_explicit(&b->active, memory_order_relaxed);
        atomic_store_explicit(&b->unregistered, true, memory_order_relaxed);
        atomic_store_explicit(&b->state, WSG_BACKEND_DRAINING, memory_order_release);
        service_remove(s, b);
    }
    pthread_mutex_unlock(&r->lock);
    if (b == NULL)
        return -1;
    wsg_log_info("backend unregistered", "backend=%s sessions=%u", id, sessions);
    notify(r);
    return 0;
}

/* Drains or takes back b. A backend that is down stays down (its checks
 * or heartbeats bring it back) and comes back in the state asked for.
 * Caller holds the lock. */
static void set_drained(wsg_backend *b, bool on)
{
    b->drained = on;
    atomic_store_explicit(&b->drain_since, wsg_registry_mono_ms(), memory_order_relaxed);
    if (wsg_backend_state_of(b) != WSG_BACKEND_DOWN)
        atomic_store_explicit(&b->state, on ? WSG_BACKEND_DRAINING : WSG_BACKEND_UP,
                              memory_order_release);
}

long wsg_registry_drain(wsg_registry *r, const char *id, bool on)
{
    pthread_mutex_lock(&r->lock);
    wsg_backend *b = find_backend(r, id, NULL);
    long sessions = -1;
    if (b) {
        sessions = (long)atomic_load_explicit(&b->active, memory_order_relaxed);
        set_drained(b, on);
    }
    pthread_mutex_unlock(&r->lock);
    if (b == NULL)
        return -1;
    wsg_log_info(on ? "backend draining" : "backend taken back", "backend=%s sessions=%ld", id,
                 sessions);
    if (on)
        notify(r);
    return sessions;
}

long wsg_registry_drain_group(wsg_registry *r, const char *group, bool on, size_t *backends)
{
    long sessions = 0;
    *backends = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        wsg_service *s = r->services[i];
        for (size_t j = 0; j < s->count; j++) {
            wsg_backend *b = s->backends[j];
            if (strcmp(b->group, group) != 0)
                continue;
            sessions += (long)atomic_load_explicit(&b->active, memory_order_relaxed);
            set_drained(b, on);
            (*backends)++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (*backends == 0)
        return 0;
    wsg_log_info(on ? "group draining" : "group taken back", "group=%s backends=%zu sessions=%ld",
                 group, *backends, sessions);
    if (on)
        notify(r);
    return sessions;
}

void wsg_registry_expire(wsg_registry *r)
{
    uint64_t now = wsg_registry_mono_ms();
    const wsg_config *cfg = r->cfg;
    bool any = false;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        wsg_service *s = r->services[i];
        for (size_t j = 0; j < s->count;) {
            wsg_backend *b = s->backends[j];
            uint64_t silent = now - b->heartbeat_mono;
            if (b->is_static) {
                j++;
                continue;
            }
            if (silent > cfg->server_timeout) {
                wsg_log_warn("backend dead: no heartbeat, moving its sessions",
                             "backend=%s silent_ms=%llu sessions=%u", b->id,
                             (unsigned long long)silent,
                             atomic_load_explicit(&b->active, memory_order_relaxed));
                take_down(s, b);
                any = true;
                continue;
            }
            if (!b->heartbeat_late && silent > cfg->heartbeat_interval * 2) {
                b->heartbeat_late = true;
                wsg_log_warn("backend missed a heartbeat", "backend=%s silent_ms=%llu "
                             "timeout_ms=%llu", b->id, (unsigned long long)silent,
                             (unsigned long long)cfg->server_timeout);
            }
            j++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (any)
        notify(r);
}

void wsg_registry_check_result(wsg_registry *r, wsg_backend *b, bool ok, unsigned rise,
                               unsigned fall)
{
    bool changed = false;
    pthread_mutex_lock(&r->lock);
    wsg_backend_state st = wsg_backend_state_of(b);
    if (ok) {
        b->check_fail = 0;
        if (b->check_ok < 255)
            b->check_ok++;
        if (st == WSG_BACKEND_DOWN && b->check_ok >= rise) {
            atomic_store_explicit(&b->state, b->drained ? WSG_BACKEND_DRAINING : WSG_BACKEND_UP,
                                  memory_order_release);
            changed = true;
        }
    } else {
        b->check_ok = 0;
        if (b->check_fail < 255)
            b->check_fail++;
        if (st != WSG_BACKEND_DOWN && b->check_fail >= fall) {
            atomic_store_explicit(&b->state, WSG_BACKEND_DOWN, memory_order_release);
            changed = true;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (!changed)
        return;
    if (ok) {
        wsg_log_info("backend healthy again", "backend=%s checks=%u", b->id, rise);
    } else {
        wsg_log_warn("backend failed its health checks, moving its sessions",
                     "backend=%s checks=%u", b->id, fall);
        notify(r);
    }
}

/* ---- choosing ---------------------------------------------------------------- */

static uint64_t next_random(wsg_registry *r)
{
    /* xorshift64*: the policies need spread, not secrecy. */
    uint64_t x = r->rnd;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rnd = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Counts a session on b unless that would pass its limit. */
static bool try_acquire(wsg_backend *b)
{
    unsigned before = atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
    if (b->max_connections == 0 || before < b->max_connections) {
        wsg_backend_ref(b);
        return true;
    }
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
    return false;
}

static wsg_backend *pick_locked(wsg_registry *r, wsg_service *svc, wsg_str key,
                                const wsg_backend *avoid, uint64_t now, bool allow_suspect,
                                wsg_balance_node *nodes)
{
    size_t n = 0;
    for (size_t i = 0; i < svc->count; i++) {
        wsg_backend *b = svc->backends[i];
        if (b == avoid || wsg_backend_state_of(b) != WSG_BACKEND_UP)
            continue;
        if (!allow_suspect && atomic_load_explicit(&b->suspect_until, memory_order_relaxed) > now)
            continue;
        unsigned load = atomic_load_explicit(&b->active, memory_order_relaxed);
        if (b->max_connections && load >= b->max_connections)
            continue;
        nodes[n++] = (wsg_balance_node){wsg_str_cstr(b->id), (uint32_t)i, load, b->weight};
    }
    while (n > 0) {
        size_t k = svc->balancer->pick(svc->balancer_state, nodes, n, key, next_random(r));
        wsg_backend *b = svc->backends[nodes[k].index];
        if (try_acquire(b))
            return b;
        /* Filled up meanwhile by another worker: choose among the rest. */
        nodes[k] = nodes[--n];
    }
    return NULL;
}

wsg_backend *wsg_registry_pick(wsg_registry *r, wsg_service *svc, wsg_str key,
                               wsg_backend *prefer, const wsg_backend *avoid, uint64_t now)
{
    /* A sticky key may have a session on another service's backend (the
     * same clientId on two routes): that one never serves this service. */
    if (prefer && prefer != avoid && strcmp(prefer->service, svc->name) == 0 &&
        wsg_backend_eligible(prefer, now) && try_acquire(prefer))
        return prefer;
    pthread_mutex_lock(&r->lock);
    wsg_balance_node stack[PICK_STACK];
    wsg_balance_node *nodes =
        svc->count <= PICK_STACK ? stack : malloc(svc->count * sizeof(*nodes));
    wsg_backend *chosen = NULL;
    if (nodes) {
        /* Suspect backends are the last resort, so that one failed dial
         * does not turn every client away. */
        chosen = pick_locked(r, svc, key, avoid, now, false, nodes);
        if (chosen == NULL)
            chosen = pick_locked(r, svc, key, avoid, now, true, nodes);
        if (nodes != stack)
            free(nodes);
    }
    pthread_mutex_unlock(&r->lock);
    return chosen;
}

/* ---- history and stats ---------------------------------------------------- */

/* Moves from one backend this close together belong to one event. */
#define MIGRATION_WINDOW_MS 5000

static void note_target(wsg_migration *m, const char *to)
{
    uint32_t h = (uint32_t)wsg_hash(to, strlen(to));
    uint32_t known = m->targets < WSG_MIGRATION_TARGETS ? m->targets : WSG_MIGRATION_TARGETS;
    for (uint32_t i = 0; i < known; i++) {
        if (m->target_hash[i] == h)
            return;
    }
    if (m->targets < WSG_MIGRATION_TARGETS)
        m->target_hash[m->targets] = h;
    m->targets++;
    if (m->targets > 1)
        snprintf(m->to, sizeof(m->to), "%u servers", m->targets);
}

void wsg_registry_record_migration(wsg_registry *r, const char *from, const char *to,
                                   uint64_t now)
{
    pthread_mutex_lock(&r->lock);
    wsg_migration *m = NULL;
    size_t have = r->history_next < WSG_MIGRATION_HISTORY ? r->history_next
                                                         : WSG_MIGRATION_HISTORY;
    for (size_t i = 0; i < have && i < 8; i++) {
        wsg_migration *e = &r->history[(r->history_next - 1 - i) % WSG_MIGRATION_HISTORY];
        if (strcmp(e->from, from) == 0 && now - e->updated_mono < MIGRATION_WINDOW_MS) {
            m = e;
            break;
        }
    }
    if (m == NULL) {
        m = &r->history[r->history_next % WSG_MIGRATION_HISTORY];
        memset(m, 0, sizeof(*m));
        m->timestamp_ms = wsg_registry_wall_ms();
        snprintf(m->from, sizeof(m->from), "%s", from);
        snprintf(m->to, sizeof(m->to), "%s", to);
        r->history_next++;
    }
    note_target(m, to);
    m->clients++;
    m->updated_mono = now;
    r->total_migrations++;
    pthread_mutex_unlock(&r->lock);
}

size_t wsg_registry_recent_migrations(wsg_registry *r, wsg_migration *out, size_t max,
                                      uint64_t *total)
{
    pthread_mutex_lock(&r->lock);
    size_t have = r->history_next < WSG_MIGRATION_HISTORY ? r->history_next
                                                         : WSG_MIGRATION_HISTORY;
    size_t n = have < max ? have : max;
    for (size_t i = 0; i < n; i++)
        out[i] = r->history[(r->history_next - 1 - i) % WSG_MIGRATION_HISTORY];
    if (total)
        *total = r->total_migrations;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void wsg_registry_each(wsg_registry *r,
                       void (*fn)(void *ctx, const wsg_service *s, const wsg_backend *b),
                       void *ctx)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        for (size_t j = 0; j < r->services[i]->count; j++)
            fn(ctx, r->services[i], r->services[i]->backends[j]);
    }
    pthread_mutex_unlock(&r->lock);
}

void wsg_registry_public_host(wsg_registry *r, const wsg_backend *b, char *out, size_t outlen)
{
    pthread_mutex_lock(&r->lock);
    snprintf(out, outlen, "%s", b->public_host);
    pthread_mutex_unlock(&r->lock);
}
