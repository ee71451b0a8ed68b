/* A loadgen worker's phases and schedule (loadgen_worker.h):
 *
 *   RAMP      start connections at the ramp rate, at most max_pending
 *             opening at once; fail those not open by the ramp bound
 *   WAIT_GO   READY sent; wait for the common start time from the parent
 *   LOAD      idle: hold. echo: fixed-rate ticks or the closed loop
 *   DRAIN     echo: wait for the echoes still due; idle: ping every
 *             connection and wait for the pongs; 30% of --margin at most
 *   END       report, close
 *
 * The loop reads the clock and passes `now` in; every wait is bounded by
 * the next thing due, so nothing here can outlive the run's hard bound.
 */
#include "loadgen_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen_conn.h"
#include "loadgen_procs.h"

#define LG_EVENTS 1024
/* Work per loop turn, so that events keep being read while connections
 * start or a backlog of ticks is sent. */
#define LG_START_BATCH 32
#define LG_TICK_BATCH 4096
#define LG_SWEEP_NS (100 * LG_NS_PER_MS)
#define LG_TX_MIN (256 * 1024)
/* The epoll tag of the pipe from the parent; connections use their slot. */
#define LG_TAG_DOWN UINT64_MAX

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * LG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t seconds_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- ramp ------------------------------------------------------------------ */

static uint64_t next_start_time(const lg_worker *w)
{
    return w->t_start + (uint64_t)((double)w->started * w->ramp_step_ns);
}

static bool may_start(const lg_worker *w)
{
    return w->started < w->count && w->npending < w->max_pending;
}

static void start_due(lg_worker *w, uint64_t now)
{
    for (unsigned n = 0; n < LG_START_BATCH && may_start(w); n++) {
        if (w->ramp_step_ns > 0 && next_start_time(w) > now)
            return;
        lg_conn_start(w, &w->conns[w->started++], now);
    }
}

/* Walks the pending array from its end: a removal moves the last entry into
 * the freed place, which has then been looked at already. */
static void sweep_timeouts(lg_worker *w, uint64_t now)
{
    for (uint32_t i = w->npending; i-- > 0;) {
        lg_conn *c = &w->conns[w->pending[i]];
        if (now - c->hs->t0 >= w->connect_timeout_ns)
            lg_conn_fail(w, c, LG_FAIL_TIMEOUT, "not open within --connect-timeout");
    }
}

static void end_ramp(lg_worker *w)
{
    lg_ipc_ready ready;
    while (w->npending > 0)
        lg_conn_fail(w, &w->conns[w->pending[w->npending - 1]], LG_FAIL_TIMEOUT,
                     "still opening when the ramp bound passed");
    if (w->started < w->count) {
        w->res.fail[LG_FAIL_NOT_STARTED] += w->count - w->started;
        lg_say_once(w, LG_FAIL_NOT_STARTED, "%u connections not started by the ramp bound",
                    w->count - w->started);
        w->started = w->count;
    }
    ready.connected = w->res.connected;
    ready.failed = w->count - w->res.connected;
    lg_ipc_send(w->up_fd, LG_IPC_READY, &ready, sizeof(ready));
    w->phase = LG_PHASE_WAIT_GO;
}

static void advance_ramp(lg_worker *w, uint64_t now)
{
    start_due(w, now);
    if (now >= w->next_sweep) {
        sweep_timeouts(w, now);
        w->next_sweep = now + LG_SWEEP_NS;
    }
    if ((w->started == w->count && w->npending == 0) || now >= w->ramp_deadline)
        end_ramp(w);
}

/* ---- load ------------------------------------------------------------------ */

