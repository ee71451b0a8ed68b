/* Option parsing and checks for loadgen (loadgen_config.h). */
#include "loadgen_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "loadgen_wire.h"

void lg_config_usage(FILE *f)
{
    fputs("usage: loadgen --url ws[s]://HOST:PORT/PATH [options]\n"
          "Opens many WebSocket connections and either holds them (idle) or sends\n"
          "messages and times their echoes (echo). Prints one JSON object on stdout;\n"
          "diagnostics go to stderr. Exit status: 0 when every connection opened and\n"
          "stayed open and every echo came back intact; 1 otherwise; 2 for bad options.\n"
          "\n"
          "target\n"
          "  --url URL             ws://HOST[:PORT]/PATH or wss://...; HOST is an IPv4\n"
          "                        address or localhost; {i} in PATH becomes the\n"
          "                        connection index (0..N-1), e.g.\n"
          "                        ws://127.0.0.1:9000/?clientId=c{i}. wss: TLS 1.3, a\n"
          "                        full handshake per connection, no certificate check\n"
          "  --deflate             offer permessage-deflate (no context takeover either\n"
          "                        way) and send every message compressed (RSV1, stored\n"
          "                        DEFLATE blocks); the server must accept the offer\n"
          "connections\n"
          "  --connections N       connections to open (default 1)\n"
          "  --ramp R              new connections per second over all processes;\n"
          "                        0 = as fast as --max-pending allows (default 0)\n"
          "  --max-pending N       handshakes in flight over all processes (default 1000)\n"
          "  --connect-timeout S   seconds a connection may take to open (default 10)\n"
          "  --source-ips A[-B]    bind connection i to address A+(i mod count) before\n"
          "                        connecting, e.g. 127.0.0.2-127.0.0.250; when one runs\n"
          "                        out of ephemeral ports (EADDRNOTAVAIL) the next is used.\n"
          "                        One source reaches one ip:port ~28,000 times.\n"
          "  --procs N|auto        worker processes; connections are split between them\n"
          "                        and results merged. auto: one per 19,000 connections,\n"
          "                        to stay under the per-process file limit (default auto)\n"
          "load\n"
          "  --mode idle|echo      idle: hold the connections for --duration, then check\n"
          "                        each with a ping; echo: send messages (default idle)\n"
          "  --rate R              echo: R messages per second in total, spread evenly\n"
          "                        over the connections (open loop)\n"
          "  --inflight W          echo: W messages in flight per connection; each echo\n"
          "                        sends the next (closed loop; default 1 without --rate)\n"
          "  --payload BYTES       message size, at least 16 (default 32): a sequence\n"
          "                        number, the intended send time, then a pattern of\n"
          "                        connection and sequence that the echo must match\n"
          "                        (from 24 bytes on, an altered or misrouted echo shows)\n"
          "time\n"
          "  --duration S          seconds measured (idle: held) (default 10)\n"
          "  --warmup S            echo: seconds of load before measuring (default 0)\n"
          "  --margin S            seconds allowed beyond ramp time + warmup + duration\n"
          "                        (default 30, at least 5): connecting may overrun its\n"
          "                        ramp time by half of it, draining takes at most 30%.\n"
          "                        The run always ends by then and reports what it has.\n"
          "other\n"
          "  --quiet               no progress lines on stderr\n"
          "  --help                this text\n"
          "\n"
          "Latency is measured from a message's intended send time, not from when it\n"
          "was sent, so a stall delays every message scheduled during it (no\n"
          "coordinated omission); send_lag_ms shows how late loadgen itself sent.\n"
          "Percentiles are in milliseconds.\n",
          f);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_ipv4(const char *s, size_t len, uint32_t *out)
{
    char tmp[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, &a) != 1)
        return -1;
    *out = ntohl(a.s_addr);
    return 0;
}

static int parse_sources(const char *s, lg_config *cfg)
{
    const char *dash = strchr(s, '-');
    uint32_t first, last;
    if (parse_ipv4(s, dash ? (size_t)(dash - s) : strlen(s), &first) < 0)
        return -1;
    last = first;
    if (dash && parse_ipv4(dash + 1, strlen(dash + 1), &last) < 0)
        return -1;
    if (last < first || last - first >= 65536)
        return -1;
    cfg->src_first = first;
    cfg->src_count = last - first + 1;
    return 0;
}

