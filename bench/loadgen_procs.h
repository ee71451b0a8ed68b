/* Spreading loadgen over processes: the parent forks cfg->procs workers,
 * each with its share of the connections, and coordinates them through one
 * pipe each way:
 *
 *   worker -> parent   READY (after connecting), then RESULT (an lg_result)
 *   parent -> worker   the start time of the load, once every worker is READY
 *
 * so that all workers measure the same window, whatever their ramp took.
 * The parent enforces the hard bound on the run: past it, workers are
 * killed and the report says so.
 */
#ifndef LG_PROCS_H
#define LG_PROCS_H

#include <signal.h>
#include <stdint.h>

#include "loadgen_config.h"
#include "loadgen_report.h"

enum { LG_IPC_READY = 1, LG_IPC_RESULT = 2 };

typedef struct lg_ipc_head {
    uint32_t type;
    uint32_t len; /* body bytes that follow */
} lg_ipc_head;

/* READY's body: how connecting went, for the parent's progress line. */
typedef struct lg_ipc_ready {
    uint64_t connected;
    uint64_t failed;
} lg_ipc_ready;

/* Set by SIGTERM/SIGINT. The one global: a signal handler can reach
 * nothing else. Workers stop early and report; the parent passes the
 * signal on and waits for their reports. */
extern volatile sig_atomic_t lg_stop_requested;

/* Installs the SIGTERM/SIGINT handler and blocks both, so that they are
 * taken only inside ppoll/epoll_pwait2 and never race a check of the flag.
 * Call before forking. */
void lg_signals_setup(void);

/* Writes one message whole to a blocking pipe. Returns 0 or -1. */
int lg_ipc_send(int fd, uint32_t type, const void *body, uint32_t len);

/* Runs the workers and merges their results into total. */
void lg_procs_run(const lg_config *cfg, lg_result *total, lg_run_info *info);

#endif
