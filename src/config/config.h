/* Options: one table, three sources, one validated struct.
 *
 * Every option has an env var (UPPER_SNAKE), a flag (the env name in
 * lower-kebab, without a WSGATE_ prefix) and may appear as a KEY=VALUE line
 * of an optional file (the seed's `.env.gateway` format, keyed by env name).
 * Precedence: flag > env > file > default. Durations take units (250ms, 10s,
 * 5m, 1h; a bare number is milliseconds, as in the seed); sizes take KiB,
 * MiB, GiB (or k, m, g). Invalid values fail the load with a message that
 * names the option and what it accepts.
 *
 * The struct is filled once at start and is read-only afterwards, so every
 * thread may read it without a lock.
 */
#ifndef WSG_CONFIG_H
#define WSG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wsg_config {
    /* listeners */
    char *bind;
    uint16_t ws_port;
    uint16_t http_port;
    uint32_t threads; /* 0 = one per core, resolved by the caller */
    uint32_t max_connections; /* 0 = as many as the file limit allows */
    uint32_t listen_backlog;
    bool reuse_port; /* share the ports with other processes */

    /* admin */
    char *admin_bind;               /* "" or ADDR:PORT */
    uint64_t dashboard_session_ttl; /* ms */
    uint32_t login_attempts;        /* per minute per address */
    uint64_t pressure_loop_delay;   /* ms; 0: not a reason for /_pressure 503 */
    uint64_t pressure_rss;          /* bytes; 0: idem */
    uint32_t pressure_connections;  /* percent of the connection limit; 0: idem */

    /* TLS */
    bool use_tls;        /* WEBSRV_USESSL */
    char *tls_cert;
    char *tls_key;
    char *tls_sni_certs;
    char *ws_tls;        /* "auto", "true", "false" */
    char *http_tls;
    char *admin_tls;
    char *backend_ca;
    bool backend_tls_verify;

    /* security */
    char *auth_key; /* NULL: generate one at start */
    char *trusted_proxies; /* comma-separated addresses or CIDRs */
    char *allowed_origins;
    char *allowed_hosts;
    char *registration_networks;

    /* limits */
    double rate_upgrades;       /* per second per address; 0: off */
    double rate_upgrade_burst;
    double rate_requests;
    double rate_request_burst;
    char *rate_exempt;
    uint32_t max_per_ip;
    uint32_t max_pending;
    double message_rate;        /* per second per connection; 0: off */
    double message_burst;
    char *message_rate_action;  /* "close" or "drop" */

    /* backends */
    char **backends; /* host:port entries of the default service */
    size_t backend_count;
    char *upstreams; /* seed 002's UPSTREAMS JSON, or NULL */
    char *default_service;

    /* sessions, balancing, failover */
    uint64_t heartbeat_interval; /* ms */
    uint64_t server_timeout;     /* ms */
    uint64_t session_timeout;    /* ms */
    uint32_t session_max;
    char *sticky_key;            /* "query:NAME", "header:NAME" or "cookie:NAME" */
    char *balance;
    double load_factor;
    bool server_assignment;
    char *drain_mode;            /* "migrate" or "finish" */
    uint64_t drain_timeout;      /* ms */
    uint64_t migration_timeout;  /* ms */
    uint64_t migration_buffer;   /* bytes */
    uint32_t migration_concurrency;
    char *health_check;          /* "tcp", "http:/PATH" or "off" */
    uint64_t health_interval;    /* ms */
    uint32_t health_rise;
    uint32_t health_fall;

    /* timings, milliseconds */
    uint64_t handshake_timeout;
    uint64_t upstream_timeout;
    uint64_t ping_interval;
    uint64_t pong_timeout;
    uint64_t idle_timeout; /* 0 = off */
    uint64_t close_timeout;
    uint64_t slow_consumer_timeout;
    uint64_t shutdown_timeout;

    /* sizes, bytes */
    uint64_t max_message_size;
    uint64_t max_header_size;
    uint64_t write_high_water;

    bool validate_utf8;

    /* logging */
    int log_level;  /* wsg_log_level */
    int log_format; /* wsg_log_format */

    char *env_file; /* the file that was read, or NULL */
} wsg_config;

typedef enum wsg_config_result {
    WSG_CONFIG_OK = 0,
    WSG_CONFIG_EXIT = 1,   /* --help or --version was printed: exit 0 */
    WSG_CONFIG_ERROR = -1, /* message in err: exit 2 */
} wsg_config_result;

/* Loads the configuration from argv (flags), envp (NULL-terminated
 * "KEY=VALUE" strings) and the KEY=VALUE file named by --env-file or
 * WSGATE_ENV_FILE, else `.env.gateway` in the working directory when it
 * exists. `out` receives --help and --version text. On error, err holds one
 * line that names the option. cfg must be released with wsg_config_free
 * whatever the result. */
wsg_config_result wsg_config_load(wsg_config *cfg, int argc, char **argv, char **envp,
                                  void *out, char *err, size_t errlen);

void wsg_config_free(wsg_config *cfg);

/* Writes the --help text (FILE *). */
void wsg_config_print_help(void *out);

/* Parses a duration ("250ms", "10s", "5m", "1h", bare milliseconds).
 * Returns 0 and sets *ms, or -1. */
int wsg_config_parse_duration(const char *s, uint64_t *ms);

/* Parses a size ("16MiB", "64k", bare bytes). Returns 0 or -1. */
int wsg_config_parse_size(const char *s, uint64_t *bytes);

/* Whether a listener speaks TLS: its own option ("auto", "true",
 * "false"), auto following WEBSRV_USESSL. */
bool wsg_config_tls_on(const wsg_config *cfg, const char *listener_option);

/* Refuses an auth key that is too short or a value copied from the seeds'
 * documentation. Returns NULL when acceptable, else the reason. */
const char *wsg_config_check_auth_key(const char *key);

#endif
