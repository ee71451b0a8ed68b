/* Unit tests for src/core/wheel: nodes fire at or after their due time and
 * at most one tick late, whatever the span, the stalls and what callbacks
 * do to the wheel while it turns. Time is passed in, so nothing sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/wheel.h"

typedef struct sim sim;

typedef struct timer {
    wsg_wheel_node node;
    unsigned fired;
    uint64_t fired_at;
    /* Run after the firing is recorded; may touch the wheel. */
    void (*on_fire)(struct timer *t, sim *s);
    struct timer *other;
    uint64_t arg;
} timer;

struct sim {
    wsg_wheel wheel;
    uint64_t now;
    unsigned fires;
    bool in_advance;
};

static void fire_cb(wsg_wheel_node *node, void *ctx)
{
    sim *s = ctx;
    timer *t = wsg_container_of(node, timer, node);
    assert_true(s->in_advance);
    if (wsg_wheel_scheduled(node))
        fail_msg("node due %llu is still linked in its callback", (unsigned long long)node->due);
    if (s->now < node->due)
        fail_msg("node due %llu fired early, at %llu", (unsigned long long)node->due,
                 (unsigned long long)s->now);
    t->fired++;
    t->fired_at = s->now;
    s->fires++;
    if (t->on_fire)
        t->on_fire(t, s);
}

static void sim_init(sim *s, uint64_t tick, uint64_t now)
{
    memset(s, 0, sizeof(*s));
    wsg_wheel_init(&s->wheel, tick, now);
    s->now = now;
}

static void advance(sim *s, uint64_t now)
{
    s->now = now;
    s->in_advance = true;
    wsg_wheel_advance(&s->wheel, now, fire_cb, s);
    s->in_advance = false;
}

static void schedule(sim *s, timer *t, uint64_t due)
{
    wsg_wheel_schedule(&s->wheel, &t->node, due);
}

/* The wheel's count matches the timers that are linked, and none of them
 * is more than one tick overdue. */
static void check(sim *s, timer *ts, size_t n)
{
    uint64_t linked = 0;
    for (size_t i = 0; i < n; i++) {
        if (!wsg_wheel_scheduled(&ts[i].node))
            continue;
        linked++;
        if (s->now >= ts[i].node.due + s->wheel.tick_ms)
            fail_msg("node %zu due %llu not fired at %llu (tick %llu)", i,
                     (unsigned long long)ts[i].node.due, (unsigned long long)s->now,
                     (unsigned long long)s->wheel.tick_ms);
    }
    if (s->wheel.count != linked)
        fail_msg("count is %llu, %llu nodes are scheduled", (unsigned long long)s->wheel.count,
                 (unsigned long long)linked);
}

/* A small fixed generator keeps the random tests repeatable. */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_empty_wheel(void **state)
{
    (void)state;
    sim s;
    sim_init(&s, 10, 12345);
    assert_int_equal(s.wheel.count, 0);
    advance(&s, 12345);
    advance(&s, 20000);
    advance(&s, 100000000);
    assert_int_equal(s.fires, 0);
    assert_int_equal(s.wheel.count, 0);
}

static void test_fires_on_time_every_ms(void **state)
{
    (void)state;
    enum { N = 1200 };
    static timer ts[N];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, 10, 0);
    for (size_t i = 0; i < N; i++)
        schedule(&s, &ts[i], i + 1);
    assert_int_equal(s.wheel.count, N);
    for (uint64_t now = 1; now <= N + 20; now++) {
        advance(&s, now);
        check(&s, ts, N);
    }
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(ts[i].fired, 1);
        uint64_t due = i + 1;
        assert_true(ts[i].fired_at >= due);
        assert_true(ts[i].fired_at - due < 10);
    }
    assert_int_equal(s.wheel.count, 0);
}

/* On a tick boundary a node fires exactly on time; just after one it waits
 * for the next boundary. */
static void test_tick_boundaries(void **state)
{
    (void)state;
    timer a = {0};
    timer b = {0};
    sim s;
    sim_init(&s, 10, 0);
    schedule(&s, &a, 100);
    schedule(&s, &b, 101);
    advance(&s, 99);
    assert_int_equal(a.fired, 0);
    advance(&s, 100);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0);
    advance(&s, 109);
    assert_int_equal(b.fired, 0);
    advance(&s, 110);
    assert_int_equal(b.fired, 1);
    assert_int_equal(s.wheel.count, 0);
}