static void on_go(lg_worker *w)
{
    const lg_config *cfg = w->cfg;
    uint64_t go;
    ssize_t r = read(w->down_fd, &go, sizeof(go));
    if (r == 0) {
        w->phase = LG_PHASE_END; /* the parent is gone: nobody to report to */
        return;
    }
    if (r != sizeof(go) || w->phase != LG_PHASE_WAIT_GO)
        return;
    bool echo = cfg->mode == LG_MODE_ECHO;
    w->go = go;
    w->measure_from = go + (echo ? seconds_ns(cfg->warmup) : 0);
    w->load_end = w->measure_from + seconds_ns(cfg->duration);
    if (echo && cfg->rate > 0) {
        double rate = cfg->rate * (double)w->count / (double)cfg->connections;
        w->tick_ns = 1e9 / rate;
        /* Workers take turns within a tick instead of all sending at once. */
        w->tick_offset = (double)w->k / (double)cfg->procs;
    }
    /* Nothing opened here: nothing to hold or measure. */
    w->phase = w->res.connected > 0 ? LG_PHASE_LOAD : LG_PHASE_END;
}

static uint64_t tick_time(const lg_worker *w, uint64_t tick)
{
    return w->go + (uint64_t)(((double)tick + w->tick_offset) * w->tick_ns);
}

/* Fixed rate: tick m goes to connection m mod count at its intended time,
 * so each connection sends every count ticks. A late loop sends the ticks
 * it missed with their intended times, and their latency shows it. */
static void send_ticks(lg_worker *w, uint64_t now)
{
    for (unsigned n = 0; n < LG_TICK_BATCH; n++) {
        uint64_t t = tick_time(w, w->tick);
        if (t > now || t >= w->load_end)
            break;
        lg_conn *c = &w->conns[w->tick % w->count];
        w->tick++;
        if (c->state != LC_OPEN)
            continue;
        lg_conn_send_message(w, c, t);
        if (t >= w->measure_from)
            lg_hist_record(&w->res.send_lag, (now - t) / 1000);
    }
    lg_conn_flush(w);
}

static void start_closed_loop(lg_worker *w, uint64_t now)
{
    for (uint32_t i = 0; i < w->count; i++) {
        lg_conn *c = &w->conns[i];
        for (uint32_t j = 0; j < w->cfg->inflight && c->state == LC_OPEN; j++)
            lg_conn_send_message(w, c, now);
    }
    lg_conn_flush(w);
    w->loop_started = true;
}

/* Idle: a ping proves each connection still carries data end to end; a
 * connection that was cut silently stays "open" until something is sent. */
static void ping_all(lg_worker *w)
{
    for (uint32_t i = 0; i < w->count; i++) {
        lg_conn *c = &w->conns[i];
        if (c->state != LC_OPEN)
            continue;
        c->flags |= LC_F_PINGED;
        w->pongs_awaited++;
        lg_conn_send_control(w, c, WSG_WS_OP_PING, "loadgen", 7);
    }
    lg_conn_flush(w);
}

static void begin_drain(lg_worker *w, uint64_t now)
{
    w->phase = LG_PHASE_DRAIN;
    w->drain_end = now + seconds_ns(w->cfg->margin * LG_MARGIN_DRAIN);
    if (w->cfg->mode == LG_MODE_IDLE)
        ping_all(w);
}

static void end_drain(lg_worker *w)
{
    for (uint32_t i = 0; i < w->count; i++) {
        lg_conn *c = &w->conns[i];
        if (c->state == LC_OPEN && (c->flags & LC_F_PINGED) && !(c->flags & LC_F_PONGED))
            lg_conn_drop(w, c, "no pong within the drain time");
    }
    w->phase = LG_PHASE_END;
}

static void advance_drain(lg_worker *w, uint64_t now)
{
    bool echo = w->cfg->mode == LG_MODE_ECHO;
    bool done = echo ? w->outstanding == 0 : w->pongs_awaited == 0;
    if (done || now >= w->drain_end)
        end_drain(w);
}

static void advance(lg_worker *w, uint64_t now)
{
    const lg_config *cfg = w->cfg;
    switch (w->phase) {
    case LG_PHASE_RAMP:
        advance_ramp(w, now);
        break;
    case LG_PHASE_LOAD:
        if (now >= w->go && cfg->mode == LG_MODE_ECHO) {
            if (cfg->inflight > 0 && !w->loop_started)
                start_closed_loop(w, now);
            if (cfg->rate > 0)
                send_ticks(w, now);
        }
        if (now >= w->load_end) {
            begin_drain(w, now);
            advance_drain(w, now); /* there may be nothing to wait for */
        }
        break;
    case LG_PHASE_DRAIN:
        advance_drain(w, now);
        break;
    }
}

