/* The option table: every option wsgate understands, in --help order. */
#include "config/config_int.h"

#include <stddef.h>

#define AT(field) offsetof(wsg_config, field)

const wsg_option wsg_options[] = {
    {"bind", "WSGATE_BIND", OPT_STRING, AT(bind), "0.0.0.0", 0, 0,
     "ADDR", "address the WebSocket and HTTP listeners bind to"},
    {"ws-port", "WS_PORT", OPT_PORT, AT(ws_port), "9000", 1, 65535,
     "PORT", "WebSocket port: every path goes to the default service"},
    {"websrv-port", "WEBSRV_PORT", OPT_PORT, AT(http_port), "8000", 1, 65535,
     "PORT", "HTTP port: health and readiness endpoints"},
    {"threads", "WSGATE_THREADS", OPT_UINT, AT(threads), "0", 0, 256,
     "N", "worker threads, each with its own event loop (0: one per core)"},
    {"max-connections", "WSGATE_MAX_CONNECTIONS", OPT_UINT, AT(max_connections), "0", 0,
     10000000, "N", "proxied client connections at most (0: as the file limit allows)"},
    {"reuse-port", "WSGATE_REUSE_PORT", OPT_BOOL, AT(reuse_port), "false", 0, 0, "BOOL",
     "let other wsgate processes listen on the same ports (SO_REUSEPORT), to run several "
     "per machine; otherwise a port already in use stops the start"},
    {"listen-backlog", "WSGATE_LISTEN_BACKLOG", OPT_UINT, AT(listen_backlog), "4096", 16,
     65535, "N", "pending connections the kernel queues per listener"},
    {"admin-bind", "ADMIN_BIND", OPT_STRING, AT(admin_bind), "", 0, 0, "ADDR:PORT",
     "serve the admin API, dashboard and metrics on their own listener (e.g. 127.0.0.1:8081) "
     "instead of WEBSRV_PORT; empty: on WEBSRV_PORT"},
    {"dashboard-session-ttl", "DASHBOARD_SESSION_TTL", OPT_DURATION, AT(dashboard_session_ttl),
     "1h", 1000, 604800000, "DURATION", "lifetime of a dashboard login"},
    {"login-attempts", "WSGATE_LOGIN_ATTEMPTS", OPT_UINT, AT(login_attempts), "10", 1, 10000,
     "N", "dashboard login attempts allowed per minute from one address"},
    {"gateway-auth-key", "GATEWAY_AUTH_KEY", OPT_STRING, AT(auth_key), NULL, 0, 0,
     "KEY", "shared secret of backends and operators, 16+ characters "
     "(unset: a random key is generated and shown once)"},
    {"trusted-proxies", "TRUSTED_PROXIES", OPT_STRING, AT(trusted_proxies), "", 0, 0,
     "LIST", "addresses or CIDRs whose X-Forwarded-For is believed, comma-separated"},
    {"backend", "WSGATE_BACKENDS", OPT_LIST, AT(backends), NULL, 0, 0,
     "HOST:PORT", "static WebSocket backend of the default service (repeatable; "
     "env: comma-separated)"},
    {"upstreams", "UPSTREAMS", OPT_STRING, AT(upstreams), NULL, 0, 0,
     "JSON", "services and their backends, e.g. {\"chat\":[\"ws://10.0.0.5:3001\"]}"},
    {"default-service", "WSGATE_DEFAULT_SERVICE", OPT_STRING, AT(default_service), "default",
     0, 0, "NAME", "service that WS_PORT connections go to"},
    {"heartbeat-interval", "HEARTBEAT_INTERVAL", OPT_DURATION, AT(heartbeat_interval), "1000",
     100, 3600000, "DURATION", "how often registered backends send heartbeats (a late one is "
     "logged)"},
    {"server-timeout", "SERVER_TIMEOUT", OPT_DURATION, AT(server_timeout), "3000", 100, 3600000,
     "DURATION", "silence after which a registered backend is dead and its sessions move"},
    {"session-timeout", "SESSION_TIMEOUT", OPT_DURATION, AT(session_timeout), "1800000", 1000,
     2592000000ULL, "DURATION", "inactivity after which a disconnected client's sticky session "
     "is forgotten"},
    {"session-max", "WSGATE_SESSION_MAX", OPT_UINT, AT(session_max), "1000000", 1, 100000000,
     "N", "sticky sessions kept at most; beyond, the longest idle one is forgotten"},
    {"sticky-key", "WSGATE_STICKY_KEY", OPT_STRING, AT(sticky_key), "query:clientId", 0, 0,
     "SOURCE:NAME", "where the sticky key comes from: query:NAME, header:NAME or cookie:NAME"},
    {"balance", "WSGATE_BALANCE", OPT_STRING, AT(balance), "round-robin", 0, 0, "POLICY",
     "how services choose a backend: round-robin, least-connections, power-of-two or "
     "consistent-hash (UPSTREAMS may set it per service)"},
    {"load-factor", "WSGATE_LOAD_FACTOR", OPT_DOUBLE, AT(load_factor), "1.25", 1000, 10000,
     "X", "consistent-hash: no backend takes more than this times the average load"},
    {"server-assignment", "WSGATE_SERVER_ASSIGNMENT", OPT_BOOL, AT(server_assignment), "false",
     0, 0, "BOOL", "send each new client a {\"type\":\"server_assignment\",...} text message "
     "first, as the seed gateway did"},
    {"drain-mode", "WSGATE_DRAIN_MODE", OPT_STRING, AT(drain_mode), "migrate", 0, 0, "MODE",
     "what a drained backend's sessions do: migrate (move live, between messages) or finish "
     "(stay until they end or the drain timeout)"},
    {"drain-timeout", "WSGATE_DRAIN_TIMEOUT", OPT_DURATION, AT(drain_timeout), "5m", 0,
     86400000, "DURATION", "drain-mode finish: sessions still on a drained backend after this "
     "move anyway"},
    {"migration-timeout", "MIGRATION_TIMEOUT", OPT_DURATION, AT(migration_timeout), "10s", 100,
     3600000, "DURATION", "time a moving session has to find a new backend (else close 1013)"},
    {"migration-buffer", "MIGRATION_BUFFER", OPT_SIZE, AT(migration_buffer), "1MiB", 1024,
     (1ULL << 30), "SIZE", "client bytes held for a moving session; beyond, the client is not "
     "read until the session is back"},
    {"migration-concurrency", "MIGRATION_CONCURRENCY", OPT_UINT, AT(migration_concurrency), "64",
     1, 100000, "N", "sessions per worker dialling a new backend at once, so that a big "
     "backend's death is no thundering herd"},
    {"health-check", "WSGATE_HEALTH_CHECK", OPT_STRING, AT(health_check), "tcp", 0, 0, "CHECK",
     "active checks of configured backends: tcp (connect), http:/PATH (GET, 2xx) or off"},
    {"health-interval", "WSGATE_HEALTH_INTERVAL", OPT_DURATION, AT(health_interval), "2s", 100,
     3600000, "DURATION", "time between two active checks of a configured backend"},
    {"health-rise", "WSGATE_HEALTH_RISE", OPT_UINT, AT(health_rise), "2", 1, 100, "N",
     "passed checks in a row that bring a backend back"},
    {"health-fall", "WSGATE_HEALTH_FALL", OPT_UINT, AT(health_fall), "3", 1, 100, "N",
     "failed checks in a row that take a backend out"},
    {"handshake-timeout", "HANDSHAKE_TIMEOUT", OPT_DURATION, AT(handshake_timeout), "10s",
     100, 3600000, "DURATION", "time a client has to send its upgrade request"},
    {"upstream-timeout", "UPSTREAM_TIMEOUT", OPT_DURATION, AT(upstream_timeout), "5s", 100,
     3600000, "DURATION", "time a backend has to accept and answer the upgrade (else 504)"},
    {"ping-interval", "PING_INTERVAL", OPT_DURATION, AT(ping_interval), "25s", 100, 86400000,
     "DURATION", "silence after which wsgate pings a client or backend"},
    {"pong-timeout", "PONG_TIMEOUT", OPT_DURATION, AT(pong_timeout), "5s", 100, 3600000,
     "DURATION", "further silence after a ping that closes the connection"},
    {"idle-timeout", "IDLE_TIMEOUT", OPT_DURATION, AT(idle_timeout), "0", 0, 604800000,
     "DURATION", "close connections with no message either way for this long (0: never)"},
    {"close-timeout", "CLOSE_TIMEOUT", OPT_DURATION, AT(close_timeout), "5s", 100, 600000,
     "DURATION", "time allowed for a close handshake before the socket is dropped"},
    {"slow-consumer-timeout", "SLOW_CONSUMER_TIMEOUT", OPT_DURATION,
     AT(slow_consumer_timeout), "30s", 100, 3600000, "DURATION",
     "time a peer may stay above the write high-water mark before it is closed (1008)"},
    {"shutdown-timeout", "SHUTDOWN_TIMEOUT", OPT_DURATION, AT(shutdown_timeout), "30s", 0,
     3600000, "DURATION", "drain budget after SIGTERM before connections get 1001"},
    {"max-message-size", "MAX_MESSAGE_SIZE", OPT_SIZE, AT(max_message_size), "16MiB", 1,
     (1ULL << 40), "SIZE", "largest WebSocket message either way (larger: close 1009)"},
    {"max-header-size", "MAX_HEADER_SIZE", OPT_SIZE, AT(max_header_size), "16KiB", 1024,
     (1ULL << 20), "SIZE", "largest HTTP request or response head (larger: 431)"},
    {"write-high-water", "WRITE_HIGH_WATER", OPT_SIZE, AT(write_high_water), "1MiB", 4096,
     (1ULL << 30), "SIZE", "bytes queued for one peer before the other side stops being read"},
    {"validate-utf8", "VALIDATE_UTF8", OPT_BOOL, AT(validate_utf8), "false", 0, 0,
     "BOOL", "check text messages are UTF-8 in the gateway (else the backend does: 1007)"},
    {"log-level", "LOG_LEVEL", OPT_LOG_LEVEL, AT(log_level), "info", 0, 0,
     "LEVEL", "error, warn, info or debug"},
    {"log-format", "LOG_FORMAT", OPT_LOG_FORMAT, AT(log_format), "text", 0, 0,
     "FORMAT", "text (readable lines) or json (one object per line)"},
};

const size_t wsg_option_count = sizeof(wsg_options) / sizeof(wsg_options[0]);
