/* Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
 * 2018) on the sticky key.
 *
 * Each backend owns points on a 64-bit ring, 100 per unit of weight; a key
 * goes to the first point clockwise from its hash. Adding or removing one of
 * N backends moves only the keys of its arcs, about 1/N. The bound: a
 * backend takes a new session only while its load stays within
 * load_factor x the average (counting the new session); otherwise the walk
 * goes on clockwise. So no backend runs hot while keys still move little.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"

#define POINTS_PER_WEIGHT 100
#define MAX_WEIGHT 100
/* Eligibility lookups for services up to this size use the stack. */
#define STACK_MAP 256

typedef struct point {
    uint64_t hash;
    uint32_t index; /* member's position in the service list */
} point;

typedef struct ch_state {
    point *ring;
    size_t points;
    size_t members;
    double load_factor;
    uint64_t turn;
} ch_state;

static _Noreturn void oom(void)
{
    fputs("wsgate: out of memory building a consistent-hash ring\n", stderr);
    abort();
}

static void *ch_create(const wsg_balance_params *params)
{
    ch_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        oom();
    s->load_factor = params && params->load_factor >= 1.0 ? params->load_factor : 1.25;
    return s;
}

static void ch_destroy(void *state)
{
    ch_state *s = state;
    free(s->ring);
    free(s);
}

static int by_hash(const void *a, const void *b)
{
    const point *x = a;
    const point *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void ch_rebuild(void *state, const wsg_balance_node *all, size_t n)
{
    ch_state *s = state;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = all[i].weight ? all[i].weight : 1;
        total += (size_t)POINTS_PER_WEIGHT * (w < MAX_WEIGHT ? w : MAX_WEIGHT);
    }
    free(s->ring);
    s->ring = total ? malloc(total * sizeof(*s->ring)) : NULL;
    if (total && s->ring == NULL)
        oom();
    s->points = 0;
    s->members = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = all[i].weight ? all[i].weight : 1;
        size_t count = (size_t)POINTS_PER_WEIGHT * (w < MAX_WEIGHT ? w : MAX_WEIGHT);
        for (size_t j = 0; j < count; j++) {
            char label[300];
            int len =
                snprintf(label, sizeof(label), "%.*s#%zu", (int)all[i].id.len, all[i].id.p, j);
            size_t used = len < (int)sizeof(label) ? (size_t)len : sizeof(label) - 1;
            /* count > 0 here, so total > 0 and the ring was allocated (or oom() ended the process).
             */
            // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
            s->ring[s->points++] = (point){wsg_balance_hash(label, used), all[i].index};
        }
    }
    if (s->points) /* qsort wants a real array, even of none */
        qsort(s->ring, s->points, sizeof(*s->ring), by_hash);
}

static size_t least_loaded(ch_state *s, const wsg_balance_node *eligible, size_t n)
{
    return wsg_balance_least_loaded(eligible, n, s->turn++);
}

static size_t first_point_at_or_after(const ch_state *s, uint64_t h)
{
    size_t lo = 0;
    size_t hi = s->points;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == s->points ? 0 : lo;
}

static size_t walk(ch_state *s, const wsg_balance_node *eligible, size_t n, const int *slot,
                   uint64_t h)
{
    uint64_t load = 0;
    uint64_t weight = 0;
    for (size_t i = 0; i < n; i++) {
        load += eligible[i].load;
        weight += eligible[i].weight ? eligible[i].weight : 1;
    }
    size_t pos = first_point_at_or_after(s, h);
    for (size_t step = 0; step < s->points; step++) {
        const point *p = &s->ring[(pos + step) % s->points];
        int e = p->index < s->members ? slot[p->index] : -1;
        if (e < 0)
            continue;
        uint32_t w = eligible[e].weight ? eligible[e].weight : 1;
        double bound = ceil(s->load_factor * (double)(load + 1) * w / (double)weight);
        if ((double)eligible[e].load + 1 <= bound)
            return (size_t)e;
    }
    return least_loaded(s, eligible, n);
}

static size_t ch_pick(void *state, const wsg_balance_node *eligible, size_t n, wsg_str key,
                      uint64_t rnd)
{
    ch_state *s = state;
    int stack[STACK_MAP];
    (void)rnd;
    if (key.len == 0 || s->points == 0)
        return least_loaded(s, eligible, n);
    int *slot = s->members <= STACK_MAP ? stack : malloc(s->members * sizeof(*slot));
    if (slot == NULL)
        return least_loaded(s, eligible, n);
    for (size_t i = 0; i < s->members; i++)
        slot[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (eligible[i].index < s->members)
            slot[eligible[i].index] = (int)i;
    }
    size_t chosen = walk(s, eligible, n, slot, wsg_balance_hash(key.p, key.len));
    if (slot != stack)
        free(slot);
    return chosen;
}

const wsg_balancer_ops wsg_balance_chash = {
    .name = "consistent-hash",
    .create = ch_create,
    .destroy = ch_destroy,
    .rebuild = ch_rebuild,
    .pick = ch_pick,
};
