/* wsgate: wiring and signals. Everything else lives in its layer. */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/log.h"
#include "net/net.h"
#include "proxy/proxy.h"
#include "registry/health.h"
#include "registry/registry.h"
#include "registry/sessions.h"
#include "ws/ws.h"

/* Timer wheel resolution: fine enough for sub-second test timeouts, coarse
 * enough to cost nothing. */
#define TICK_MS 50
/* Descriptors kept out of the connection budget: listeners, event loop,
 * wake-up pipes, logs, DNS. */
#define FD_RESERVE_BASE 32
#define FD_RESERVE_PER_THREAD 8

enum {
    CMD_STOP_ACCEPT = 1, /* close the WebSocket listener */
    CMD_CLOSE_ALL = 2,   /* close every connection with 1001 and stop */
    CMD_ABORT = 4,       /* the same, without waiting for flushes */
    CMD_BACKENDS = 8,    /* the registry changed: move sessions off dead backends */
};

enum stage { RUNNING, DRAINING, CLOSING };

typedef struct slot {
    wsg_worker worker;
    wsg_proxy proxy;
    wsg_admin admin;
    wsg_listener ws_listener;
    wsg_listener http_listener;
    wsg_listener admin_listener; /* ADMIN_BIND; fd -1 when not set */
    uv_timer_t exit_check;
    int ws_fd;
    int http_fd;
    int admin_fd;
    atomic_bool finished;
    struct app *app;
} slot;

typedef struct app {
    wsg_config cfg;
    wsg_registry registry;
    wsg_sessions sessions;
    wsg_admin_shared admin_shared;
    wsg_tls_server tls;
    wsg_clients addresses;
    wsg_health *health;
    wsg_gateway gw;
    slot *slots;
    unsigned threads;
    uv_loop_t *loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    uv_timer_t watch;
    uv_timer_t housekeeping; /* heartbeat expiry, session expiry */
    uv_timer_t sampler;      /* the dashboard's history */
    enum stage stage;
    uint64_t trimmed_at_opened; /* connections opened at the last malloc_trim */
    uint64_t drain_deadline;
    uint64_t close_deadline;
} app;

/* ---- workers ------------------------------------------------------------ */

static void on_ws_accept(wsg_listener *l, int fd, const struct sockaddr_storage *peer)
{
    slot *s = l->data;
    wsg_proxy_accept(&s->proxy, fd, peer, l->tls);
}

static void on_http_accept(wsg_listener *l, int fd, const struct sockaddr_storage *peer)
{
    slot *s = l->data;
    wsg_admin_accept(&s->admin, fd, peer, false, l->tls);
}

static void on_admin_accept(wsg_listener *l, int fd, const struct sockaddr_storage *peer)
{
    slot *s = l->data;
    wsg_admin_accept(&s->admin, fd, peer, true, l->tls);
}

static void worker_started(wsg_worker *w)
{
    slot *s = w->app;
    app *a = s->app;
    s->ws_listener.data = s;
    s->http_listener.data = s;
    s->admin_listener.data = s;
    s->ws_listener.tls = wsg_config_tls_on(&a->cfg, a->cfg.ws_tls);
    s->http_listener.tls = wsg_config_tls_on(&a->cfg, a->cfg.http_tls);
    s->admin_listener.tls = wsg_config_tls_on(&a->cfg, a->cfg.admin_tls);
    wsg_listener_start(&s->ws_listener, w, s->ws_fd, on_ws_accept);
    wsg_listener_start(&s->http_listener, w, s->http_fd, on_http_accept);
    if (s->admin_fd >= 0)
        wsg_listener_start(&s->admin_listener, w, s->admin_fd, on_admin_accept);
    uv_timer_init(&w->loop, &s->exit_check);
    s->exit_check.data = s;
}

static void check_exit(uv_timer_t *t)
{
    slot *s = t->data;
    if (wsg_proxy_live(&s->proxy) || wsg_admin_live(&s->admin))
        return;
    uv_close((uv_handle_t *)&s->exit_check, NULL);
    wsg_worker_finish(&s->worker);
}