/* When the loop must look again: the next start, tick, timeout or phase
 * change, and at least once a second. */
static uint64_t next_wake(const lg_worker *w, uint64_t now)
{
    uint64_t wake = now + LG_NS_PER_S;
    switch (w->phase) {
    case LG_PHASE_RAMP:
        if (may_start(w))
            wake = w->ramp_step_ns > 0 ? min_u64(wake, next_start_time(w)) : now;
        wake = min_u64(wake, min_u64(w->next_sweep, w->ramp_deadline));
        break;
    case LG_PHASE_LOAD:
        if (now < w->go)
            return min_u64(wake, w->go);
        wake = min_u64(wake, w->load_end);
        if (w->cfg->mode == LG_MODE_ECHO && w->cfg->rate > 0)
            wake = min_u64(wake, tick_time(w, w->tick));
        break;
    case LG_PHASE_DRAIN:
        wake = min_u64(wake, w->drain_end);
        break;
    }
    return wake;
}

/* ---- the loop ------------------------------------------------------------------ */

static void dispatch(lg_worker *w, const struct epoll_event *ev)
{
    if (ev->data.u64 == LG_TAG_DOWN) {
        on_go(w);
        return;
    }
    lg_conn *c = &w->conns[ev->data.u64];
    /* An event queued before its connection was released in this batch. */
    if (c->state == LC_GONE || c->state == LC_NEW)
        return;
    lg_conn_event(w, c, ev->events, now_ns());
}

static void run(lg_worker *w)
{
    struct epoll_event evs[LG_EVENTS];
    sigset_t during_wait;
    sigemptyset(&during_wait);
    while (w->phase != LG_PHASE_END) {
        uint64_t now = now_ns();
        if (lg_stop_requested) {
            w->res.interrupted = 1;
            lg_say_once(w, LG_SAY_STOP, "stopping early on a signal");
            return;
        }
        advance(w, now);
        if (w->phase == LG_PHASE_END)
            return;
        uint64_t wake = next_wake(w, now);
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / LG_NS_PER_S), (long)(wait % LG_NS_PER_S)};
        /* SIGTERM/SIGINT are blocked but here, so the flag is checked
         * right after any wait they interrupt. */
        int n = epoll_pwait2(w->ep, evs, LG_EVENTS, &ts, &during_wait);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_pwait2");
            return;
        }
        for (int i = 0; i < n; i++)
            dispatch(w, &evs[i]);
    }
}

/* ---- setup and report ------------------------------------------------------------ */

static uint64_t rss_kb(void)
{
    char line[256];
    unsigned long long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* The part of [measure_from, load_end) that ran: all of it, unless a signal
 * stopped the run early. */
static uint64_t measured_window(const lg_worker *w, uint64_t now)
{
    uint64_t end = min_u64(now, w->load_end);
    return w->measure_from != UINT64_MAX && end > w->measure_from ? end - w->measure_from : 0;
}

/* Echo: open connections whose last message came back (all of them, when
 * nothing was lost and the drain finished). */
static uint64_t still_echoing(const lg_worker *w)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        const lg_conn *c = &w->conns[i];
        n += c->state == LC_OPEN && c->seq_tx > 0 && c->seq_rx == c->seq_tx;
    }
    return n;
}

/* Says goodbye with a close frame where the socket takes it at once; the
 * run is over, so nobody waits for the answer. */
static void close_all(lg_worker *w)
{
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    for (uint32_t i = 0; i < w->started; i++) {
        lg_conn *c = &w->conns[i];
        if (c->state == LC_OPEN && c->out == NULL) {
            size_t n = wsg_ws_close_frame(frame, WSG_WS_CLOSE_NORMAL, "loadgen done", &w->rng);
            ssize_t sent = c->tls ? lg_tls_write(c->tls, frame, n)
                                  : send(c->fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)sent;
        }
        if (c->state != LC_GONE && c->state != LC_NEW)
            lg_conn_release(w, c);
    }
}

