/* The parent's side of spreading loadgen over processes (loadgen_procs.h):
 * fork the workers, start them together, collect and merge their results,
 * and stop everything at the hard bound. */
#include "loadgen_procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loadgen_worker.h"

/* Between the last READY and the load: time for the start message to reach
 * every worker before the start it names. */
#define LG_GO_DELAY_NS (20 * UINT64_C(1000000))
#define LG_CHILD_BUF (2 * sizeof(lg_ipc_head) + sizeof(lg_ipc_ready) + sizeof(lg_result))

volatile sig_atomic_t lg_stop_requested;

typedef struct lg_child {
    pid_t pid; /* 0 when the fork failed */
    int up;    /* from the worker; -1 once it closed */
    int down;  /* to the worker */
    uint64_t count;
    bool ready;
    bool done;
    size_t got;   /* bytes in buf */
    uint8_t *buf; /* messages being read; malloc'd, so aligned for lg_result */
} lg_child;

typedef struct lg_parent {
    const lg_config *cfg;
    lg_child *kids;
    lg_result *total;
    lg_run_info *info;
    uint64_t start;
    uint64_t deadline;
    uint64_t connected; /* from READY messages, for the progress line */
    bool go_sent;
    bool forwarded;
} lg_parent;

static void on_stop_signal(int sig)
{
    (void)sig;
    lg_stop_requested = 1;
}