static void worker_command(wsg_worker *w, unsigned cmd)
{
    slot *s = w->app;
    if (cmd & CMD_BACKENDS)
        wsg_proxy_backends_changed(&s->proxy);
    if (cmd & (CMD_STOP_ACCEPT | CMD_CLOSE_ALL | CMD_ABORT))
        wsg_listener_close(&s->ws_listener);
    if (!(cmd & (CMD_CLOSE_ALL | CMD_ABORT)))
        return;
    wsg_listener_close(&s->http_listener);
    wsg_listener_close(&s->admin_listener);
    wsg_proxy_close_all(&s->proxy, (cmd & CMD_ABORT) != 0);
    wsg_admin_close_all(&s->admin);
    if (!uv_is_active((uv_handle_t *)&s->exit_check) &&
        !uv_is_closing((uv_handle_t *)&s->exit_check))
        uv_timer_start(&s->exit_check, check_exit, 0, TICK_MS);
}

static void worker_stopped(wsg_worker *w)
{
    slot *s = w->app;
    wsg_proxy_deinit(&s->proxy);
    atomic_store(&s->finished, true);
}

/* ---- shutdown ------------------------------------------------------------ */

static unsigned live_connections(const app *a)
{
    return wsg_gateway_connections(&a->gw);
}

static void post_all(app *a, unsigned cmd)
{
    for (unsigned i = 0; i < a->threads; i++)
        wsg_worker_post(&a->slots[i].worker, cmd);
}

static void start_closing(app *a, unsigned cmd)
{
    a->stage = CLOSING;
    a->close_deadline = uv_now(a->loop) + a->cfg.close_timeout + 5000;
    wsg_log_info("closing connections", "connections=%u code=1001", live_connections(a));
    post_all(a, cmd);
}

static void stop_main_loop(app *a)
{
    wsg_health_stop(a->health);
    a->health = NULL;
    uv_close((uv_handle_t *)&a->housekeeping, NULL);
    uv_close((uv_handle_t *)&a->sampler, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->watch, NULL);
}

static void on_watch(uv_timer_t *t)
{
    app *a = t->data;
    uint64_t now = uv_now(a->loop);
    if (a->stage == DRAINING && (live_connections(a) == 0 || now >= a->drain_deadline)) {
        start_closing(a, CMD_CLOSE_ALL);
        return;
    }
    if (a->stage != CLOSING)
        return;
    bool all = true;
    for (unsigned i = 0; i < a->threads; i++)
        all = all && atomic_load(&a->slots[i].finished);
    if (all) {
        stop_main_loop(a);
    } else if (now >= a->close_deadline) {
        wsg_log_error("connections did not close in time; exiting anyway", NULL);
        _exit(1);
    }
}

/* SIGHUP: new handshakes get the certificates on disk now; connections
 * already open keep theirs. A bad file keeps the old certificates. */
static void reload_certificates(app *a)
{
    char err[512];
    if (a->gw.tls == NULL) {
        wsg_log_info("SIGHUP received; no TLS certificates to reload", NULL);
        return;
    }
    wsg_tls_certs *certs = wsg_tls_certs_load(a->cfg.tls_cert, a->cfg.tls_key,
                                              a->cfg.tls_sni_certs, err, sizeof(err));
    if (certs == NULL) {
        wsg_log_error("certificate reload failed; keeping the old certificates", "why=\"%s\"",
                      err);
        return;
    }
    wsg_tls_server_swap(a->gw.tls, certs);
    wsg_log_info("certificates reloaded", "cert=%s", a->cfg.tls_cert);
}

static const char *signal_name(int signum)
{
    return signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "SIGHUP";
}