static void run_random(uint64_t tick, uint64_t start, uint64_t seed, uint64_t max_step)
{
    enum { N = 2000 };
    static timer ts[N];
    memset(ts, 0, sizeof(ts));
    uint64_t span = WSG_WHEEL_SLOTS * tick;
    uint64_t x = seed;
    sim s;
    sim_init(&s, tick, start);
    for (size_t i = 0; i < N; i++)
        schedule(&s, &ts[i], start + rng_next(&x) % (3 * span));
    check(&s, ts, N);
    uint64_t now = start;
    while (s.wheel.count > 0) {
        now += 1 + rng_next(&x) % max_step;
        advance(&s, now);
        check(&s, ts, N);
        assert_true(now < start + 4 * span);
    }
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(ts[i].fired, 1);
        assert_true(ts[i].fired_at >= ts[i].node.due);
    }
}

static void test_random_dues_and_steps(void **state)
{
    (void)state;
    run_random(10, 0, 0x9e3779b97f4a7c15ULL, 1);
    run_random(10, 1000003, 0x243f6a8885a308d3ULL, 37);
    run_random(7, 123456789, 0x13198a2e03707344ULL, 5);
    run_random(1, 42, 0xa4093822299f31d0ULL, 3);
    run_random(250, 99, 0x082efa98ec4e6c89ULL, 400);
}

/* A due time already past fires at the next advance that reaches a new
 * tick; that is never more than one tick after it was scheduled. */
static void test_past_due_fires_on_next_tick(void **state)
{
    (void)state;
    timer a = {0};
    timer b = {0};
    sim s;
    sim_init(&s, 10, 1000);
    schedule(&s, &a, 500);
    schedule(&s, &b, 1000);
    assert_int_equal(s.wheel.count, 2);
    advance(&s, 1010);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    assert_int_equal(s.wheel.count, 0);

    timer c = {0};
    schedule(&s, &c, 0);
    advance(&s, 1020);
    assert_int_equal(c.fired, 1);
}

/* The header promises that "a due time in the past fires at the next
 * tick": not within the current tick, not later than the next. */
static void test_past_due_fires_at_next_tick(void **state)
{
    (void)state;
    timer a = {0};
    sim s;
    sim_init(&s, 10, 1000);
    schedule(&s, &a, 500);
    advance(&s, 1005);
    assert_int_equal(a.fired, 0);
    advance(&s, 1010);
    if (a.fired != 1)
        fail_msg("node due 500, scheduled at 1000: not fired by advance(1010)");
    assert_int_equal(s.wheel.count, 0);
}

static void test_cancel(void **state)
{
    (void)state;
    timer ts[3];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, 10, 0);

    /* Cancelling a node that was never scheduled is harmless. */
    wsg_wheel_cancel(&s.wheel, &ts[2].node);
    assert_int_equal(s.wheel.count, 0);

    schedule(&s, &ts[0], 50);
    schedule(&s, &ts[1], 50);
    assert_true(wsg_wheel_scheduled(&ts[0].node));
    assert_int_equal(s.wheel.count, 2);
    wsg_wheel_cancel(&s.wheel, &ts[0].node);
    assert_false(wsg_wheel_scheduled(&ts[0].node));
    assert_int_equal(s.wheel.count, 1);
    wsg_wheel_cancel(&s.wheel, &ts[0].node);
    assert_int_equal(s.wheel.count, 1);
    for (uint64_t now = 1; now <= 100; now++)
        advance(&s, now);
    assert_int_equal(ts[0].fired, 0);
    assert_int_equal(ts[1].fired, 1);
    assert_int_equal(s.wheel.count, 0);

    /* After firing, a node is unscheduled; cancelling it changes nothing. */
    wsg_wheel_cancel(&s.wheel, &ts[1].node);
    assert_int_equal(s.wheel.count, 0);

    /* A cancelled node can be scheduled again. */
    schedule(&s, &ts[0], 150);
    assert_int_equal(s.wheel.count, 1);
    advance(&s, 150);
    assert_int_equal(ts[0].fired, 1);
    assert_int_equal(s.wheel.count, 0);
}

