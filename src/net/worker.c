/* Worker threads: one libuv loop each, with its scratch buffer, timer wheel
 * and random pool. A connection is born and dies on one worker. */
#include <stdio.h>
#include <stdlib.h>

#include "core/list.h"
#include "net/net.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "wsgate: out of memory starting a worker (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static void fire_timer(wsg_wheel_node *node, void *ctx)
{
    (void)ctx;
    wsg_timer *t = wsg_container_of(node, wsg_timer, node);
    t->fire(t);
}

/* Milliseconds of the monotonic clock, comparable between threads. */
static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Ticks in one window of the published loop delay (one second). */
#define LAG_WINDOW_MS 1000

static void measure_lag(wsg_worker *w)
{
    uint64_t now = mono_ms();
    unsigned lag = now > w->tick_due_ms ? (unsigned)(now - w->tick_due_ms) : 0;
    w->tick_due_ms = now + w->wheel.tick_ms;
    atomic_store_explicit(&w->ticked_at_ms, now, memory_order_relaxed);
    if (lag > w->lag_window_ms) {
        w->lag_window_ms = lag;
        /* A new worst shows at once; a better second replaces it later. */
        if (lag > atomic_load_explicit(&w->lag_ms, memory_order_relaxed))
            atomic_store_explicit(&w->lag_ms, lag, memory_order_relaxed);
    }
    if (++w->lag_window_ticks * w->wheel.tick_ms >= LAG_WINDOW_MS) {
        atomic_store_explicit(&w->lag_ms, w->lag_window_ms, memory_order_relaxed);
        w->lag_window_ms = 0;
        w->lag_window_ticks = 0;
    }
}

static void on_tick(uv_timer_t *h)
{
    wsg_worker *w = h->data;
    measure_lag(w);
    wsg_wheel_advance(&w->wheel, uv_now(&w->loop), fire_timer, NULL);
}

unsigned wsg_worker_loop_lag_ms(wsg_worker *w)
{
    unsigned lag = atomic_load_explicit(&w->lag_ms, memory_order_relaxed);
    uint64_t due = atomic_load_explicit(&w->ticked_at_ms, memory_order_relaxed) + w->wheel.tick_ms;
    uint64_t now = mono_ms();
    if (now > due && now - due > lag)
        lag = (unsigned)(now - due);
    return lag;
}

static void run_calls(wsg_worker *w)
{
    uv_mutex_lock(&w->calls_lock);
    wsg_call *c = w->calls;
    w->calls = NULL;
    w->calls_tail = &w->calls;
    uv_mutex_unlock(&w->calls_lock);
    while (c) {
        wsg_call *next = c->next;
        c->fn(w, c->arg);
        free(c);
        c = next;
    }
}

static void on_wakeup(uv_async_t *h)
{
    wsg_worker *w = h->data;
    unsigned cmd = atomic_exchange_explicit(&w->commands, 0, memory_order_acq_rel);
    if (cmd && w->on_command)
        w->on_command(w, cmd);
    run_calls(w);
}

int wsg_worker_call(wsg_worker *w, void (*fn)(wsg_worker *w, void *arg), void *arg)
{
    wsg_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return -1;
    c->next = NULL;
    c->fn = fn;
    c->arg = arg;
    uv_mutex_lock(&w->calls_lock);
    if (w->finished) {
        uv_mutex_unlock(&w->calls_lock);
        free(c);
        return -1;
    }
    *w->calls_tail = c;
    w->calls_tail = &c->next;
    /* Sent under the lock so that finish cannot close the handle between
     * the check and the send. */
    uv_async_send(&w->wakeup);
    uv_mutex_unlock(&w->calls_lock);
    return 0;
}

void wsg_worker_init(wsg_worker *w, unsigned index, uint64_t tick_ms)
{
    int rc = uv_loop_init(&w->loop);
    if (rc < 0) {
        fprintf(stderr, "wsgate: cannot create event loop %u: %s\n", index, uv_strerror(rc));
        abort();
    }
    w->loop.data = w;
    w->index = index;
    w->scratch = xmalloc(WSG_SCRATCH_HEADROOM + WSG_SCRATCH_SIZE);
    /* Touched now, so the first large read does not look like memory the
     * connections of that moment grew. (A memset of zeroes could be folded
     * into calloc, which touches nothing.) */
    for (size_t i = 0; i < WSG_SCRATCH_HEADROOM + WSG_SCRATCH_SIZE; i += 4096)
        ((volatile uint8_t *)w->scratch)[i] = 1;
    wsg_rand_init(&w->rng);
    atomic_init(&w->commands, 0);
    uv_mutex_init(&w->calls_lock);
    w->finished = false;
    w->calls = NULL;
    w->calls_tail = &w->calls;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    wsg_wheel_init(&w->wheel, tick_ms, uv_now(&w->loop));
    w->lag_window_ms = 0;
    w->lag_window_ticks = 0;
    atomic_init(&w->lag_ms, 0);
    atomic_init(&w->ticked_at_ms, mono_ms());
}

static void run(void *arg)
{
    wsg_worker *w = arg;
    uint8_t warm[4];
    /* OpenSSL sets up this thread's random generator on first use: do it
     * before the first client, not during it. */
    wsg_rand_bytes(&w->rng, warm, sizeof(warm));
    uv_update_time(&w->loop);
    w->wheel.cur = uv_now(&w->loop) / w->wheel.tick_ms;
    w->tick_due_ms = mono_ms() + w->wheel.tick_ms;
    atomic_store_explicit(&w->ticked_at_ms, mono_ms(), memory_order_relaxed);
    uv_timer_start(&w->tick, on_tick, w->wheel.tick_ms, w->wheel.tick_ms);
    if (w->on_start)
        w->on_start(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->on_stop)
        w->on_stop(w);
}

int wsg_worker_start(wsg_worker *w)
{
    return uv_thread_create(&w->thread, run, w);
}

void wsg_worker_post(wsg_worker *w, unsigned commands)
{
    atomic_fetch_or_explicit(&w->commands, commands, memory_order_acq_rel);
    uv_mutex_lock(&w->calls_lock);
    if (!w->finished)
        uv_async_send(&w->wakeup);
    uv_mutex_unlock(&w->calls_lock);
}

void wsg_worker_finish(wsg_worker *w)
{
    uv_mutex_lock(&w->calls_lock);
    w->finished = true;
    uv_mutex_unlock(&w->calls_lock);
    run_calls(w);
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
}

void wsg_worker_join(wsg_worker *w)
{
    uv_thread_join(&w->thread);
    /* Calls posted after the loop ended are dropped with their memory;
     * their posters wait for nothing by then (shutdown). */
    for (wsg_call *c = w->calls, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    uv_mutex_destroy(&w->calls_lock);
    uv_loop_close(&w->loop);
    free(w->scratch);
    w->scratch = NULL;
}

void wsg_timer_schedule(wsg_worker *w, wsg_timer *t, uint64_t due)
{
    wsg_wheel_schedule(&w->wheel, &t->node, due);
}

void wsg_timer_cancel(wsg_worker *w, wsg_timer *t)
{
    wsg_wheel_cancel(&w->wheel, &t->node);
}
