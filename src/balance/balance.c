/* The policy table and what the policies share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"
#include "core/hash.h"

static const wsg_balancer_ops *const policies[] = {
    &wsg_balance_round_robin,
    &wsg_balance_least_conn,
    &wsg_balance_p2c,
    &wsg_balance_chash,
};

const wsg_balancer_ops *wsg_balance_find(const char *name)
{
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (strcmp(policies[i]->name, name) == 0)
            return policies[i];
    }
    return NULL;
}

const char *wsg_balance_names(void)
{
    return "round-robin, least-connections, power-of-two, consistent-hash";
}

int wsg_balance_cmp_load(const wsg_balance_node *a, const wsg_balance_node *b)
{
    /* load_a / weight_a < load_b / weight_b, without division. */
    uint64_t x = (uint64_t)a->load * (b->weight ? b->weight : 1);
    uint64_t y = (uint64_t)b->load * (a->weight ? a->weight : 1);
    return x < y ? -1 : x > y ? 1 : 0;
}

uint64_t wsg_balance_hash(const void *p, size_t n)
{
    return wsg_hash(p, n);
}

size_t wsg_balance_least_loaded(const wsg_balance_node *nodes, size_t n, uint64_t turn)
{
    size_t best = 0;
    size_t ties = 1;
    for (size_t i = 1; i < n; i++) {
        int c = wsg_balance_cmp_load(&nodes[i], &nodes[best]);
        if (c < 0) {
            best = i;
            ties = 1;
        } else if (c == 0) {
            ties++;
        }
    }
    size_t want = (size_t)(turn % ties);
    for (size_t i = best; i < n; i++) {
        if (wsg_balance_cmp_load(&nodes[i], &nodes[best]) == 0 && want-- == 0)
            return i;
    }
    return best;
}
