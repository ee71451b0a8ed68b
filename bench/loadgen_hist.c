/* Log-linear histogram: see loadgen_hist.h for the bucket layout. */
#include "loadgen_hist.h"

#include <math.h>
#include <string.h>

#define SUB (1u << LG_HIST_SUB_BITS)
#define HALF (SUB / 2)
#define TOP ((UINT64_C(1) << LG_HIST_TOP_BITS) - 1)

void lg_hist_init(lg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t lg_hist_index(uint64_t us)
{
    if (us > TOP)
        us = TOP;
    if (us < SUB)
        return (uint32_t)us;
    unsigned bits = 64u - (unsigned)__builtin_clzll(us);
    unsigned shift = bits - LG_HIST_SUB_BITS; /* >= 1: us >> shift is in [HALF, SUB) */
    return SUB + (shift - 1) * HALF + (uint32_t)((us >> shift) - HALF);
}

uint64_t lg_hist_highest(uint32_t index)
{
    if (index < SUB)
        return index;
    uint32_t k = index - SUB;
    unsigned shift = k / HALF + 1;
    uint64_t low = (uint64_t)(k % HALF + HALF) << shift;
    return low + (UINT64_C(1) << shift) - 1;
}

void lg_hist_record(lg_hist *h, uint64_t us)
{
    h->buckets[lg_hist_index(us)]++;
    h->count++;
    h->sum += us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void lg_hist_merge(lg_hist *dst, const lg_hist *src)
{
    for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t lg_hist_percentile(const lg_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    double want = ceil(p / 100.0 * (double)h->count);
    uint64_t rank = want < 1.0 ? 1 : (uint64_t)want;
    uint64_t seen = 0;
    if (rank > h->count)
        rank = h->count;
    for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = lg_hist_highest(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