static void on_signal(uv_signal_t *h, int signum)
{
    app *a = h->data;
    if (signum == SIGHUP) {
        reload_certificates(a);
        return;
    }
    if (a->stage != RUNNING) {
        wsg_log_warn("second signal: closing at once", "signal=%s", signal_name(signum));
        start_closing(a, CMD_CLOSE_ALL | CMD_ABORT);
        return;
    }
    a->stage = DRAINING;
    atomic_store(&a->gw.stopping, true);
    atomic_store(&a->gw.draining, true);
    a->drain_deadline = uv_now(a->loop) + a->cfg.shutdown_timeout;
    wsg_log_info("shutdown requested: no new connections, draining", "signal=%s connections=%u "
                 "drain_ms=%llu", signal_name(signum), live_connections(a),
                 (unsigned long long)a->cfg.shutdown_timeout);
    post_all(a, CMD_STOP_ACCEPT);
    uv_timer_start(&a->watch, on_watch, 0, 100);
}

/* ---- the registry's clock -------------------------------------------------- */

static void registry_changed(void *ctx)
{
    post_all(ctx, CMD_BACKENDS);
}

/* Every HEARTBEAT_INTERVAL: backends whose heartbeats stopped go, sticky
 * sessions idle past SESSION_TIMEOUT are forgotten, and in drain-mode
 * finish the workers look for sessions whose drain budget is over. */
/* Handshakes borrow several kilobytes each and give them back; after a
 * burst, glibc keeps the freed pages in its arenas. Once the burst is over,
 * hand them back to the kernel, so that the memory of thousands of idle
 * connections is what they use, not what their handshakes once did. */
static void trim_after_handshakes(app *a)
{
    uint64_t opened = 0;
    for (unsigned i = 0; i < a->threads; i++)
        opened += wsg_counter_read(&a->slots[i].proxy.counters, WSG_C_CONNECTIONS_OPENED);
    if (opened == a->trimmed_at_opened ||
        atomic_load_explicit(&a->gw.pending, memory_order_relaxed) > 0)
        return;
    a->trimmed_at_opened = opened;
    malloc_trim(0);
}

static void on_housekeeping(uv_timer_t *t)
{
    app *a = t->data;
    trim_after_handshakes(a);
    wsg_registry_expire(&a->registry);
    wsg_sessions_expire(&a->sessions, wsg_registry_mono_ms(), a->cfg.session_timeout);
    wsg_clients_sweep(&a->addresses, uv_now(a->loop));
    if (strcmp(a->cfg.drain_mode, "finish") == 0)
        post_all(a, CMD_BACKENDS);
}

static void on_sample(uv_timer_t *t)
{
    app *a = t->data;
    wsg_admin_sample(&a->admin_shared, &a->gw);
}

/* ---- start-up ------------------------------------------------------------ */

/* Generates a key when none is configured and shows it once: operators
 * need it to log in and backends to register. */
static void ensure_auth_key(wsg_config *cfg)
{
    unsigned char raw[32];
    char key[64];
    if (cfg->auth_key)
        return;
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        fputs("wsgate: cannot generate GATEWAY_AUTH_KEY: the random generator failed\n", stderr);
        exit(1);
    }
    int n = EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    /* base64url without padding, so it can go in a URL or a shell. */
    for (int i = 0; i < n; i++)
        key[i] = key[i] == '+' ? '-' : key[i] == '/' ? '_' : key[i];
    while (n > 0 && key[n - 1] == '=')
        key[--n] = '\0';
    cfg->auth_key = strdup(key);
    if (cfg->auth_key == NULL)
        abort();
    if (cfg->log_format == WSG_LOG_JSON) {
        wsg_log_warn("GATEWAY_AUTH_KEY is not set; generated one for this run, shown only now",
                     "key=%s", cfg->auth_key);
        return;
    }
    fprintf(stderr,
            "wsgate: WARNING: GATEWAY_AUTH_KEY is not set; generated one for this run:\n"
            "\n    %s\n\n"
            "wsgate: it is shown only now. Set GATEWAY_AUTH_KEY to keep a key across "
            "restarts.\n",
            cfg->auth_key);
}

/* Raises the descriptor limit as far as allowed and sizes the connection
 * budget from what is left. */
