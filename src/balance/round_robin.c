/* Round-robin, as the seed gateway does: each new session takes the next
 * eligible backend in turn. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "balance/balance.h"

typedef struct rr_state {
    /* Shared by all workers: one relaxed increment per new session, never
     * per message. */
    atomic_size_t next;
} rr_state;

static void *rr_create(void)
{
    rr_state *s = malloc(sizeof(*s));
    if (s == NULL) {
        fputs("wsgate: out of memory creating a balancer\n", stderr);
        abort();
    }
    atomic_init(&s->next, 0);
    return s;
}

static void rr_destroy(void *state)
{
    free(state);
}

static size_t rr_pick(void *state, struct wsg_backend *const *eligible, size_t n, wsg_str key)
{
    rr_state *s = state;
    (void)eligible;
    (void)key;
    return atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed) % n;
}

const wsg_balancer_ops wsg_balance_round_robin = {
    .name = "round-robin",
    .create = rr_create,
    .destroy = rr_destroy,
    .pick = rr_pick,
};
