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