/* Splits ws://HOST[:PORT]/PATH and resolves HOST to one IPv4 address. */
static int parse_url(const char *url, lg_config *cfg)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai;
    char host[256];
    uint64_t port;
    const char *auth;
    if (strncmp(url, "ws://", 5) == 0) {
        auth = url + 5;
        port = 80;
    } else if (strncmp(url, "wss://", 6) == 0) {
        auth = url + 6;
        port = 443;
        cfg->tls = true;
    } else {
        fputs("loadgen: --url must start with ws:// or wss://\n", stderr);
        return -1;
    }
    const char *slash = strchr(auth, '/');
    size_t alen = slash ? (size_t)(slash - auth) : strlen(auth);
    const char *colon = memchr(auth, ':', alen);
    size_t hlen = colon ? (size_t)(colon - auth) : alen;
    if (hlen == 0 || hlen >= sizeof(host) || alen >= sizeof(cfg->host_header))
        return -1;
    memcpy(host, auth, hlen);
    host[hlen] = '\0';
    if (colon) {
        char digits[8] = {0};
        size_t plen = alen - hlen - 1;
        if (plen == 0 || plen >= sizeof(digits))
            return -1;
        memcpy(digits, colon + 1, plen);
        if (parse_u64(digits, 1, 65535, &port) < 0)
            return -1;
    }
    const char *path = slash ? slash : "/";
    if (strlen(path) >= sizeof(cfg->path))
        return -1;
    strcpy(cfg->path, path);
    memcpy(cfg->host_header, auth, alen);
    cfg->host_header[alen] = '\0';
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&cfg->dst, ai->ai_addr, sizeof(cfg->dst));
    cfg->dst.sin_port = htons((uint16_t)port);
    freeaddrinfo(ai);
    return 0;
}

static rlim_t nofile_hard_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY)
        return 1u << 20;
    return rl.rlim_max;
}

/* Resolves --procs: auto means one worker per LG_AUTO_PER_PROC
 * connections; an explicit count must leave each worker under its file
 * limit. */
static int resolve_procs(lg_config *cfg, bool automatic)
{
    uint64_t per_proc_max = (uint64_t)nofile_hard_limit() - LG_FD_RESERVE;
    if (automatic)
        cfg->procs = (uint32_t)((cfg->connections + LG_AUTO_PER_PROC - 1) / LG_AUTO_PER_PROC);
    if (cfg->procs > cfg->connections)
        cfg->procs = (uint32_t)cfg->connections;
    if (cfg->procs > LG_MAX_PROCS) {
        fprintf(stderr, "loadgen: at most %d processes\n", LG_MAX_PROCS);
        return -1;
    }
    uint64_t per_proc = (cfg->connections + cfg->procs - 1) / cfg->procs;
    if (per_proc > per_proc_max) {
        fprintf(stderr,
                "loadgen: %llu connections per process exceed the file limit (%llu); "
                "use --procs %llu or more\n",
                (unsigned long long)per_proc, (unsigned long long)per_proc_max,
                (unsigned long long)((cfg->connections + per_proc_max - 1) / per_proc_max));
        return -1;
    }
    return 0;
}

static int check(lg_config *cfg, bool procs_auto)
{
    if (cfg->url == NULL) {
        fputs("loadgen: --url is required\n", stderr);
        return -1;
    }
    if (parse_url(cfg->url, cfg) < 0) {
        fprintf(stderr, "loadgen: bad --url %s\n", cfg->url);
        return -1;
    }
    if (cfg->mode == LG_MODE_ECHO && cfg->rate > 0 && cfg->inflight > 0) {
        fputs("loadgen: give --rate or --inflight, not both\n", stderr);
        return -1;
    }
    if (cfg->mode == LG_MODE_ECHO && cfg->rate == 0 && cfg->inflight == 0)
        cfg->inflight = 1;
    if (cfg->margin < LG_MIN_MARGIN) {
        fputs("loadgen: --margin must be at least 5 seconds\n", stderr);
        return -1;
    }
    return resolve_procs(cfg, procs_auto);
}

enum {
    O_URL = 1,
    O_CONNECTIONS,
    O_RAMP,
    O_MAX_PENDING,
    O_CONNECT_TIMEOUT,
    O_SOURCES,
    O_PROCS,
    O_MODE,
    O_RATE,
    O_INFLIGHT,
    O_PAYLOAD,
    O_DURATION,
    O_WARMUP,
    O_MARGIN,
    O_QUIET,
    O_DEFLATE,
    O_HELP,
};

