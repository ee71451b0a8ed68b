/* What a loadgen worker measures, how results from several workers add up,
 * and the JSON object printed at the end. */
#ifndef LG_REPORT_H
#define LG_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "loadgen_config.h"
#include "loadgen_hist.h"

/* Why a connection did not open. */
typedef enum lg_fail {
    LG_FAIL_REFUSED = 0, /* ECONNREFUSED: nothing listens */
    LG_FAIL_TIMEOUT,     /* not open within --connect-timeout or the ramp bound */
    LG_FAIL_ADDR,        /* EADDRNOTAVAIL: out of ephemeral ports on every source */
    LG_FAIL_HANDSHAKE,   /* the server did not answer 101 with the right accept */
    LG_FAIL_OTHER,       /* anything else: see stderr */
    LG_FAIL_NOT_STARTED, /* the ramp bound passed before its turn came */
    LG_FAIL_KINDS,
} lg_fail;

/* One worker's counts, or their sum. Plain data: it crosses a pipe as bytes
 * between processes forked from the same binary. */
typedef struct lg_result {
    uint64_t connected;
    uint64_t dropped; /* open, then closed by the peer or silent to a ping */
    uint64_t fail[LG_FAIL_KINDS];
    uint64_t sent;     /* messages whose intended send time is in the window */
    uint64_t received; /* echoes of those */
    uint64_t mismatches;
    uint64_t gaps;    /* echoes that came after earlier ones of their connection
                         that never came (lost on the way, e.g. with a backend) */
    uint64_t current; /* echo: connections open at the end whose last message
                         came back, i.e. still echoing */
    uint64_t skipped; /* due messages not sent: over 4 MiB already queued */
    uint64_t rss_kb;  /* resident memory with every connection open, summed */
    uint64_t rss_kb_max;
    uint64_t window_ns; /* the measured window as it ran (a signal cuts it short); max */
    uint32_t procs;     /* workers whose results are in */
    uint32_t interrupted;
    lg_hist handshake; /* connect() to 101, microseconds */
    lg_hist rtt;       /* intended send time to echo, microseconds */
    lg_hist send_lag;  /* fixed rate: intended to actual send time, microseconds;
                          large values mean loadgen itself fell behind */
} lg_result;

/* What the parent saw of the run as a whole. */
typedef struct lg_run_info {
    double ramp_s; /* start until every worker had finished connecting */
    double elapsed_s;
    uint64_t lost_conns; /* connections of workers that never reported */
    bool timed_out;      /* the hard bound passed and workers were killed */
} lg_run_info;

void lg_result_init(lg_result *r);

void lg_result_merge(lg_result *dst, const lg_result *src);

/* Prints the one JSON object, and a newline. */
void lg_report_json(FILE *f, const lg_config *cfg, const lg_result *r, const lg_run_info *info);

/* True when every connection opened and stayed open, every echo came back
 * whole and in order, and the run ended on its own. */
bool lg_report_ok(const lg_config *cfg, const lg_result *r, const lg_run_info *info);

#endif
