/* loadgen's options: what to connect to, how much load, for how long, and
 * how to spread it over source addresses and processes. Parsed once in the
 * parent and read-only afterwards; forked workers inherit a copy. */
#ifndef LG_CONFIG_H
#define LG_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum lg_mode {
    LG_MODE_IDLE = 0, /* hold connections open and count drops */
    LG_MODE_ECHO = 1, /* send messages and time their echoes */
} lg_mode;

/* Descriptors a worker keeps for itself beyond its connections. */
#define LG_FD_RESERVE 64
/* Connections per process that --procs auto aims at. */
#define LG_AUTO_PER_PROC 19000
#define LG_MAX_PROCS 256
/* How --margin is shared out: half of it is what connecting may overrun
 * the ramp time by, 30% is for draining (echoes still due, or the idle
 * mode's ping to every connection, which takes ~3 s for 100,000 on two
 * cores), and the rest for reporting and closing. */
#define LG_MARGIN_RAMP 0.5
#define LG_MARGIN_DRAIN 0.3
#define LG_MIN_MARGIN 5.0

typedef struct lg_config {
    const char *url;
    struct sockaddr_in dst;
    char host_header[280]; /* host[:port] as the Host header wants it */
    char path[1024];       /* "{i}" in it becomes the connection index */

    uint64_t connections;
    double ramp;            /* new connections per second, over all; 0 = at once */
    uint32_t max_pending;   /* handshakes in flight, over all processes */
    double connect_timeout; /* seconds a connection may take to open */

    lg_mode mode;
    double rate;       /* echo: messages per second over all; 0 = closed loop */
    uint32_t inflight; /* echo, closed loop: messages in flight per connection */
    uint32_t payload;  /* bytes per message */

    double duration; /* seconds measured (idle: held) */
    double warmup;   /* seconds of load before measuring (echo) */
    double margin;   /* seconds allowed beyond ramp time, warmup and duration */

    uint32_t src_first; /* --source-ips, host byte order */
    uint32_t src_count; /* 0: the kernel picks the source address */
    uint32_t procs;     /* worker processes, resolved from --procs */
    bool quiet;         /* no progress lines on stderr */
    bool tls;           /* wss://: TLS 1.3 to the target */
    bool deflate;       /* offer permessage-deflate; send compressed messages */
} lg_config;

/* Parses argv into cfg. Returns 0 to run, 1 when --help was printed, -1
 * after printing why the options are wrong. */
int lg_config_parse(int argc, char **argv, lg_config *cfg);

/* Seconds that connecting all connections is planned to take at --ramp. */
double lg_config_ramp_time(const lg_config *cfg);

/* The first connection index of worker k, of `procs`; worker k has
 * connections [lg_config_first(k), lg_config_first(k + 1)). */
uint64_t lg_config_first(const lg_config *cfg, uint32_t k);

void lg_config_usage(FILE *f);

#endif
