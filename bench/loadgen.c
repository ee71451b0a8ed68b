/* loadgen: a WebSocket load generator for wsgate (bench/README.md).
 *
 *   loadgen_config   options and --help
 *   loadgen_procs    forking workers, starting them together, merging
 *   loadgen_worker   one worker's phases and schedule
 *   loadgen_conn     one connection: connect, upgrade, send, check echoes
 *   loadgen_wire     request, response and message bytes (no sockets)
 *   loadgen_hist     log-linear latency histograms
 *   loadgen_report   results and the JSON report
 *
 * main wires them: parse, raise the file limit, run, report, exit status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "loadgen_config.h"
#include "loadgen_procs.h"
#include "loadgen_report.h"

/* The hard limit is what a process may use; the soft one is only where it
 * starts. Workers inherit the raised limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("loadgen: raising RLIMIT_NOFILE");
    }
}

int main(int argc, char **argv)
{
    lg_config cfg;
    lg_run_info info;
    int rc = lg_config_parse(argc, argv, &cfg);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    raise_nofile();
    lg_signals_setup();
    lg_result *total = malloc(sizeof(*total));
    if (total == NULL) {
        fputs("loadgen: out of memory\n", stderr);
        return 1;
    }
    lg_result_init(total);
    lg_procs_run(&cfg, total, &info);
    lg_report_json(stdout, &cfg, total, &info);
    fflush(stdout);
    bool ok = lg_report_ok(&cfg, total, &info);
    if (!ok && !cfg.quiet)
        fputs("loadgen: FAILED: connections failed or dropped, echoes lost or wrong, or the "
              "run was cut short (see the JSON)\n",
              stderr);
    free(total);
    return ok ? 0 : 1;
}
