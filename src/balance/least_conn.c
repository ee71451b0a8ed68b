/* Least connections: the eligible backend with the fewest sessions per
 * unit of weight; ties go round in turn so equal backends share evenly. */
#include <stdio.h>
#include <stdlib.h>

#include "balance/balance.h"

typedef struct lc_state {
    uint64_t turn;
} lc_state;

static void *lc_create(const wsg_balance_params *params)
{
    (void)params;
    lc_state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        fputs("wsgate: out of memory creating a balancer\n", stderr);
        abort();
    }
    return s;
}

static void lc_destroy(void *state)
{
    free(state);
}

static void lc_rebuild(void *state, const wsg_balance_node *all, size_t n)
{
    (void)state;
    (void)all;
    (void)n;
}

static size_t lc_pick(void *state, const wsg_balance_node *eligible, size_t n, wsg_str key,
                      uint64_t rnd)
{
    lc_state *s = state;
    (void)key;
    (void)rnd;
    return wsg_balance_least_loaded(eligible, n, s->turn++);
}

const wsg_balancer_ops wsg_balance_least_conn = {
    .name = "least-connections",
    .create = lc_create,
    .destroy = lc_destroy,
    .rebuild = lc_rebuild,
    .pick = lc_pick,
};