static void test_reschedule(void **state)
{
    (void)state;
    timer later = {0};
    timer sooner = {0};
    timer far = {0};
    sim s;
    sim_init(&s, 10, 0);
    schedule(&s, &later, 100);
    schedule(&s, &later, 300);
    schedule(&s, &sooner, 300);
    schedule(&s, &sooner, 50);
    schedule(&s, &far, 20000);
    schedule(&s, &far, 60);
    assert_int_equal(s.wheel.count, 3);
    for (uint64_t now = 1; now <= 400; now++) {
        advance(&s, now);
        assert_int_equal(s.wheel.count, (uint64_t)(!later.fired + !sooner.fired + !far.fired));
    }
    assert_int_equal(later.fired, 1);
    assert_true(later.fired_at >= 300 && later.fired_at < 310);
    assert_int_equal(sooner.fired, 1);
    assert_true(sooner.fired_at >= 50 && sooner.fired_at < 60);
    assert_int_equal(far.fired, 1);
    assert_true(far.fired_at >= 60 && far.fired_at < 70);
}

/* The wheel spans WSG_WHEEL_SLOTS ticks; nodes further out are parked and
 * must still fire on time, however many turns away they are. */
static void test_beyond_span(void **state)
{
    (void)state;
    const uint64_t tick = 10;
    const uint64_t span = WSG_WHEEL_SLOTS * tick;
    const uint64_t start = 777;
    const uint64_t offsets[] = {
        span - tick - 1, span - tick, span - 1, span,         span + 1,     span + tick,
        2 * span - 3,    2 * span,    3 * span + 7, 10 * span + 5, 40 * span + 123,
    };
    enum { N = sizeof(offsets) / sizeof(offsets[0]) };
    timer ts[N];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, tick, start);
    for (size_t i = 0; i < N; i++)
        schedule(&s, &ts[i], start + offsets[i]);
    for (uint64_t now = start + 1; now <= start + 40 * span + 200; now++) {
        advance(&s, now);
        check(&s, ts, N);
    }
    for (size_t i = 0; i < N; i++) {
        if (ts[i].fired != 1)
            fail_msg("node at +%llu fired %u times", (unsigned long long)offsets[i], ts[i].fired);
        assert_true(ts[i].fired_at >= start + offsets[i]);
        assert_true(ts[i].fired_at < start + offsets[i] + tick);
    }
}

/* A loop that could not run for a while advances far in one call: every
 * node due by then fires once, the rest wait for their time. */
