/* Power of two choices: two eligible backends at random, the less loaded
 * wins. Nearly as even as least-connections, without every new session
 * rushing to the same least-loaded backend. */
#include <stdio.h>
#include <stdlib.h>

#include "balance/balance.h"

static void *p2c_create(const wsg_balance_params *params)
{
    (void)params;
    /* No state: the registry's random number is all it needs. A non-NULL
     * pointer keeps "no state" apart from "out of memory". */
    static char none;
    return &none;
}

static void p2c_destroy(void *state)
{
    (void)state;
}

static void p2c_rebuild(void *state, const wsg_balance_node *all, size_t n)
{
    (void)state;
    (void)all;
    (void)n;
}

static size_t p2c_pick(void *state, const wsg_balance_node *eligible, size_t n, wsg_str key,
                       uint64_t rnd)
{
    (void)state;
    (void)key;
    if (n == 1)
        return 0;
    size_t a = (size_t)(rnd % n);
    /* A different second choice: an offset in 1..n-1. */
    size_t b = (a + 1 + (size_t)((rnd >> 32) % (n - 1))) % n;
    return wsg_balance_cmp_load(&eligible[b], &eligible[a]) < 0 ? b : a;
}

const wsg_balancer_ops wsg_balance_p2c = {
    .name = "power-of-two",
    .create = p2c_create,
    .destroy = p2c_destroy,
    .rebuild = p2c_rebuild,
    .pick = p2c_pick,
};
