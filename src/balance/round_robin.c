/* Round-robin, as the seed gateway does: each new session takes the next
 * eligible backend in turn. */
#include <stdio.h>
#include <stdlib.h>

#include "balance/balance.h"

typedef struct rr_state {
    uint64_t next;
} rr_state;

static void *rr_create(const wsg_balance_params *params)
{
    (void)params;
    rr_state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        fputs("wsgate: out of memory creating a balancer\n", stderr);
        abort();
    }
    return s;
}

static void rr_destroy(void *state)
{
    free(state);
}

static void rr_rebuild(void *state, const wsg_balance_node *all, size_t n)
{
    (void)state;
    (void)all;
    (void)n;
}

static size_t rr_pick(void *state, const wsg_balance_node *eligible, size_t n, wsg_str key,
                      uint64_t rnd)
{
    rr_state *s = state;
    (void)eligible;
    (void)key;
    (void)rnd;
    return (size_t)(s->next++ % n);
}

const wsg_balancer_ops wsg_balance_round_robin = {
    .name = "round-robin",
    .create = rr_create,
    .destroy = rr_destroy,
    .rebuild = rr_rebuild,
    .pick = rr_pick,
};