static const struct option longopts[] = {
    {"url", required_argument, NULL, O_URL},
    {"connections", required_argument, NULL, O_CONNECTIONS},
    {"ramp", required_argument, NULL, O_RAMP},
    {"max-pending", required_argument, NULL, O_MAX_PENDING},
    {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
    {"source-ips", required_argument, NULL, O_SOURCES},
    {"procs", required_argument, NULL, O_PROCS},
    {"mode", required_argument, NULL, O_MODE},
    {"rate", required_argument, NULL, O_RATE},
    {"inflight", required_argument, NULL, O_INFLIGHT},
    {"payload", required_argument, NULL, O_PAYLOAD},
    {"duration", required_argument, NULL, O_DURATION},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"margin", required_argument, NULL, O_MARGIN},
    {"quiet", no_argument, NULL, O_QUIET},
    {"deflate", no_argument, NULL, O_DEFLATE},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

/* Applies one option. Returns 0, or -1 when its value is bad. */
static int apply(lg_config *cfg, int opt, const char *arg, bool *procs_auto)
{
    uint64_t v = 0;
    int rc = 0;
    switch (opt) {
    case O_URL:
        cfg->url = arg;
        return 0;
    case O_CONNECTIONS:
        return parse_u64(arg, 1, UINT32_MAX, &cfg->connections);
    case O_RAMP:
        return parse_seconds(arg, 1e9, &cfg->ramp);
    case O_MAX_PENDING:
        rc = parse_u64(arg, 1, 1000000, &v);
        cfg->max_pending = (uint32_t)v;
        return rc;
    case O_CONNECT_TIMEOUT:
        return parse_seconds(arg, 3600, &cfg->connect_timeout) < 0 || cfg->connect_timeout <= 0 ? -1
                                                                                                : 0;
    case O_SOURCES:
        return parse_sources(arg, cfg);
    case O_PROCS:
        *procs_auto = strcmp(arg, "auto") == 0;
        rc = *procs_auto ? 0 : parse_u64(arg, 1, LG_MAX_PROCS, &v);
        cfg->procs = (uint32_t)v;
        return rc;
    case O_MODE:
        cfg->mode = strcmp(arg, "echo") == 0 ? LG_MODE_ECHO : LG_MODE_IDLE;
        return strcmp(arg, "echo") == 0 || strcmp(arg, "idle") == 0 ? 0 : -1;
    case O_RATE:
        return parse_seconds(arg, 1e9, &cfg->rate);
    case O_INFLIGHT:
        rc = parse_u64(arg, 1, 1000000, &v);
        cfg->inflight = (uint32_t)v;
        return rc;
    case O_PAYLOAD:
        rc = parse_u64(arg, LG_MSG_MIN, LG_MSG_MAX, &v);
        cfg->payload = (uint32_t)v;
        return rc;
    case O_DURATION:
        return parse_seconds(arg, 7 * 86400, &cfg->duration);
    case O_WARMUP:
        return parse_seconds(arg, 86400, &cfg->warmup);
    case O_MARGIN:
        return parse_seconds(arg, 86400, &cfg->margin);
    case O_QUIET:
        cfg->quiet = true;
        return 0;
    case O_DEFLATE:
        cfg->deflate = true;
        return 0;
    }
    return -1;
}

int lg_config_parse(int argc, char **argv, lg_config *cfg)
{
    bool procs_auto = true;
    int opt;
    int idx = 0;
    memset(cfg, 0, sizeof(*cfg));
    cfg->connections = 1;
    cfg->max_pending = 1000;
    cfg->connect_timeout = 10;
    cfg->payload = 32;
    cfg->duration = 10;
    cfg->margin = 30;
    while ((opt = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
        if (opt == O_HELP) {
            lg_config_usage(stdout);
            return 1;
        }
        if (opt == '?') {
            lg_config_usage(stderr);
            return -1;
        }
        if (apply(cfg, opt, optarg, &procs_auto) < 0) {
            fprintf(stderr, "loadgen: bad value for --%s: %s\n", longopts[idx].name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return check(cfg, procs_auto);
}

double lg_config_ramp_time(const lg_config *cfg)
{
    return cfg->ramp > 0 ? (double)cfg->connections / cfg->ramp : 0.0;
}

uint64_t lg_config_first(const lg_config *cfg, uint32_t k)
{
    return cfg->connections * k / cfg->procs;
}