static void size_budget(app *a)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    long limit = (long)rl.rlim_cur;
    long reserve = FD_RESERVE_BASE + FD_RESERVE_PER_THREAD * (long)a->threads;
    a->gw.fds.limit = limit > reserve ? limit - reserve : 0;
    atomic_init(&a->gw.fds.used, 0);
    long by_fds = a->gw.fds.limit / 2;
    a->gw.max_clients = by_fds;
    if (a->cfg.max_connections && a->cfg.max_connections < by_fds)
        a->gw.max_clients = a->cfg.max_connections;
    wsg_log_info("file descriptor limit", "nofile=%ld reserved=%ld max_clients=%ld", limit,
                 reserve, a->gw.max_clients);
    if (a->cfg.max_connections > by_fds)
        wsg_log_warn("--max-connections is above what the file descriptor limit allows",
                     "max_connections=%u allowed=%ld", a->cfg.max_connections, by_fds);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Splits ADMIN_BIND ("127.0.0.1:8081", "[::1]:8081") into host and port;
 * the configuration checked its form already. */
static void split_admin_bind(const char *bind, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(bind, ':');
    size_t n = (size_t)(colon - bind);
    if (bind[0] == '[') {
        bind++;
        n -= 2;
    }
    snprintf(host, hostlen, "%.*s", (int)n, bind);
    *port = (uint16_t)atoi(colon + 1);
}