static void run_stall(uint64_t stall_ticks)
{
    enum { N = 1500 };
    static timer ts[N];
    memset(ts, 0, sizeof(ts));
    const uint64_t tick = 10;
    const uint64_t span = WSG_WHEEL_SLOTS * tick;
    uint64_t x = 0x452821e638d01377ULL ^ stall_ticks;
    sim s;
    sim_init(&s, tick, 5000);
    uint64_t horizon = stall_ticks * tick + 3 * span;
    for (size_t i = 0; i < N; i++)
        schedule(&s, &ts[i], 5000 + 1 + rng_next(&x) % horizon);

    uint64_t stall_to = 5000 + stall_ticks * tick + 3;
    advance(&s, stall_to);
    /* Due by the last tick boundary: fired. Due later than now: not fired.
     * Due inside the current tick: either, as the wheel is coarse. */
    uint64_t boundary = stall_to - stall_to % tick;
    for (size_t i = 0; i < N; i++) {
        uint64_t due = ts[i].node.due;
        bool ok = due <= boundary ? ts[i].fired == 1 : due > stall_to ? ts[i].fired == 0
                                                                       : ts[i].fired <= 1;
        if (!ok)
            fail_msg("stall of %llu ticks: node due %llu fired %u times at %llu",
                     (unsigned long long)stall_ticks, (unsigned long long)due, ts[i].fired,
                     (unsigned long long)stall_to);
    }
    check(&s, ts, N);
    for (uint64_t now = stall_to + 1; s.wheel.count > 0; now += 3) {
        advance(&s, now);
        check(&s, ts, N);
        assert_true(now <= 5000 + horizon + tick);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(ts[i].fired, 1);
}

static void test_long_stall(void **state)
{
    (void)state;
    run_stall(3);
    run_stall(WSG_WHEEL_SLOTS - 1);
    run_stall(WSG_WHEEL_SLOTS);
    run_stall(WSG_WHEEL_SLOTS + 1);
    run_stall(5 * WSG_WHEEL_SLOTS + 17);
    run_stall(1000000);
}

static void reschedule_self(timer *t, sim *s)
{
    if (t->fired < t->arg)
        schedule(s, t, t->node.due + 100);
}

static void test_callback_reschedules_itself(void **state)
{
    (void)state;
    timer t = {.on_fire = reschedule_self, .arg = 10};
    sim s;
    sim_init(&s, 10, 0);
    schedule(&s, &t, 100);
    uint64_t last = 0;
    for (uint64_t now = 1; now <= 1200; now++) {
        unsigned before = t.fired;
        advance(&s, now);
        if (t.fired != before) {
            assert_int_equal(t.fired, before + 1);
            assert_true(now >= 100 * t.fired && now < 100 * t.fired + 10);
            assert_true(now > last);
            last = now;
        }
        assert_int_equal(s.wheel.count, t.fired < 10 ? 1 : 0);
    }
    assert_int_equal(t.fired, 10);

    /* After a stall, a periodic node that steps its due time catches up
     * within the same advance. */
    timer p = {.on_fire = reschedule_self, .arg = 10};
    sim_init(&s, 10, 0);
    schedule(&s, &p, 100);
    advance(&s, 1000);
    assert_int_equal(p.fired, 10);
    assert_int_equal(s.wheel.count, 0);
}

/* Rescheduling at a due time that has already passed cannot loop forever
 * inside one advance. */
static void reschedule_same_due(timer *t, sim *s)
{
    if (t->fired < 1000)
        schedule(s, t, t->node.due);
}

static void test_callback_reschedules_into_past(void **state)
{
    (void)state;
    timer t = {.on_fire = reschedule_same_due};
    sim s;
    sim_init(&s, 10, 0);
    schedule(&s, &t, 50);
    advance(&s, 55);
    assert_true(t.fired >= 1 && t.fired <= 2);
    advance(&s, 65);
    assert_true(t.fired >= 2 && t.fired <= 3);
    wsg_wheel_cancel(&s.wheel, &t.node);
    assert_int_equal(s.wheel.count, 0);
}

static void cancel_other(timer *t, sim *s)
{
    wsg_wheel_cancel(&s->wheel, &t->other->node);
}

static void test_callback_cancels_others(void **state)
{
    (void)state;
    timer ts[4];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, 10, 0);
    /* 0 and 1 share a slot and fire in one batch: whichever runs first
     * cancels the other. */
    ts[0].on_fire = cancel_other;
    ts[0].other = &ts[1];
    ts[1].on_fire = cancel_other;
    ts[1].other = &ts[0];
    schedule(&s, &ts[0], 100);
    schedule(&s, &ts[1], 100);
    /* 2 cancels 3, which sits in a later slot. */
    ts[2].on_fire = cancel_other;
    ts[2].other = &ts[3];
    schedule(&s, &ts[2], 200);
    schedule(&s, &ts[3], 5000);
    assert_int_equal(s.wheel.count, 4);
    for (uint64_t now = 1; now <= 6000; now += 5) {
        advance(&s, now);
        check(&s, ts, 4);
    }
    assert_int_equal(ts[0].fired + ts[1].fired, 1);
    assert_int_equal(ts[2].fired, 1);
    assert_int_equal(ts[3].fired, 0);
    assert_int_equal(s.wheel.count, 0);
}

/* A callback cancels every other node of its own batch, whichever order the
 * batch runs in. */
static void cancel_all_but_self(timer *t, sim *s)
{
    timer *all = t->other;
    for (size_t i = 0; i < t->arg; i++) {
        if (&all[i] != t)
            wsg_wheel_cancel(&s->wheel, &all[i].node);
    }
}

static void test_callback_cancels_whole_batch(void **state)
{
    (void)state;
    enum { N = 50 };
    timer ts[N];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, 10, 0);
    for (size_t i = 0; i < N; i++) {
        ts[i].on_fire = cancel_all_but_self;
        ts[i].other = ts;
        ts[i].arg = N;
        schedule(&s, &ts[i], 91 + i % 9);
    }
    advance(&s, 100);
    assert_int_equal(s.fires, 1);
    assert_int_equal(s.wheel.count, 0);
    advance(&s, 10000);
    assert_int_equal(s.fires, 1);
}

static void schedule_other(timer *t, sim *s)
{
    if (t->other->fired == 0)
        schedule(s, t->other, t->arg);
}