void lg_signals_setup(void)
{
    struct sigaction sa;
    sigset_t set;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int lg_ipc_send(int fd, uint32_t type, const void *body, uint32_t len)
{
    lg_ipc_head h = {type, len};
    if (write_all(fd, &h, sizeof(h)) < 0 || write_all(fd, body, len) < 0)
        return -1;
    return 0;
}

/* ---- workers ------------------------------------------------------------------ */

static void child_run(lg_parent *p, uint32_t k, int up[2], int down[2], pid_t parent)
{
    /* A worker must not outlive a parent killed without a chance to stop
     * it: its connections would hold ports and descriptors. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    for (uint32_t j = 0; j < k; j++) {
        if (p->kids[j].up >= 0)
            close(p->kids[j].up);
        if (p->kids[j].down >= 0)
            close(p->kids[j].down);
    }
    close(up[0]);
    close(down[1]);
    _exit(lg_worker_run(p->cfg, k, up[1], down[0]));
}

static int spawn(lg_parent *p, uint32_t k)
{
    lg_child *kid = &p->kids[k];
    int up[2], down[2];
    pid_t parent = getpid();
    kid->count = lg_config_first(p->cfg, k + 1) - lg_config_first(p->cfg, k);
    kid->buf = malloc(LG_CHILD_BUF);
    if (kid->buf == NULL || pipe2(up, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(down, O_CLOEXEC) < 0)
        goto fail_up;
    pid_t pid = fork();
    if (pid < 0)
        goto fail_down;
    if (pid == 0)
        child_run(p, k, up, down, parent);
    close(up[1]);
    close(down[0]);
    fcntl(up[0], F_SETFL, O_NONBLOCK);
    kid->pid = pid;
    kid->up = up[0];
    kid->down = down[1];
    return 0;
fail_down:
    close(down[0]);
    close(down[1]);
fail_up:
    close(up[0]);
    close(up[1]);
    return -1;
}

static void on_message(lg_parent *p, lg_child *kid, const lg_ipc_head *h, uint8_t *body)
{
    if (h->type == LG_IPC_READY && h->len == sizeof(lg_ipc_ready)) {
        lg_ipc_ready ready;
        memcpy(&ready, body, sizeof(ready));
        p->connected += ready.connected;
        kid->ready = true;
    } else if (h->type == LG_IPC_RESULT && h->len == sizeof(lg_result)) {
        lg_result_merge(p->total, (const lg_result *)body);
        kid->done = true;
    }
}

static void kid_closed(lg_child *kid, uint32_t k)
{
    close(kid->up);
    kid->up = -1;
    if (!kid->done)
        fprintf(stderr, "loadgen: worker %u ended without a report\n", k);
}

/* Reads what the worker sent and handles each whole message. */
static void kid_read(lg_parent *p, uint32_t k)
{
    lg_child *kid = &p->kids[k];
    lg_ipc_head h;
    ssize_t r = read(kid->up, kid->buf + kid->got, LG_CHILD_BUF - kid->got);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        kid_closed(kid, k);
        return;
    }
    kid->got += (size_t)r;
    while (kid->got >= sizeof(h)) {
        memcpy(&h, kid->buf, sizeof(h));
        size_t size = sizeof(h) + h.len;
        if (size > LG_CHILD_BUF) {
            kid_closed(kid, k);
            return;
        }
        if (kid->got < size)
            return;
        on_message(p, kid, &h, kid->buf + sizeof(h));
        memmove(kid->buf, kid->buf + size, kid->got - size);
        kid->got -= size;
    }
}

/* ---- coordination ----------------------------------------------------------------- */

static bool all_reported(const lg_parent *p)
{
    for (uint32_t k = 0; k < p->cfg->procs; k++) {
        if (!p->kids[k].done && p->kids[k].up >= 0)
            return false;
    }
    return true;
}

/* Once every worker has finished connecting (or is gone), names one start
 * time for all of them: CLOCK_MONOTONIC is the same in every process. */
static void maybe_send_go(lg_parent *p, uint64_t now)
{
    const lg_config *cfg = p->cfg;
    if (p->go_sent)
        return;
    for (uint32_t k = 0; k < cfg->procs; k++) {
        const lg_child *kid = &p->kids[k];
        if (!kid->ready && !kid->done && kid->up >= 0)
            return;
    }
    uint64_t go = now + LG_GO_DELAY_NS;
    for (uint32_t k = 0; k < cfg->procs; k++) {
        if (p->kids[k].ready && !p->kids[k].done)
            write_all(p->kids[k].down, &go, sizeof(go));
    }
    p->go_sent = true;
    p->info->ramp_s = (double)(now - p->start) / 1e9;
    if (!cfg->quiet)
        fprintf(stderr, "loadgen: %llu of %llu connections open after %.2f s; %s for %.1f s\n",
                (unsigned long long)p->connected, (unsigned long long)cfg->connections,
                p->info->ramp_s, cfg->mode == LG_MODE_ECHO ? "sending" : "holding",
                cfg->duration + (cfg->mode == LG_MODE_ECHO ? cfg->warmup : 0));
}

static void forward_stop(lg_parent *p)
{
    for (uint32_t k = 0; k < p->cfg->procs; k++) {
        if (p->kids[k].pid > 0 && !p->kids[k].done)
            kill(p->kids[k].pid, SIGTERM);
    }
    p->forwarded = true;
}

static void wait_for_reports(lg_parent *p)
{
    uint32_t n = p->cfg->procs;
    struct pollfd *fds = calloc(n, sizeof(*fds));
    uint32_t *which = calloc(n, sizeof(*which));
    sigset_t during_wait;
    sigemptyset(&during_wait);
    while (fds && which && !all_reported(p)) {
        uint64_t now = now_ns();
        if (now >= p->deadline) {
            p->info->timed_out = true;
            fputs("loadgen: the hard time bound passed; stopping the workers\n", stderr);
            break;
        }
        if (lg_stop_requested && !p->forwarded)
            forward_stop(p);
        maybe_send_go(p, now);
        nfds_t m = 0;
        for (uint32_t k = 0; k < n; k++) {
            if (p->kids[k].up >= 0) {
                fds[m] = (struct pollfd){.fd = p->kids[k].up, .events = POLLIN};
                which[m++] = k;
            }
        }
        uint64_t wait =
            p->deadline - now < UINT64_C(1000000000) ? p->deadline - now : UINT64_C(1000000000);
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int rc = ppoll(fds, m, &ts, &during_wait);
        for (nfds_t i = 0; rc > 0 && i < m; i++) {
            if (fds[i].revents)
                kid_read(p, which[i]);
        }
    }
    free(fds);
    free(which);
}

/* Returns how many workers have not exited yet, reaping those that have. */
static uint32_t reap_exited(lg_parent *p)
{
    uint32_t left = 0;
    for (uint32_t k = 0; k < p->cfg->procs; k++) {
        lg_child *kid = &p->kids[k];
        if (kid->pid > 0 && waitpid(kid->pid, NULL, WNOHANG) == kid->pid)
            kid->pid = 0;
        left += kid->pid > 0;
    }
    return left;
}

/* Workers that reported are closing their connections; the rest are
 * killed. Whatever is still running at the hard bound is killed too. */
static void reap(lg_parent *p)
{
    struct timespec tick = {0, 10 * 1000000L};
    for (uint32_t k = 0; k < p->cfg->procs; k++) {
        lg_child *kid = &p->kids[k];
        if (!kid->done)
            p->info->lost_conns += kid->count;
        if (kid->pid > 0 && !kid->done)
            kill(kid->pid, SIGKILL);
    }
    while (reap_exited(p) > 0) {
        if (now_ns() >= p->deadline) {
            for (uint32_t k = 0; k < p->cfg->procs; k++) {
                if (p->kids[k].pid > 0)
                    kill(p->kids[k].pid, SIGKILL);
            }
        }
        nanosleep(&tick, NULL);
    }
    for (uint32_t k = 0; k < p->cfg->procs; k++) {
        if (p->kids[k].up >= 0)
            close(p->kids[k].up);
        if (p->kids[k].down >= 0)
            close(p->kids[k].down);
        free(p->kids[k].buf);
    }
}

void lg_procs_run(const lg_config *cfg, lg_result *total, lg_run_info *info)
{
    lg_parent p = {.cfg = cfg, .total = total, .info = info};
    double bound = lg_config_ramp_time(cfg) + cfg->warmup + cfg->duration + cfg->margin;
    memset(info, 0, sizeof(*info));
    p.start = now_ns();
    p.deadline = p.start + (uint64_t)(bound * 1e9);
    p.kids = calloc(cfg->procs, sizeof(*p.kids));
    if (p.kids == NULL) {
        fputs("loadgen: out of memory\n", stderr);
        exit(1);
    }
    for (uint32_t k = 0; k < cfg->procs; k++) {
        p.kids[k].up = -1;
        p.kids[k].down = -1;
    }
    if (!cfg->quiet)
        fprintf(stderr, "loadgen: %u process(es) opening %llu connections to %s\n", cfg->procs,
                (unsigned long long)cfg->connections, cfg->url);
    fflush(NULL); /* workers must not inherit unwritten output */
    for (uint32_t k = 0; k < cfg->procs; k++) {
        if (spawn(&p, k) < 0)
            perror("loadgen: starting a worker");
    }
    wait_for_reports(&p);
    if (!cfg->quiet)
        fprintf(stderr, "loadgen: %u of %u reports in after %.2f s; closing\n", total->procs,
                cfg->procs, (double)(now_ns() - p.start) / 1e9);
    reap(&p);
    info->elapsed_s = (double)(now_ns() - p.start) / 1e9;
    free(p.kids);
}
