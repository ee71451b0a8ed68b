/* One loadgen worker process: opens its share of the connections, reports
 * READY, waits for the start time, runs the load (idle or echo), drains,
 * and sends its lg_result to the parent. */
#ifndef LG_WORKER_H
#define LG_WORKER_H

#include <stdint.h>

#include "loadgen_config.h"

/* Runs worker k of cfg->procs, talking to the parent over up_fd (to it) and
 * down_fd (from it); see loadgen_procs.h. Returns the process's exit
 * status: 0 when it could report, 1 otherwise. */
int lg_worker_run(const lg_config *cfg, uint32_t k, int up_fd, int down_fd);

#endif