static void test_callback_schedules_others(void **state)
{
    (void)state;
    timer ts[6];
    memset(ts, 0, sizeof(ts));
    sim s;
    sim_init(&s, 10, 0);
    /* 0 schedules 1 in the past, 2 schedules 3 soon; 4 and 5 share a
     * batch, and whichever runs first moves the other much later. */
    ts[0].on_fire = schedule_other;
    ts[0].other = &ts[1];
    ts[0].arg = 10;
    ts[2].on_fire = schedule_other;
    ts[2].other = &ts[3];
    ts[2].arg = 345;
    ts[4].on_fire = schedule_other;
    ts[4].other = &ts[5];
    ts[4].arg = 9000;
    ts[5].on_fire = schedule_other;
    ts[5].other = &ts[4];
    ts[5].arg = 9000;
    schedule(&s, &ts[0], 100);
    schedule(&s, &ts[2], 200);
    schedule(&s, &ts[4], 300);
    schedule(&s, &ts[5], 300);
    for (uint64_t now = 1; now <= 10000; now++) {
        advance(&s, now);
        for (size_t i = 0; i < 6; i++) {
            if (wsg_wheel_scheduled(&ts[i].node) && i != 1 &&
                now >= ts[i].node.due + s.wheel.tick_ms)
                fail_msg("node %zu due %llu not fired at %llu", i,
                         (unsigned long long)ts[i].node.due, (unsigned long long)now);
        }
    }
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ts[i].fired, 1);
    assert_true(ts[1].fired_at >= 100 && ts[1].fired_at <= 110);
    assert_true(ts[3].fired_at >= 345 && ts[3].fired_at < 355);
    uint64_t first = ts[4].fired_at < ts[5].fired_at ? ts[4].fired_at : ts[5].fired_at;
    uint64_t second = ts[4].fired_at < ts[5].fired_at ? ts[5].fired_at : ts[4].fired_at;
    assert_true(first >= 300 && first < 310);
    assert_true(second >= 9000 && second < 9010);
    assert_int_equal(s.wheel.count, 0);
}

typedef struct owned {
    timer t;
    unsigned *freed;
} owned;

static void free_self(timer *t, sim *s)
{
    (void)s;
    owned *o = (owned *)t;
    (*o->freed)++;
    free(o);
}

static void test_callback_frees_its_node(void **state)
{
    (void)state;
    unsigned freed = 0;
    sim s;
    sim_init(&s, 10, 0);
    for (int i = 0; i < 100; i++) {
        owned *o = calloc(1, sizeof(*o));
        assert_non_null(o);
        o->t.on_fire = free_self;
        o->freed = &freed;
        schedule(&s, &o->t, 10 + (uint64_t)i % 7);
    }
    advance(&s, 30);
    assert_int_equal(freed, 100);
    assert_int_equal(s.wheel.count, 0);
}

static void test_far_future_never_fires(void **state)
{
    (void)state;
    timer t = {0};
    sim s;
    sim_init(&s, 10, 0);
    schedule(&s, &t, UINT64_MAX);
    for (uint64_t now = 10; now <= 100000; now += 10)
        advance(&s, now);
    advance(&s, UINT64_MAX / 2);
    assert_int_equal(t.fired, 0);
    assert_int_equal(s.wheel.count, 1);
    wsg_wheel_cancel(&s.wheel, &t.node);
    assert_int_equal(s.wheel.count, 0);
}

static void test_zero_tick_means_one_ms(void **state)
{
    (void)state;
    timer t = {0};
    sim s;
    sim_init(&s, 0, 0);
    schedule(&s, &t, 3);
    advance(&s, 2);
    assert_int_equal(t.fired, 0);
    advance(&s, 3);
    assert_int_equal(t.fired, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_wheel),
        cmocka_unit_test(test_fires_on_time_every_ms),
        cmocka_unit_test(test_tick_boundaries),
        cmocka_unit_test(test_random_dues_and_steps),
        cmocka_unit_test(test_past_due_fires_on_next_tick),
        cmocka_unit_test(test_past_due_fires_at_next_tick),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_reschedule),
        cmocka_unit_test(test_beyond_span),
        cmocka_unit_test(test_long_stall),
        cmocka_unit_test(test_callback_reschedules_itself),
        cmocka_unit_test(test_callback_reschedules_into_past),
        cmocka_unit_test(test_callback_cancels_others),
        cmocka_unit_test(test_callback_cancels_whole_batch),
        cmocka_unit_test(test_callback_schedules_others),
        cmocka_unit_test(test_callback_frees_its_node),
        cmocka_unit_test(test_far_future_never_fires),
        cmocka_unit_test(test_zero_tick_means_one_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