static void worker_deinit(lg_worker *w)
{
    if (w->ep >= 0)
        close(w->ep);
    lg_tls_ctx_free(w->tls_ctx);
    free(w->conns);
    free(w->rx);
    free(w->tx);
    free(w->pending);
    free(w->src_full);
}

static void worker_schedule(lg_worker *w, uint64_t now)
{
    const lg_config *cfg = w->cfg;
    double ramp_allowed = lg_config_ramp_time(cfg) + cfg->margin * LG_MARGIN_RAMP;
    w->phase = LG_PHASE_RAMP;
    w->t_start = now;
    w->next_sweep = now + LG_SWEEP_NS;
    w->ramp_deadline = now + seconds_ns(ramp_allowed);
    w->connect_timeout_ns = seconds_ns(cfg->connect_timeout);
    w->measure_from = UINT64_MAX; /* nothing counts before the start */
    if (cfg->ramp > 0)
        w->ramp_step_ns = 1e9 * (double)cfg->connections / (cfg->ramp * (double)w->count);
}

/* Allocates what the worker needs; on failure worker_deinit frees what was
 * made (all pointers start NULL). */
static int worker_init(lg_worker *w, const lg_config *cfg, uint32_t k, int up_fd, int down_fd)
{
    w->cfg = cfg;
    w->k = k;
    w->up_fd = up_fd;
    w->down_fd = down_fd;
    w->first = lg_config_first(cfg, k);
    w->count = (uint32_t)(lg_config_first(cfg, k + 1) - w->first);
    w->max_pending = cfg->max_pending / cfg->procs ? cfg->max_pending / cfg->procs : 1;
    w->tx_cap = 2 * LG_FRAME_SIZE(cfg->payload);
    w->tx_cap = w->tx_cap < LG_TX_MIN ? LG_TX_MIN : w->tx_cap;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->conns = calloc(w->count, sizeof(*w->conns));
    w->rx = malloc(LG_RX_SIZE);
    w->tx = malloc(w->tx_cap);
    w->pending = malloc(w->max_pending * sizeof(*w->pending));
    w->src_full = calloc(cfg->src_count ? cfg->src_count : 1, 1);
    if (w->ep < 0 || !w->conns || !w->rx || !w->tx || !w->pending || !w->src_full)
        return -1;
    if (cfg->tls && (w->tls_ctx = lg_tls_ctx_new()) == NULL)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LG_TAG_DOWN};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, down_fd, &ev) < 0)
        return -1;
    for (uint32_t i = 0; i < w->count; i++)
        w->conns[i].fd = -1;
    /* The default 50 us timer slack would make every tick that late, and the
     * latency is measured from the tick's intended time. */
    prctl(PR_SET_TIMERSLACK, 1UL);
    wsg_rand_init(&w->rng);
    lg_result_init(&w->res);
    worker_schedule(w, now_ns());
    return 0;
}

int lg_worker_run(const lg_config *cfg, uint32_t k, int up_fd, int down_fd)
{
    lg_worker *w = calloc(1, sizeof(*w));
    int rc = 1;
    if (w == NULL) {
        perror("loadgen: worker");
        return 1;
    }
    w->ep = -1;
    if (worker_init(w, cfg, k, up_fd, down_fd) == 0) {
        run(w);
        /* Measured with every connection still open. */
        w->res.rss_kb = w->res.rss_kb_max = rss_kb();
        w->res.procs = 1;
        w->phase = LG_PHASE_END;
        w->res.window_ns = measured_window(w, now_ns());
        w->res.current = still_echoing(w);
        rc = lg_ipc_send(up_fd, LG_IPC_RESULT, &w->res, sizeof(w->res)) == 0 ? 0 : 1;
        close_all(w);
    } else {
        perror("loadgen: worker setup");
    }
    worker_deinit(w);
    free(w);
    return rc;
}
