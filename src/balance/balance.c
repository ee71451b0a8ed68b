#include <string.h>

#include "balance/balance.h"

static const wsg_balancer_ops *const policies[] = {
    &wsg_balance_round_robin,
};

const wsg_balancer_ops *wsg_balance_find(const char *name)
{
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (strcmp(policies[i]->name, name) == 0)
            return policies[i];
    }
    return NULL;
}
