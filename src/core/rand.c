#include "core/rand.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wsg_rand_init(wsg_rand *r)
{
    r->pos = WSG_RAND_POOL;
}

static void refill(wsg_rand *r)
{
    if (RAND_bytes(r->pool, WSG_RAND_POOL) != 1) {
        fputs("wsgate: the system random generator failed; stopping rather than "
              "using predictable keys\n",
              stderr);
        abort();
    }
    r->pos = 0;
}

void wsg_rand_bytes(wsg_rand *r, void *out, size_t n)
{
    uint8_t *o = out;
    while (n > 0) {
        if (r->pos == WSG_RAND_POOL)
            refill(r);
        size_t take = WSG_RAND_POOL - r->pos;
        if (take > n)
            take = n;
        memcpy(o, r->pool + r->pos, take);
        /* Bytes handed out are wiped so that they are never reused. */
        memset(r->pool + r->pos, 0, take);
        r->pos += (uint32_t)take;
        o += take;
        n -= take;
    }
}
