/* Unit tests for src/core/bucket: a token bucket admits its burst at once,
 * then `rate` a second, and says exactly how long to wait (the Retry-After
 * of a 429). Time is passed in, so nothing sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/bucket.h"

static void test_burst_then_refused(void **state)
{
    (void)state;
    wsg_bucket b;
    wsg_bucket_init(&b, 3, 1000);
    for (int i = 0; i < 3; i++)
        assert_true(wsg_bucket_take(&b, 1, 3, 1000, NULL));
    uint32_t wait = 0;
    assert_false(wsg_bucket_take(&b, 1, 3, 1000, &wait));
    assert_int_equal(wait, 1000);
}

/* The wait said is the wait needed: one millisecond earlier is refused,
 * on time is admitted. */
static void test_wait_is_exact(void **state)
{
    (void)state;
    const double rates[] = {1, 2, 3, 10, 0.5};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        wsg_bucket b;
        wsg_bucket_init(&b, 1, 0);
        assert_true(wsg_bucket_take(&b, rates[r], 1, 0, NULL));
        uint32_t wait = 0;
        assert_false(wsg_bucket_take(&b, rates[r], 1, 0, &wait));
        assert_in_range(wait, (uint32_t)(1000 / rates[r]), (uint32_t)(1000 / rates[r]) + 1);
        wsg_bucket early = b, on_time = b;
        assert_false(wsg_bucket_take(&early, rates[r], 1, wait - 1, NULL));
        assert_true(wsg_bucket_take(&on_time, rates[r], 1, wait, NULL));
    }
}

/* Tokens build up to the burst and no further, however long the pause. */
static void test_refill_capped_at_burst(void **state)
{
    (void)state;
    wsg_bucket b;
    wsg_bucket_init(&b, 2, 0);
    assert_true(wsg_bucket_take(&b, 5, 2, 0, NULL));
    assert_true(wsg_bucket_take(&b, 5, 2, 0, NULL));
    uint64_t later = 3600 * 1000;
    assert_true(wsg_bucket_take(&b, 5, 2, later, NULL));
    assert_true(wsg_bucket_take(&b, 5, 2, later, NULL));
    assert_false(wsg_bucket_take(&b, 5, 2, later, NULL));
}

/* The clock is kept in 32 bits; a wrap between two takes is only a delta. */
static void test_clock_wrap(void **state)
{
    (void)state;
    wsg_bucket b;
    uint64_t before_wrap = UINT32_MAX - 100;
    wsg_bucket_init(&b, 1, before_wrap);
    assert_true(wsg_bucket_take(&b, 1, 1, before_wrap, NULL));
    assert_false(wsg_bucket_take(&b, 1, 1, before_wrap + 999, NULL));
    assert_true(wsg_bucket_take(&b, 1, 1, before_wrap + 1999, NULL));
}

/* A rate of zero never refills: the wait is "forever". */
static void test_zero_rate(void **state)
{
    (void)state;
    wsg_bucket b;
    wsg_bucket_init(&b, 1, 0);
    assert_true(wsg_bucket_take(&b, 0, 1, 0, NULL));
    uint32_t wait = 0;
    assert_false(wsg_bucket_take(&b, 0, 1, 1000000, &wait));
    assert_int_equal(wait, UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_wait_is_exact),
        cmocka_unit_test(test_refill_capped_at_burst),
        cmocka_unit_test(test_clock_wrap),
        cmocka_unit_test(test_zero_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