static int open_listeners(app *a)
{
    char err[256];
    char admin_host[64] = "";
    uint16_t admin_port = 0;
    if (a->cfg.admin_bind[0])
        split_admin_bind(a->cfg.admin_bind, admin_host, sizeof(admin_host), &admin_port);
    if (admin_port && !a->cfg.reuse_port &&
        wsg_listen_probe(admin_host, admin_port, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsgate: ADMIN_BIND: %s\n", err);
        return -1;
    }
    if (!a->cfg.reuse_port &&
        (wsg_listen_probe(a->cfg.bind, a->cfg.ws_port, err, sizeof(err)) < 0 ||
         wsg_listen_probe(a->cfg.bind, a->cfg.http_port, err, sizeof(err)) < 0)) {
        fprintf(stderr, "wsgate: %s\n", err);
        return -1;
    }
    for (unsigned i = 0; i < a->threads; i++) {
        slot *s = &a->slots[i];
        s->ws_fd = wsg_listen_socket(a->cfg.bind, a->cfg.ws_port, (int)a->cfg.listen_backlog, err,
                                     sizeof(err));
        if (s->ws_fd >= 0)
            s->http_fd = wsg_listen_socket(a->cfg.bind, a->cfg.http_port,
                                           (int)a->cfg.listen_backlog, err, sizeof(err));
        s->admin_fd = -1;
        if (s->ws_fd >= 0 && s->http_fd >= 0 && admin_port)
            s->admin_fd = wsg_listen_socket(admin_host, admin_port, (int)a->cfg.listen_backlog,
                                            err, sizeof(err));
        if (s->ws_fd < 0 || s->http_fd < 0 || (admin_port && s->admin_fd < 0)) {
            fprintf(stderr, "wsgate: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int setup_tls(app *a)
{
    char err[512];
    bool any = wsg_config_tls_on(&a->cfg, a->cfg.ws_tls) ||
               wsg_config_tls_on(&a->cfg, a->cfg.http_tls) ||
               (a->cfg.admin_bind[0] && wsg_config_tls_on(&a->cfg, a->cfg.admin_tls));
    a->gw.tls_client = wsg_tls_client_ctx(a->cfg.backend_ca, a->cfg.backend_tls_verify, err,
                                          sizeof(err));
    if (a->gw.tls_client == NULL) {
        fprintf(stderr, "wsgate: %s\n", err);
        return -1;
    }
    if (!any)
        return 0;
    wsg_tls_certs *certs = wsg_tls_certs_load(a->cfg.tls_cert, a->cfg.tls_key,
                                              a->cfg.tls_sni_certs, err, sizeof(err));
    if (certs == NULL) {
        fprintf(stderr, "wsgate: %s\n", err);
        return -1;
    }
    a->gw.tls = &a->tls;
    wsg_tls_server_init(a->gw.tls, certs);
    return 0;
}

/* Address lists and rate limits. */
static int setup_limits(app *a)
{
    char bad[128];
    wsg_client_limits limits = {
        .upgrade_rate = a->cfg.rate_upgrades,
        .upgrade_burst = a->cfg.rate_upgrade_burst,
        .request_rate = a->cfg.rate_requests,
        .request_burst = a->cfg.rate_request_burst,
        .max_per_ip = a->cfg.max_per_ip,
    };
    if (wsg_cidr_list_parse(a->cfg.rate_exempt, &limits.exempt, &limits.exempt_count, bad,
                            sizeof(bad)) < 0) {
        fprintf(stderr, "wsgate: RATE_LIMIT_EXEMPT (--rate-limit-exempt): \"%s\" is not an "
                "address or CIDR like 10.0.0.0/8\n", bad);
        return -1;
    }
    if (wsg_cidr_list_parse(a->cfg.registration_networks, &a->gw.registration_nets,
                            &a->gw.registration_net_count, bad, sizeof(bad)) < 0) {
        free(limits.exempt);
        fprintf(stderr, "wsgate: REGISTRATION_NETWORKS (--registration-networks): \"%s\" is "
                "not an address or CIDR like 10.0.0.0/8\n", bad);
        return -1;
    }
    wsg_clients_init(&a->addresses, &limits);
    a->gw.addresses = &a->addresses;
    atomic_init(&a->gw.pending, 0);
    return 0;
}

static int setup(app *a)
{
    char err[512];
    char bad[128];
    a->threads = a->cfg.threads ? a->cfg.threads : uv_available_parallelism();
    if (wsg_registry_init(&a->registry, &a->cfg, a->threads, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 2;
    }
    if (wsg_cidr_list_parse(a->cfg.trusted_proxies, &a->gw.trusted, &a->gw.trusted_count, bad,
                            sizeof(bad)) < 0) {
        fprintf(stderr, "wsgate: TRUSTED_PROXIES (--trusted-proxies): \"%s\" is not an address "
                "or CIDR like 10.0.0.0/8\n", bad);
        return 2;
    }
    if (setup_tls(a) < 0 || setup_limits(a) < 0)
        return 2;
    wsg_sessions_init(&a->sessions, a->cfg.session_max);
    wsg_admin_shared_init(&a->admin_shared);
    wsg_registry_on_change(&a->registry, registry_changed, a);
    a->gw.cfg = &a->cfg;
    a->gw.registry = &a->registry;
    a->gw.sessions = &a->sessions;
    a->gw.started_ms = wall_ms();
    atomic_init(&a->gw.clients, 0);
    atomic_init(&a->gw.draining, false);
    atomic_init(&a->gw.stopping, false);
    RAND_bytes(a->gw.ping_token, sizeof(a->gw.ping_token));
    /* SHA-1 is fetched from OpenSSL's providers once, on first use: do it
     * now, so the first handshake is not the one that pays. */
    char accept[WSG_WS_ACCEPT_LEN + 1];
    wsg_ws_accept(WSG_STR("dGhlIHNhbXBsZSBub25jZQ=="), accept);
    a->slots = calloc(a->threads, sizeof(*a->slots));
    a->gw.proxies = calloc(a->threads, sizeof(*a->gw.proxies));
    if (a->slots == NULL || a->gw.proxies == NULL)
        abort();
    for (unsigned i = 0; i < a->threads; i++)
        a->gw.proxies[i] = &a->slots[i].proxy;
    a->gw.proxy_count = a->threads;
    size_budget(a);
    if (open_listeners(a) < 0)
        return 1;
    return 0;
}

static void start_workers(app *a)
{
    for (unsigned i = 0; i < a->threads; i++) {
        slot *s = &a->slots[i];
        s->app = a;
        atomic_init(&s->finished, false);
        wsg_worker_init(&s->worker, i, TICK_MS);
        wsg_proxy_init(&s->proxy, &a->gw, &s->worker);
        wsg_admin_init(&s->admin, &a->gw, &a->admin_shared, &s->worker, &s->proxy.counters);
        s->worker.app = s;
        s->worker.on_start = worker_started;
        s->worker.on_command = worker_command;
        s->worker.on_stop = worker_stopped;
    }
    /* Only once every slot is set up: a running worker may already answer
     * a request that reads the others (/_pressure, /metrics). */
    for (unsigned i = 0; i < a->threads; i++) {
        slot *s = &a->slots[i];
        int rc = wsg_worker_start(&s->worker);
        if (rc < 0) {
            fprintf(stderr, "wsgate: cannot start worker thread %u: %s\n", i, uv_strerror(rc));
            exit(1);
        }
    }
}

static void log_start(const app *a)
{
    const wsg_service *svc = a->registry.default_service;
    wsg_log_info("wsgate started", "ws=%s:%u http=%s:%u admin=%s threads=%u service=%s "
                 "backends=%zu",
                 a->cfg.bind, a->cfg.ws_port, a->cfg.bind, a->cfg.http_port,
                 a->cfg.admin_bind[0] ? a->cfg.admin_bind : "(http port)", a->threads,
                 svc->name, svc->count);
    for (size_t i = 0; i < a->registry.count; i++) {
        const wsg_service *s = a->registry.services[i];
        for (size_t j = 0; j < s->count; j++)
            wsg_log_info("backend configured", "service=%s backend=%s", s->name,
                         s->backends[j]->id);
    }
    if (svc->count == 0)
        wsg_log_warn("no backends configured: clients get 503 until one registers",
                     "hint=\"POST /register from a backend, or --backend HOST:PORT, or "
                     "UPSTREAMS\"");
}

static void teardown(app *a)
{
    for (unsigned i = 0; i < a->threads; i++)
        wsg_worker_join(&a->slots[i].worker);
    free(a->slots);
    free(a->gw.proxies);
    free(a->gw.trusted);
    if (a->gw.tls)
        wsg_tls_server_deinit(a->gw.tls);
    SSL_CTX_free(a->gw.tls_client);
    wsg_sessions_deinit(&a->sessions);
    wsg_admin_shared_deinit(&a->admin_shared);
    wsg_clients_deinit(&a->addresses);
    free(a->gw.registration_nets);
    wsg_registry_deinit(&a->registry);
    wsg_config_free(&a->cfg);
}

int main(int argc, char **argv, char **envp)
{
    static app a;
    char err[512];
    signal(SIGPIPE, SIG_IGN);
    wsg_config_result cr = wsg_config_load(&a.cfg, argc, argv, envp, stdout, err, sizeof(err));
    if (cr != WSG_CONFIG_OK) {
        if (cr == WSG_CONFIG_ERROR)
            fprintf(stderr, "wsgate: %s\n", err);
        wsg_config_free(&a.cfg);
        return cr == WSG_CONFIG_EXIT ? 0 : 2;
    }
    wsg_log_setup((wsg_log_level)a.cfg.log_level, (wsg_log_format)a.cfg.log_format, 2);
    ensure_auth_key(&a.cfg);
    int rc = setup(&a);
    if (rc != 0) {
        if (a.sessions.buckets)
            wsg_sessions_deinit(&a.sessions);
        wsg_registry_deinit(&a.registry);
        wsg_config_free(&a.cfg);
        return rc;
    }
    a.loop = uv_default_loop();
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sighup);
    uv_timer_init(a.loop, &a.watch);
    uv_timer_init(a.loop, &a.housekeeping);
    uv_timer_init(a.loop, &a.sampler);
    a.sigterm.data = a.sigint.data = a.sighup.data = a.watch.data = &a;
    a.housekeeping.data = a.sampler.data = &a;
    uv_timer_start(&a.sampler, on_sample, 0, 2000);
    uv_timer_start(&a.housekeeping, on_housekeeping, a.cfg.heartbeat_interval,
                   a.cfg.heartbeat_interval);
    a.health = wsg_health_start(a.loop, &a.registry, &a.cfg);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sighup, on_signal, SIGHUP);
    /* Before the workers run: after, a registration may be changing what it reads. */
    log_start(&a);
    start_workers(&a);
    uv_run(a.loop, UV_RUN_DEFAULT);
    teardown(&a);
    uv_loop_close(a.loop);
    wsg_log_info("wsgate stopped", NULL);
    return 0;
}
